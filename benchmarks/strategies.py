"""Benchmark every strategy on every SIMULATED landscape (not evidence about a real server).

    python benchmarks/strategies.py [--seeds 20] [--budget 60]

Per strategy: median and worst share of the landscape's true optimum reached by the setup the
strategy recommends at the end, and median launches and simulated wall-clock until its
recommendation is within 2% of the optimum and stays there. Then the noise-aware finish
against vLLM's median+MAD rule at the same number of measurements. On 2 cores: about 7
minutes, 2 without gp (`--strategies`).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from functools import cache
from pathlib import Path

# One single-threaded worker per core. Left to their defaults, OpenBLAS (NumPy, SciPy) and
# OpenMP (PyTorch, for gp) each start a thread per core in every worker, and their spinning
# threads contend: gp's runs took twice the CPU time. Set before NumPy loads OpenBLAS.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autotune.config import FinishSpec  # noqa: E402
from autotune.recommend import (  # noqa: E402
    decide,
    finish_looks,
    search_incumbent,
    worth_more_rounds,
)
from autotune.sim.model import (  # noqa: E402
    Landscape,
    fails_to_start,
    simulate_launch,
    true_tokens_per_second,
)
from autotune.sim.presets import PRESETS  # noqa: E402
from autotune.space import (  # noqa: E402
    BASELINE,
    FloatRange,
    IntRange,
    SearchSpace,
    SpecConfig,
    drafts,
)
from autotune.stats import disturbed_readings, median_mad, round_matrix  # noqa: E402
from strategies import Observation, create_strategy, strategy_names  # noqa: E402

WITHIN = 0.98
FINISH = FinishSpec()  # the finish as `autotune tune` runs it by default


def space_for(landscape: Landscape) -> SearchSpace:
    method = "draft-simple" if landscape.name == "cpu-only" else "draft-mtp"
    return SearchSpace(
        methods=("none", method, "ngram-mod"), draft_max=IntRange(1, 8),
        p_min=FloatRange(0.0, 0.9, 0.1), drafters=tuple(landscape.drafters),
        cache_type_k=("f16", "q8_0"), cache_type_v=("f16", "q8_0"), flash_attn=("off", "on"),
    )


@cache
def truth(preset: str) -> tuple[dict[SpecConfig, float], float, int]:
    """True tokens/s of every setup that starts (and the baseline), the optimum, grid size."""
    landscape = PRESETS[preset]
    grid = space_for(landscape).grid()
    values = {c: true_tokens_per_second(landscape, c) for c in [*grid, BASELINE]
              if not fails_to_start(landscape, c)}
    return values, max(values.values()), len(grid)


def observe(landscape: Landscape, config: SpecConfig, rng: np.random.Generator,
            effort: float) -> tuple[Observation, float]:
    if fails_to_start(landscape, config):
        return Observation(config, None, False, effort), landscape.launch_seconds
    reading = simulate_launch(landscape, config, rng, effort=effort)
    return Observation(config, reading.tokens_per_second, True, effort, reading.acceptance,
                       reading.per_position_acceptance), reading.seconds


def launch_cost(landscape: Landscape) -> float:
    """Simulated seconds of one launch at the usual effort: the unit of the time budget."""
    return landscape.launch_seconds + 60.0


def run_one(preset: str, strategy_name: str, seed: int,
            budget: int) -> tuple[float, int, float, int, float]:
    """(share of optimum of the strategy's pick, launches until its pick is within 2% for good
    or -1, sim seconds to that, launches used, share of optimum of the whole study's pick).
    Every strategy gets the same simulated wall-clock: ``budget`` launches at the usual
    effort, so a strategy asking for longer launches gets fewer of them (grid: every setup)."""
    landscape = PRESETS[preset]
    values, optimum, grid_size = truth(preset)
    rng = np.random.default_rng(seed)
    launches_cap = grid_size if strategy_name == "grid" else budget
    time_budget = launch_cost(landscape) * (grid_size + 1 if strategy_name == "grid" else budget)
    strategy = create_strategy(strategy_name, space_for(landscape), seed=seed,
                               budget=launches_cap)
    ledger: dict[SpecConfig, list[tuple[float, float]]] = {}
    observation, seconds = observe(landscape, BASELINE, rng, 1.0)
    strategy.tell(observation)
    ledger.setdefault(BASELINE, []).append((float(observation.tokens_per_second or 0.0), 1.0))
    launches, clock = 1, seconds
    clock_at = [clock]
    within = [values[BASELINE] >= WITHIN * optimum]
    while clock < time_budget and launches < launches_cap + grid_size:
        ask = strategy.ask()
        if ask is None:
            break
        observation, seconds = observe(landscape, ask.config, rng, ask.effort)
        strategy.tell(observation)
        if observation.tokens_per_second is not None:
            ledger.setdefault(ask.config, []).append((observation.tokens_per_second, ask.effort))
        launches += 1
        clock += seconds
        pick = strategy.recommend()
        clock_at.append(clock)
        within.append(pick is not None and values.get(pick, 0.0) >= WITHIN * optimum)
    pick = strategy.recommend()
    share = values.get(pick, 0.0) / optimum if pick is not None else 0.0
    study_share = study_pick(landscape, values, pick, ledger, rng) / optimum
    # The first launch after which the pick stays within 2% to the end.
    misses = [i for i, ok in enumerate(within) if not ok]
    settled = 0 if not misses else misses[-1] + 1
    if settled >= len(within):
        return share, -1, 0.0, launches, study_share
    return share, settled + 1, clock_at[settled], launches, study_share


def study_pick(landscape: Landscape, values: dict[SpecConfig, float], pick: SpecConfig | None,
               ledger: dict[SpecConfig, list[tuple[float, float]]],
               rng: np.random.Generator) -> float:
    """True tokens/s of what `autotune tune` would deploy after this search: finalists chosen
    as the study chooses them (the strategy's pick, the best measured drafting setups, the
    baseline, the best no-drafting setting), then the finish as it runs (interleaved rounds
    with a shared per-round machine factor, as many rounds as FinishSpec's defaults allow,
    decided by `decide` with the pick as incumbent where `search_incumbent` says so)."""
    means = {c: sum(v * e for v, e in r) / sum(e for _, e in r) for c, r in ledger.items()}
    drafting = sorted((c for c in means if drafts(c.method)), key=lambda c: -means[c])[:2]
    if pick is not None and drafts(pick.method):
        drafting = [pick, *(c for c in drafting if c != pick)]
    plain = max((c for c in means if not drafts(c.method)), key=lambda c: means[c])
    finalists = [*dict.fromkeys([*drafting[:2], BASELINE, plain])]
    prefer = search_incumbent(pick, {c: sum(e for _, e in ledger[c]) for c in finalists
                                     if c in ledger})
    looks = finish_looks(FINISH.rounds, FINISH.max_rounds)
    rounds_by: dict[SpecConfig, list[float]] = {c: [] for c in finalists}
    for look in looks:
        while len(rounds_by[BASELINE]) < look:
            machine = float(np.exp(rng.normal(0, 0.03)))
            for c in finalists:
                rounds_by[c].append(machine * simulate_launch(landscape, c, rng).tokens_per_second)
        decision = decide(rounds_by, simplicity=lambda c: c.simplicity(),
                          alpha=0.05, looks=looks, prefer=prefer)
        if not worth_more_rounds(decision):
            break
    return values.get(decision.config, true_tokens_per_second(landscape, decision.config))


def finish_wrong_picks(
    preset: str, reps: int, rounds: int, max_rounds: int, alpha: float = 0.05,
    bursts: float = 0.0, finalists: list[SpecConfig] | None = None,
) -> tuple[float, float, float]:
    """(share of reps where our finish, then median+MAD on the same readings, picks a setup
    truly >2% worse than the best finalist; mean rounds per setup). Ours runs as `autotune
    tune` does: ``rounds``, then 2 more at a time up to ``max_rounds`` while the decision is
    unsettled, each look at alpha / looks, and a round that a burst of outside load hit
    (probability ``bursts`` per reading, slowing it 30-70%, seen as half the machine busy) is
    measured again up to 2 times. median+MAD gets the same readings, bursts included."""
    landscape = PRESETS[preset]
    values, _, _ = truth(preset)
    ranked = sorted(values, key=lambda c: -values[c])
    finalists = finalists or [*dict.fromkeys([*ranked[:3], BASELINE])]
    best_true = max(values.get(c, true_tokens_per_second(landscape, c)) for c in finalists)
    looks = finish_looks(rounds, max_rounds)
    rng = np.random.default_rng(7)
    ours_wrong = mad_wrong = measured = 0
    for _ in range(reps):
        rounds_by: dict[SpecConfig, list[float]] = {c: [] for c in finalists}
        seen_by: dict[SpecConfig, list[float]] = {c: [] for c in finalists}  # what MAD sees
        outside_by: dict[SpecConfig, list[float]] = {c: [] for c in finalists}
        remeasure = 2
        for look in looks:
            while len(rounds_by[BASELINE]) < look:
                readings, outside = {}, {}
                for c in finalists:
                    value = simulate_launch(landscape, c, rng).tokens_per_second
                    hit = rng.random() < bursts
                    readings[c] = value * (rng.uniform(0.3, 0.7) if hit else 1.0)
                    outside[c] = 0.5 if hit else 0.01
                    seen_by[c].append(readings[c])
                matrix = round_matrix([[*rounds_by[c], readings[c]] for c in finalists])
                shares = np.array([[*outside_by[c], outside[c]] for c in finalists]).T
                hit = disturbed_readings(matrix, shares)[-1]
                if hit.any() and remeasure:
                    remeasure -= 1
                    continue
                for c, flagged in zip(finalists, hit, strict=True):
                    if flagged:  # as the finish does once no re-measurement is left
                        readings[c] = float("nan")
                for c in finalists:
                    rounds_by[c].append(readings[c])
                    outside_by[c].append(outside[c])
            decision = decide(rounds_by, simplicity=lambda c: c.simplicity(),
                              alpha=alpha, looks=looks)
            if not worth_more_rounds(decision):
                break
        truth_of = {c: values.get(c, true_tokens_per_second(landscape, c)) for c in finalists}
        ours_wrong += truth_of[decision.config] < WITHIN * best_true
        mad_wrong += truth_of[mad_rule(seen_by)] < WITHIN * best_true
        measured += len(seen_by[BASELINE])
    return ours_wrong / reps, mad_wrong / reps, measured / reps


def false_ahead_rate(reps: int, alpha: float = 0.05) -> float:
    """Three drafting finalists that truly equal no drafting (4% noise per reading, 5% per
    round): the share of finishes that call one of them ahead."""
    rng = np.random.default_rng(11)
    configs = [SpecConfig("ngram-mod", n) for n in (2, 4, 6)]
    looks = finish_looks(4, 8)
    wrong = 0
    for _ in range(reps):
        rounds_by: dict[SpecConfig, list[float]] = {c: [] for c in [*configs, BASELINE]}
        for look in looks:
            while len(rounds_by[BASELINE]) < look:
                machine = float(np.exp(rng.normal(0, 0.05)))
                for c in rounds_by:
                    rounds_by[c].append(50 * machine * float(np.exp(rng.normal(0, 0.04))))
            decision = decide(rounds_by, simplicity=lambda c: c.simplicity(),
                              alpha=alpha, looks=looks)
            if not worth_more_rounds(decision):
                break
        wrong += decision.verdict == "ahead"
    return wrong / reps


def mad_rule(rounds_by: dict[SpecConfig, list[float]]) -> SpecConfig:
    """vLLM tune_speculative_k: median minus MAD, noisy cells (MAD > 5% of median) rejected,
    ties within 1% to the smaller K."""
    scores = {}
    for config, readings in rounds_by.items():
        median, mad = median_mad(readings)
        if mad <= 0.05 * median:
            scores[config] = median - mad
    if not scores:
        scores = {c: median_mad(r)[0] for c, r in rounds_by.items()}
    top = max(scores.values())
    tied = [c for c, s in scores.items() if s >= 0.99 * top]
    return min(tied, key=lambda c: c.draft_max or 0)


def job(args: tuple[str, str, int, int]) -> tuple[str, str, tuple[float, int, float, int, float]]:
    preset, name, seed, budget = args
    return preset, name, run_one(preset, name, seed, budget)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=int, default=60)
    parser.add_argument("--strategies", default=",".join(strategy_names()))
    parser.add_argument("--finish-max-rounds", type=int, default=FINISH.max_rounds,
                        help="the finish's max_rounds (4: no extra rounds)")
    parser.add_argument("--finish-only", action="store_true",
                        help="only the finish tables (seconds, not minutes)")
    args = parser.parse_args()
    names = []
    for name in args.strategies.split(","):
        try:
            create_strategy(name, space_for(PRESETS["cpu-only"]), seed=0, budget=1)
            names.append(name)
        except KeyError as error:
            print(f"skipped {name}: {error}")
    started = time.perf_counter()
    if not args.finish_only:
        search_tables(names, args.seeds, args.budget)
    finish_tables(args.finish_max_rounds)
    print(f"\nran in {time.perf_counter() - started:.0f} s")


def search_tables(names: list[str], seeds: int, budget: int) -> None:
    # One job a run, slowest strategies first, so neither core idles at the end.
    jobs = [(p, n, seed, budget) for n in sorted(names, key=lambda n: n != "gp")
            for p in PRESETS for seed in range(seeds)]
    with multiprocessing.Pool(os.cpu_count()) as pool:
        results = pool.map(job, jobs, chunksize=4)
    by: dict[tuple[str, str], list[tuple[float, int, float, int, float]]] = {}
    for p, n, r in results:
        by.setdefault((p, n), []).append(r)

    print(f"SIMULATION ({len(PRESETS)} landscapes x {seeds} seeds, the simulated wall-clock "
          f"of {budget} usual launches each; grid measures every setup once). 'study' is the "
          "whole study: search, finalists, finish, decision")
    print(f"{'strategy':<11} {'median %opt':>11} {'worst %opt':>10} {'study med':>9} "
          f"{'study worst':>11} {'launches->2%':>13} {'sim h->2%':>9} {'launches used':>13} "
          f"{'max %grid':>9}")
    for name in names:
        rows = [r for p in PRESETS for r in by[(p, name)]]
        shares = np.array([r[0] for r in rows])
        study = np.array([r[4] for r in rows])
        reached = np.array([r[1] if r[1] > 0 else np.inf for r in rows])
        clock = np.array([r[2] if r[1] > 0 else np.inf for r in rows])
        used_share = max(r[3] / truth(p)[2] for p in PRESETS for r in by[(p, name)])
        print(f"{name:<11} {100 * np.median(shares):>10.1f}% {100 * shares.min():>9.1f}% "
              f"{100 * np.median(study):>8.1f}% {100 * study.min():>10.1f}% "
              f"{np.median(reached):>13.0f} {np.median(clock) / 3600:>9.2f} "
              f"{np.median([r[3] for r in rows]):>13.0f} {100 * used_share:>8.1f}%")
    print("\nper landscape, the whole study's pick (median %opt / worst %opt / median launches "
          "until the search's pick is within 2%):")
    print(f"{'landscape':<22} {'grid size':>9}" + "".join(f" {n:>22}" for n in names))
    for preset in PRESETS:
        cells = []
        for name in names:
            rows = by[(preset, name)]
            picked = [r[4] for r in rows]
            reach = np.median([r[1] if r[1] > 0 else np.inf for r in rows])
            cells.append(f"{100 * np.median(picked):5.1f}/{100 * min(picked):5.1f}/{reach:>5.0f}")
        print(f"{preset:<22} {truth(preset)[2]:>9}" + "".join(f" {c:>22}" for c in cells))


def finish_tables(max_rounds: int) -> None:
    print("\nSIMULATION: noise-aware finish vs median+MAD on the same readings (the true top-3 +"
          f" baseline, 4 rounds, up to {max_rounds} while unsettled; share of picks truly >2%"
          " worse), quiet and with bursts of outside load on 10% of readings:")
    for preset in PRESETS:
        ours, mad, mean_rounds = finish_wrong_picks(preset, reps=200, rounds=4,
                                                    max_rounds=max_rounds)
        b_ours, b_mad, b_rounds = finish_wrong_picks(preset, reps=200, rounds=4,
                                                     max_rounds=max_rounds, bursts=0.10)
        print(f"  {preset:<22} quiet: ours {100 * ours:5.1f}%  median+MAD {100 * mad:5.1f}%  "
              f"rounds {mean_rounds:.2f} | bursts: ours {100 * b_ours:5.1f}%  median+MAD "
              f"{100 * b_mad:5.1f}%  rounds {b_rounds:.2f}")
    print("\nSIMULATION: three drafting finalists truly equal to no drafting, 1,000 finishes: "
          f"called ahead in {100 * false_ahead_rate(1000):.1f}% (alpha 5%)")


if __name__ == "__main__":
    main()

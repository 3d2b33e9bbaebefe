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

from autotune.recommend import (  # noqa: E402
    alpha_per_look,
    decide,
    finish_looks,
    worth_more_rounds,
)
from autotune.sim.model import Landscape, simulate_launch, true_tokens_per_second  # noqa: E402
from autotune.sim.presets import PRESETS  # noqa: E402
from autotune.space import BASELINE, FloatRange, IntRange, SearchSpace, SpecConfig  # noqa: E402
from autotune.stats import median_mad  # noqa: E402
from strategies import Observation, create_strategy, strategy_names  # noqa: E402

WITHIN = 0.98


def space_for(landscape: Landscape) -> SearchSpace:
    method = "draft-simple" if landscape.name == "cpu-only" else "draft-mtp"
    return SearchSpace(
        methods=("none", method, "ngram-mod"), draft_max=IntRange(1, 8),
        p_min=FloatRange(0.0, 0.9, 0.1), drafters=tuple(landscape.drafters),
        cache_type_k=("f16", "q8_0"), cache_type_v=("f16", "q8_0"), flash_attn=("off", "on"),
    )


@cache
def truth(preset: str) -> tuple[dict[SpecConfig, float], float, int]:
    landscape = PRESETS[preset]
    values = {c: true_tokens_per_second(landscape, c) for c in space_for(landscape).grid()}
    return values, max(values.values()), len(values)


def observe(landscape: Landscape, config: SpecConfig, rng: np.random.Generator,
            effort: float) -> tuple[Observation, float]:
    reading = simulate_launch(landscape, config, rng, effort=effort)
    return Observation(config, reading.tokens_per_second, True, effort, reading.acceptance,
                       reading.per_position_acceptance), reading.seconds


def run_one(preset: str, strategy_name: str, seed: int, budget: int) -> tuple[float, int, float, int]:
    """(share of optimum of the strategy's pick, launches until its pick is within 2% for good
    or -1, sim seconds to that, launches used)."""
    landscape = PRESETS[preset]
    values, optimum, grid_size = truth(preset)
    rng = np.random.default_rng(seed)
    limit = grid_size if strategy_name == "grid" else budget
    strategy = create_strategy(strategy_name, space_for(landscape), seed=seed, budget=limit)
    observation, seconds = observe(landscape, BASELINE, rng, 1.0)
    strategy.tell(observation)
    launches, clock = 1, seconds
    clock_at = [clock]
    within = [values[BASELINE] >= WITHIN * optimum]
    while launches < limit:
        ask = strategy.ask()
        if ask is None:
            break
        observation, seconds = observe(landscape, ask.config, rng, ask.effort)
        strategy.tell(observation)
        launches += 1
        clock += seconds
        pick = strategy.recommend()
        clock_at.append(clock)
        within.append(pick is not None and values[pick] >= WITHIN * optimum)
    pick = strategy.recommend()
    share = values[pick] / optimum if pick is not None else 0.0
    # The first launch after which the pick stays within 2% to the end.
    misses = [i for i, ok in enumerate(within) if not ok]
    settled = 0 if not misses else misses[-1] + 1
    if settled >= len(within):
        return share, -1, 0.0, launches
    return share, settled + 1, clock_at[settled], launches


def finish_wrong_picks(
    preset: str, reps: int, rounds: int, max_rounds: int, alpha: float = 0.05
) -> tuple[float, float, float]:
    """(share of reps where our finish, then median+MAD on the same readings, picks a setup
    truly >2% worse than the best finalist; mean rounds per setup). Ours runs as `autotune
    tune` does: ``rounds``, then 2 more at a time up to ``max_rounds`` while a drafting lead
    is unproven, each look at alpha / looks."""
    landscape = PRESETS[preset]
    values, _, _ = truth(preset)
    ranked = sorted(values, key=lambda c: -values[c])
    finalists = [*dict.fromkeys([*ranked[:3], BASELINE])]
    best_true = max(values[c] for c in finalists)
    looks = finish_looks(rounds, max_rounds)
    rng = np.random.default_rng(7)
    ours_wrong = mad_wrong = measured = 0
    for _ in range(reps):
        rounds_by: dict[SpecConfig, list[float]] = {c: [] for c in finalists}
        for look in looks:
            for _ in range(look - len(rounds_by[BASELINE])):
                for c in finalists:
                    rounds_by[c].append(simulate_launch(landscape, c, rng).tokens_per_second)
            decision = decide(rounds_by, simplicity=lambda c: c.simplicity(),
                              alpha=alpha_per_look(alpha, looks))
            if not worth_more_rounds(decision, rounds_by):
                break
        ours_wrong += values[decision.config] < WITHIN * best_true
        mad_wrong += values[mad_rule(rounds_by)] < WITHIN * best_true
        measured += len(rounds_by[BASELINE])
    return ours_wrong / reps, mad_wrong / reps, measured / reps


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


def job(args: tuple[str, str, int, int]) -> tuple[str, str, tuple[float, int, float, int]]:
    preset, name, seed, budget = args
    return preset, name, run_one(preset, name, seed, budget)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=int, default=60)
    parser.add_argument("--strategies", default=",".join(strategy_names()))
    parser.add_argument("--finish-max-rounds", type=int, default=8,
                        help="the finish's max_rounds (4: no extra rounds)")
    args = parser.parse_args()
    names = []
    for name in args.strategies.split(","):
        try:
            create_strategy(name, space_for(PRESETS["cpu-only"]), seed=0, budget=1)
            names.append(name)
        except KeyError as error:
            print(f"skipped {name}: {error}")
    started = time.perf_counter()
    # One job a run, slowest strategies first, so neither core idles at the end.
    jobs = [(p, n, seed, args.budget) for n in sorted(names, key=lambda n: n != "gp")
            for p in PRESETS for seed in range(args.seeds)]
    with multiprocessing.Pool(os.cpu_count()) as pool:
        results = pool.map(job, jobs, chunksize=4)
    by: dict[tuple[str, str], list[tuple[float, int, float, int]]] = {}
    for p, n, r in results:
        by.setdefault((p, n), []).append(r)

    print(f"SIMULATION ({len(PRESETS)} landscapes x {args.seeds} seeds, budget {args.budget} "
          "launches; grid measures every setup once)")
    print(f"{'strategy':<11} {'median %opt':>11} {'worst %opt':>10} {'launches->2%':>13} "
          f"{'sim h->2%':>9} {'launches used':>13} {'max %grid':>9}")
    for name in names:
        rows = [r for p in PRESETS for r in by[(p, name)]]
        shares = np.array([r[0] for r in rows])
        reached = np.array([r[1] if r[1] > 0 else np.inf for r in rows])
        clock = np.array([r[2] if r[1] > 0 else np.inf for r in rows])
        used_share = max(r[3] / truth(p)[2] for p in PRESETS for r in by[(p, name)])
        print(f"{name:<11} {100 * np.median(shares):>10.1f}% {100 * shares.min():>9.1f}% "
              f"{np.median(reached):>13.0f} {np.median(clock) / 3600:>9.2f} "
              f"{np.median([r[3] for r in rows]):>13.0f} {100 * used_share:>8.1f}%")
    print("\nper landscape (median %opt / worst %opt / median launches to 2%):")
    print(f"{'landscape':<18} {'grid size':>9}" + "".join(f" {n:>22}" for n in names))
    for preset in PRESETS:
        cells = []
        for name in names:
            rows = by[(preset, name)]
            picked = [r[0] for r in rows]
            reach = np.median([r[1] if r[1] > 0 else np.inf for r in rows])
            cells.append(f"{100 * np.median(picked):5.1f}/{100 * min(picked):5.1f}/{reach:>5.0f}")
        print(f"{preset:<18} {truth(preset)[2]:>9}" + "".join(f" {c:>22}" for c in cells))

    print("\nnoise-aware finish vs median+MAD on the same readings (the true top-3 + baseline,"
          f" 4 rounds, up to {args.finish_max_rounds} while a drafting lead is unproven;"
          " share of picks truly >2% worse):")
    for preset in PRESETS:
        ours, mad, mean_rounds = finish_wrong_picks(preset, reps=200, rounds=4,
                                                    max_rounds=args.finish_max_rounds)
        print(f"  {preset:<18} ours {100 * ours:5.1f}%   median+MAD {100 * mad:5.1f}%   "
              f"rounds {mean_rounds:.2f}")
    print(f"\nran in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

"""How close can any search get at this noise and budget? A bound, on SIMULATED landscapes.

    python benchmarks/noise_limit.py [--seeds 400] [--budget 60] [--top 1,3,10]

An oracle that is told the answer's hard part (the true best drafting settings) spends the
same simulated wall-clock as `benchmarks/strategies.py` gives a strategy (``budget`` launches
of the usual length) on a balanced design: every valid KV cache / flash-attention setting
crossed with the ``--top`` truly best drafting settings, in rounds, one usual launch each. It
fits the log-additive model spec-model uses (pooling every launch into one effect per level,
settings one draft-max apart tied by the same prior) and picks the best prediction. It still
has to find the KV setting and, among the ``--top`` settings, the draft length from noisy
readings: where those effects are a few per cent and a reading is noisy by 6-8%, it gets some
of them wrong, and so would any strategy that is told less. Not a strategy (it cheats), and
not evidence about a real server.

Printed per landscape: the oracle's mean, median, 5th percentile and worst share of the
optimum over ``--seeds`` runs, its share of runs below 97%, and the chance that 20 runs (the
strategy benchmark's seeds) all reach 97% at that rate.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autotune.sim.model import Landscape, simulate_launch  # noqa: E402
from autotune.sim.presets import PRESETS  # noqa: E402
from autotune.space import SpecConfig  # noqa: E402
from benchmarks.strategies import space_for, truth  # noqa: E402
from strategies.factor_model import fit_factors  # noqa: E402
from strategies.spec_model import draft_max_neighbours, factor_levels  # noqa: E402

BENCHMARK_SEEDS = 20  # what `benchmarks/strategies.py` runs per landscape


def oracle_arms(preset: str, top: int) -> list[SpecConfig]:
    """The ``top`` truly best drafting settings, each with every valid KV setting that starts."""
    values, _, _ = truth(preset)
    by_drafting: dict[object, SpecConfig] = {}  # the best setup of each drafting setting
    for config in sorted(values, key=lambda c: -values[c]):
        by_drafting.setdefault(factor_levels(config)[0], config)
    best = list(by_drafting.values())[:top]
    space = space_for(PRESETS[preset])
    arms = [space.settle(replace(d, cache_type_k=k, cache_type_v=v, flash_attn=fa))
            for d, (k, v, fa) in itertools.product(best, space.kv_choices())]
    return [a for a in dict.fromkeys(arms) if a in values]


def oracle_run(landscape: Landscape, arms: list[SpecConfig], launches: int,
               rng: np.random.Generator) -> SpecConfig:
    level_of = {a: factor_levels(a) for a in arms}
    rows = [(level_of[arm], simulate_launch(landscape, arm, rng).tokens_per_second, 1.0)
            for arm in (arms[i % len(arms)] for i in range(launches))]
    fit = fit_factors(rows, draft_max_neighbours(arms))
    assert fit is not None
    known = [a for a in arms if fit.knows(level_of[a])]
    return max(known, key=lambda a: fit.predict(level_of[a])[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=400)
    parser.add_argument("--budget", type=int, default=60)
    parser.add_argument("--top", default="1,3,10",
                        help="how many of the truly best drafting settings the oracle is told "
                             "(a table for each)")
    args = parser.parse_args()
    started = time.perf_counter()
    for top in (int(t) for t in args.top.split(",")):
        table(top, args.seeds, args.budget)
    print(f"\nran in {time.perf_counter() - started:.0f} s")


def table(top: int, seeds: int, budget: int) -> None:
    print(f"\nSIMULATION: an oracle told the {top} best drafting setting(s), balanced design over "
          f"them x every KV setting, the wall-clock of {budget} usual launches, {seeds} runs")
    print(f"{'landscape':<24} {'noise':>5} {'arms':>4} {'launches':>8} {'mean':>6} "
          f"{'median':>7} {'p5':>6} {'worst':>6} {'<97%':>6} {'P(20 runs >=97%)':>17}")
    for preset, landscape in PRESETS.items():
        values, optimum, _ = truth(preset)
        arms = oracle_arms(preset, top)
        rng = np.random.default_rng(0)
        # Every launch at the usual length: the wall-clock of ``budget`` of them, none elsewhere.
        shares = np.array([values[oracle_run(landscape, arms, budget, rng)] / optimum
                           for _ in range(seeds)])
        below = float(np.mean(shares < 0.97))
        print(f"{preset:<24} {100 * landscape.noise:>4.0f}% {len(arms):>4} {budget:>8} "
              f"{100 * shares.mean():>5.1f}% {100 * np.median(shares):>6.1f}% "
              f"{100 * np.percentile(shares, 5):>5.1f}% {100 * shares.min():>5.1f}% "
              f"{100 * below:>5.1f}% "
              f"{100 * (1 - below) ** BENCHMARK_SEEDS:>16.0f}%")


if __name__ == "__main__":
    main()

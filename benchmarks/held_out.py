"""The whole study on seeds the strategy benchmark does not use, on SIMULATED landscapes.

    python benchmarks/held_out.py [--strategy spec-model] [--sets 2000,3000,...] [--seeds 60]

`benchmarks/strategies.py` reports seeds 0-19, the issue's yardstick; a change judged there
alone would be fitted to those 20 seeds. Changes to the search or the finish are judged here
instead: the same run as the strategy benchmark (search at the same simulated wall-clock,
finalists, finish, decision) on ``--seeds`` seeds from each of the ``--sets`` starting points.
Printed: per landscape the mean and median share of the optimum and the runs below 97%, then
per set the mean over the landscapes, so a gain can be seen to hold set by set. Not evidence
about a real server. On 2 cores about 80 s for the default 3,360 runs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# First: it limits each worker to one thread before NumPy loads OpenBLAS (see its comment).
import benchmarks.strategies as bench  # noqa: E402
import numpy as np  # noqa: E402

from autotune.sim.presets import PRESETS  # noqa: E402

HELD_OUT_SETS = (2000, 3000, 4000, 5000, 6000, 7000, 8000)


def study_share(job: tuple[str, str, int, int]) -> tuple[str, int, float]:
    preset, strategy_name, seed, budget = job
    return preset, seed, bench.run_one(preset, strategy_name, seed, budget)[4]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--strategy", default="spec-model")
    parser.add_argument("--sets", default=",".join(map(str, HELD_OUT_SETS)),
                        help="first seed of each set")
    parser.add_argument("--seeds", type=int, default=60, help="seeds per set")
    parser.add_argument("--budget", type=int, default=60)
    args = parser.parse_args()
    starts = [int(s) for s in args.sets.split(",")]
    jobs = [(p, args.strategy, first + i, args.budget)
            for p in PRESETS for first in starts for i in range(args.seeds)]
    started = time.perf_counter()
    with multiprocessing.Pool(os.cpu_count()) as pool:
        results = pool.map(study_share, jobs, chunksize=8)
    print(f"SIMULATION: {args.strategy}'s whole study on held-out seeds ({len(starts)} sets of "
          f"{args.seeds}, {len(results)} runs), share of the optimum")
    print(f"{'landscape':<24} {'mean':>7} {'median':>7} {'runs < 97%':>11}")
    for preset in PRESETS:
        shares = 100 * np.array([s for p, _, s in results if p == preset])
        print(f"{preset:<24} {shares.mean():>7.2f} {np.median(shares):>7.1f} "
              f"{int((shares < 97).sum()):>5} of {shares.size}")
    by_set = []
    for first in starts:
        in_set = [(p, s) for p, seed, s in results if first <= seed < first + args.seeds]
        by_set.append(np.mean([100 * np.mean([s for p, s in in_set if p == preset])
                               for preset in PRESETS]))
    overall = np.mean([100 * np.mean([s for p, _, s in results if p == preset])
                       for preset in PRESETS])
    print(f"mean over the landscapes {overall:.3f}%, runs below 97% "
          f"{sum(s < 0.97 for _, _, s in results)}; per set: "
          + ", ".join(f"{first}s {value:.3f}" for first, value in zip(starts, by_set, strict=True)))
    print(f"\nran in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

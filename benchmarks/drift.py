"""SIMULATION: how often the sidecar's drift detector cries wolf on a long stable stream, and
how fast it sees a real 20% drop and a 60% collapse. The streams are simulated (no server
runs): per-window log throughput with AR(1) correlation, heavy tails (Student t, 4 degrees
of freedom) and bursts from noisy neighbours (1% of windows start a 1-5 window drop of
15-40%), which is what made textbook CUSUM (k = 0.5, h = 5 on standardized values) alarm on
stable streams (river #1914). Nothing here is evidence about a real server.

    python3 benchmarks/drift.py [--windows 200000] [--runs 400] [--reference-windows 40]
                                [--extreme inf]   # inf: the clipped CUSUM alone
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from autotune.drift import DriftSettings, Reference, first_alarm


def stream(rng: np.random.Generator, length: int, *, sd: float, phi: float = 0.5,
           bursts: bool = True) -> np.ndarray:
    shocks = rng.standard_t(4, size=length) * sd * math.sqrt(1 - phi * phi) / math.sqrt(2)
    logs = np.empty(length)
    level = 0.0
    for i in range(length):
        level = phi * level + shocks[i]
        logs[i] = level
    if bursts:
        i = 0
        while i < length:
            if rng.random() < 0.01:
                span = int(rng.integers(1, 6))
                logs[i:i + span] += math.log(1 - rng.uniform(0.15, 0.40))
                i += span
            i += 1
    return 100.0 * np.exp(logs)


def textbook_alarms(reference: np.ndarray, values: np.ndarray) -> int:
    """CUSUM k = 0.5, h = 5 on values standardized by the reference's mean and sd."""
    mean, sd = float(reference.mean()), float(reference.std(ddof=1))
    high = low = 0.0
    alarms = 0
    for value in values:
        z = (value - mean) / sd
        high, low = max(0.0, high + z - 0.5), max(0.0, low - z - 0.5)
        if high > 5 or low > 5:
            alarms += 1
            high = low = 0.0
    return alarms


def alarms(reference: Reference, values: np.ndarray, settings: DriftSettings) -> int:
    count, start = 0, 0
    while start < len(values):
        hit = first_alarm(reference, values[start:], settings)
        if hit is None:
            break
        count += 1
        start += hit + 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--references", type=int, default=20,
                        help="stable streams, each judged against its own reference")
    parser.add_argument("--reference-windows", type=int, default=40,
                        help="windows that define normal ([sidecar] reference_windows)")
    parser.add_argument("--extreme", type=float, default=DriftSettings.extreme,
                        help="scales for the two-blocks-in-a-row rule; inf turns it off")
    options = parser.parse_args()
    settings = DriftSettings(extreme=options.extreme)
    print("SIMULATION: drift detection on simulated throughput windows (not a real server)")
    print(f"{'noise sd':>8} {'ours: false alarms / 10k windows':>33} {'textbook':>9} "
          f"{'delay to see -20%: median':>26} {'p90':>5} {'missed':>7} {'-60%: median':>13}")
    for index, sd in enumerate((0.03, 0.06, 0.10)):
        # One generator per purpose, so a change to one column leaves the others' draws alone.
        rng = np.random.default_rng((0, index, 0))
        ours = textbook = 0
        length = options.windows // options.references
        for _ in range(options.references):  # a reference's luck decides much: average it
            reference_values = stream(rng, options.reference_windows, sd=sd)
            stable = stream(rng, length, sd=sd)
            ours += alarms(Reference.of(reference_values), stable, settings)
            textbook += textbook_alarms(reference_values, stable)
        per_10k = 10_000 / (length * options.references)
        delays, missed = shift_delays(np.random.default_rng((0, index, 1)), sd, 0.8,
                                      options, settings)
        collapse, _ = shift_delays(np.random.default_rng((0, index, 2)), sd, 0.4, options,
                                   settings)
        median = float(np.median(delays)) if delays else float("nan")
        p90 = float(np.percentile(delays, 90)) if delays else float("nan")
        print(f"{sd:>8.2f} {ours * per_10k:>33.2f} {textbook * per_10k:>9.1f} {median:>26.0f} "
              f"{p90:>5.0f} {missed:>4}/{options.runs} {float(np.median(collapse)):>13.0f}")
    print(f"\ndefaults: min_shift {settings.min_shift:.0%}, arl0 {settings.arl0:,.0f} blocks, "
          f"clip {settings.clip} scales, two blocks in a row beyond {settings.extreme} scales "
          f"alarm at once; a window is one scrape interval (15 s by default)")


def shift_delays(rng: np.random.Generator, sd: float, factor: float,
                 options: argparse.Namespace, settings: DriftSettings) -> tuple[list[int], int]:
    """Windows from a lasting change by ``factor`` to its alarm, over ``options.runs``
    streams, and how many streams never alarmed."""
    delays, missed = [], 0
    for _ in range(options.runs):
        ref = Reference.of(stream(rng, options.reference_windows, sd=sd))
        before = stream(rng, 200, sd=sd)
        after = stream(rng, 400, sd=sd) * factor
        early = first_alarm(ref, before, settings)
        if early is not None:
            continue  # a false alarm before the shift; counted above
        hit = first_alarm(ref, np.concatenate([before, after]), settings)
        if hit is None:
            missed += 1
        else:
            delays.append(hit - 200 + 1)
    return delays, missed


if __name__ == "__main__":
    main()

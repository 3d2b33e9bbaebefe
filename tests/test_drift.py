"""The drift detector's maths: Siegmund's run length, the calibrated threshold, and a CUSUM
that ignores short bursts but sees a lasting shift."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from autotune.drift import Cusum, DriftSettings, Reference, first_alarm, siegmund_arl, threshold


@given(st.floats(min_value=0.05, max_value=3.0), st.floats(min_value=100.0, max_value=1e6))
def test_the_threshold_reaches_the_target_run_length(k: float, arl0: float) -> None:
    h = threshold(k, arl0)
    assert math.isclose(siegmund_arl(k, h), 2 * arl0, rel_tol=1e-6)
    assert threshold(k, arl0 * 10) > h  # rarer false alarms need a higher threshold


@settings(max_examples=30, deadline=None)
@given(st.floats(min_value=0.5, max_value=2.0))
def test_the_reference_is_scale_free(factor: float) -> None:
    values = list(np.random.default_rng(3).normal(100, 5, size=40))
    a = Reference.of(values)
    b = Reference.of([v * factor for v in values])
    assert math.isclose(a.scale, b.scale, rel_tol=1e-9)
    assert math.isclose(b.center - a.center, math.log(factor), rel_tol=1e-9, abs_tol=1e-12)


def test_a_short_burst_is_ignored_and_a_lasting_drop_is_seen() -> None:
    rng = np.random.default_rng(0)
    reference = Reference.of(100 * np.exp(rng.normal(0, 0.04, size=80)))
    steady = 100 * np.exp(rng.normal(0, 0.04, size=400))
    burst = steady.copy()
    burst[100:103] *= 0.5  # three windows of a noisy neighbour
    assert first_alarm(reference, burst) is None
    dropped = np.concatenate([steady[:200], steady[200:] * 0.8])
    hit = first_alarm(reference, dropped)
    assert hit is not None and 200 <= hit < 200 + 6 * DriftSettings().block


def test_direction_is_reported_and_the_statistic_restarts() -> None:
    detector = Cusum(Reference(math.log(100.0), 0.03))
    directions = [detector.update(130.0) for _ in range(40)]
    assert "up" in directions and "down" not in directions
    assert detector.high < detector.h  # restarted after the alarm


def test_a_collapse_alarms_after_two_blocks_and_one_far_block_does_not() -> None:
    """Two blocks in a row far out alarm at once; the clipped CUSUM alone needs more blocks."""
    block = DriftSettings().block
    reference = Reference(math.log(100.0), 0.10)  # noisy, as live acceptance is
    collapse = [100.0] * 2 * block + [40.0] * 10 * block
    assert first_alarm(reference, collapse) == 4 * block - 1
    clip_only = first_alarm(reference, collapse, DriftSettings(extreme=math.inf))
    assert clip_only is not None and clip_only > 4 * block - 1
    one_block = [100.0] * 2 * block + [40.0] * block + [100.0] * 10 * block
    assert first_alarm(reference, one_block) is None
    apart = [100.0] * 2 * block + ([40.0] * block + [100.0] * block) * 2 + [100.0] * 8 * block
    assert first_alarm(reference, apart) is None  # far blocks must be neighbours


@settings(max_examples=40, deadline=None)
@given(st.floats(min_value=0.0, max_value=0.09), st.sampled_from([0.02, 0.03, 0.05]))
def test_the_extreme_rule_leaves_shifts_below_min_shift_to_the_cusum(drop: float,
                                                                      scale: float) -> None:
    """However quiet the reference, a lasting shift smaller than ``min_shift`` (10%, in log
    terms: a drop below 1 - 1/1.1) is not "extreme": it alarms when the CUSUM alone would."""
    reference = Reference(math.log(100.0), scale)
    values = [100.0 * (1.0 - drop)] * 10 * DriftSettings().block
    assert first_alarm(reference, values) == first_alarm(
        reference, values, DriftSettings(extreme=math.inf))

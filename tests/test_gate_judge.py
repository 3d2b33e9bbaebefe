"""The gate's pure verdicts: non-inferiority on throughput and acceptance, output comparison."""

from __future__ import annotations

import math

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from autotune.gate.judge import acceptance_signal, correctness_signal, overall, throughput_signal
from autotune.greedy import OutputComparison, first_divergence, token_edit_distance

readings = st.lists(st.floats(min_value=10.0, max_value=500.0), min_size=3, max_size=12)
tokens = st.lists(st.integers(min_value=0, max_value=5), max_size=30)


@settings(max_examples=60, deadline=None)
@given(readings, st.floats(min_value=0.5, max_value=2.0))
def test_throughput_scales_and_its_interval_holds_the_estimate(before: list[float],
                                                               factor: float) -> None:
    assume(abs(factor - 0.9) > 1e-6)  # at the floor itself rounding decides
    after = [value * factor for value in before]
    signal = throughput_signal(before, after, tolerance=0.1, alpha=0.05, paired=True)
    assert signal.estimate is not None and math.isclose(signal.estimate, factor, rel_tol=1e-9)
    assert signal.low is not None and signal.high is not None
    assert signal.low <= signal.estimate <= signal.high
    # An exact rescaling is known without doubt: pass at or above the floor, red below it.
    assert signal.verdict == ("pass" if factor > 0.9 else "regression")


def test_noisy_equal_readings_are_not_called_a_regression() -> None:
    before = [100.0, 120.0, 90.0, 110.0]
    after = [80.0, 140.0, 100.0, 95.0]  # noisy, about equal
    signal = throughput_signal(before, after, tolerance=0.1, alpha=0.05, paired=True)
    assert signal.verdict == "inconclusive"


def test_a_clear_slowdown_is_a_regression_and_a_small_one_is_not() -> None:
    before = [100.0, 102.0, 98.0, 101.0, 99.0, 100.0]
    assert throughput_signal(before, [v * 0.6 for v in before], tolerance=0.1, alpha=0.05,
                             paired=False).verdict == "regression"
    wobble = [0.97, 0.99, 0.98, 0.96, 0.98, 0.97]
    assert throughput_signal(before, [v * w for v, w in zip(before, wobble)], tolerance=0.1,
                             alpha=0.05, paired=True).verdict == "pass"


def test_acceptance_drop_fails_and_no_drafting_is_not_applicable() -> None:
    before = [0.78, 0.80, 0.79, 0.81]
    after = [0.40, 0.42, 0.41, 0.39]
    assert acceptance_signal("acceptance", before, after, tolerance=0.05, alpha=0.05,
                             paired=True).verdict == "regression"
    assert acceptance_signal("acceptance", before, before, tolerance=0.05, alpha=0.05,
                             paired=True).verdict == "pass"
    assert acceptance_signal("acceptance", [None] * 3, [None] * 3, tolerance=0.05, alpha=0.05,
                             paired=True).verdict == "not-applicable"
    assert acceptance_signal("acceptance", before, [None] * 4, tolerance=0.05, alpha=0.05,
                             paired=True).detail == "drafting stopped"


@given(tokens, tokens)
def test_edit_distance_is_a_metric_bounded_by_lengths(a: list[int], b: list[int]) -> None:
    distance = token_edit_distance(a, b)
    assert distance == token_edit_distance(b, a)
    assert abs(len(a) - len(b)) <= distance <= max(len(a), len(b))
    assert (distance == 0) == (a == b)
    assert (first_divergence(a, b) is None) == (a == b)


@given(tokens, tokens, tokens)
def test_edit_distance_obeys_the_triangle_inequality(a: list[int], b: list[int],
                                                    c: list[int]) -> None:
    assert token_edit_distance(a, c) <= token_edit_distance(a, b) + token_edit_distance(b, c)


def test_first_divergence_points_at_the_first_different_token() -> None:
    assert first_divergence([1, 2, 3, 4], [1, 2, 9, 4]) == 2
    assert first_divergence([1, 2, 3], [1, 2]) == 2
    assert first_divergence([5], [5]) is None


def comparison(identical: bool) -> OutputComparison:
    return OutputComparison(prompt_index=3, label="code", identical=identical,
                            first_divergence=None if identical else 17,
                            edit_distance=0 if identical else 5, reference_tokens=40, tokens=41)


def test_drafting_must_be_lossless_but_a_lossy_cache_is_judged_only_by_its_limit() -> None:
    diverged = [comparison(True), comparison(False)]
    red = correctness_signal("correctness", diverged, required=True)
    assert red.verdict == "regression" and "first differs at token 17" in red.detail
    assert correctness_signal("quality", diverged, required=False).verdict == "not-applicable"
    assert correctness_signal("quality", diverged, required=False,
                              max_loss=0.0).verdict == "regression"
    assert correctness_signal("quality", diverged, required=False,
                              max_loss=0.5).verdict == "pass"


def test_overall_is_red_on_any_regression_then_inconclusive() -> None:
    same = throughput_signal([100.0] * 3, [100.0] * 3, tolerance=0.1, alpha=0.05, paired=True)
    noisy = throughput_signal([100.0, 120.0, 90.0], [80.0, 140.0, 100.0], tolerance=0.1,
                              alpha=0.05, paired=True)
    slow = throughput_signal([100.0] * 3, [50.0] * 3, tolerance=0.1, alpha=0.05, paired=True)
    assert overall([same]) == "pass"
    assert overall([same, noisy]) == "inconclusive"
    assert overall([noisy, slow]) == "regression"


def test_pairs_measured_under_outside_load_are_left_out_of_the_verdicts() -> None:
    from autotune.config import TuneSpec
    from autotune.gate.measure import Reading
    from autotune.gate.run import _Evidence

    def reading(rotation: int, tps: float, outside: float = 0.0) -> Reading:
        return Reading(rotation, tps, 0.9, 3.0, outside, rotation)

    before = [reading(i, 100.0 + i) for i in range(6)]
    after = [reading(i, 100.0 + i) for i in range(6)]
    after[2] = reading(2, 40.0, outside=0.3)  # a busy neighbour, seen by psutil
    evidence = _Evidence(before, after)
    assert evidence.left_out == 1
    throughput = evidence.signals(TuneSpec(), 0.05)[0]
    assert throughput.verdict == "pass" and throughput.estimate == 1.0

"""The gate's pure verdicts: non-inferiority on throughput and acceptance, output comparison."""

from __future__ import annotations

import math

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from autotune.gate.judge import acceptance_signal, correctness_signal, overall, throughput_signal
from autotune.greedy import (
    GreedyOutputs,
    OutputComparison,
    TokenChoice,
    _choices,
    compare_outputs,
    first_divergence,
    token_edit_distance,
)
from autotune.workload import Prompt

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


# Measured on the portable llama-server build: the no-drafting run's own log-probabilities at
# the token where a Q4_0 drafter's run answered "user" for "admin".
ADMIN, USER, ASSISTANT = 8473, 2364, 111457
AT_THE_TIE = [TokenChoice(ADMIN, -2.4497, "admin"), TokenChoice(USER, -2.5205, "user"),
              TokenChoice(ASSISTANT, -3.2372, "assistant")]


def outputs(answers: list[list[int]], choices: bool) -> GreedyOutputs:
    listed: list[list[list[TokenChoice]] | None] | None = (
        [[AT_THE_TIE] * len(a) for a in answers] if choices else None)
    return GreedyOutputs("b1", answers, [" ".join(map(str, a)) for a in answers], listed)


def prompt(index: int) -> Prompt:
    return Prompt(index=index, label="tool-call", max_tokens=8, temperature=0.0, weight=1.0,
                  messages=({"role": "user", "content": "x"},))


def test_a_near_tie_passes_and_a_clear_choice_or_an_unknown_one_fails() -> None:
    reference = outputs([[1, ADMIN, 5], [1, ADMIN, 5], [1, 2, 3]], choices=True)
    drafted = outputs([[1, USER, 6], [1, ASSISTANT, 5], [1, 2, 3]], choices=False)
    tie, far, same = compare_outputs([prompt(i) for i in range(3)], reference, drafted,
                                     near_tie_nats=0.1)
    assert same.identical and same.near_tie is None
    assert tie.near_tie is True and tie.token == "user" and tie.reference_token == "admin"
    assert tie.logprob_gap is not None and math.isclose(tie.logprob_gap, 0.0708, abs_tol=1e-9)
    assert far.near_tie is False and far.logprob_gap is not None and far.logprob_gap > 0.7

    only_tie = correctness_signal("correctness", [tie, same], required=True)
    assert only_tie.verdict == "pass", only_tie
    assert "1 differ only at a near-tie" in only_tie.detail and "'admin'" in only_tie.detail
    both = correctness_signal("correctness", [tie, far, same], required=True)
    assert both.verdict == "regression" and "first differs at token 1" in both.detail
    assert "0.79 nats likelier than 'assistant'" in both.detail
    strict = compare_outputs([prompt(0)], outputs([[1, ADMIN]], True), outputs([[1, USER]], False),
                             near_tie_nats=0.0)
    assert correctness_signal("correctness", strict, required=True).verdict == "regression"
    # Without the reference's log-probabilities nothing is known: any change fails.
    unknown = compare_outputs([prompt(0)], outputs([[1, ADMIN]], False),
                              outputs([[1, USER]], False), near_tie_nats=0.1)
    assert unknown[0].near_tie is None
    assert correctness_signal("correctness", unknown, required=True).verdict == "regression"
    # A token the reference did not list among its likeliest is far, however many nats.
    outside = compare_outputs([prompt(0)], outputs([[1, ADMIN]], True), outputs([[1, 42]], False),
                              near_tie_nats=10.0)
    assert outside[0].near_tie is False
    assert "not among its likeliest" in correctness_signal("c", outside, required=True).detail


def test_log_probabilities_are_used_only_when_their_tokens_are_the_tokenized_text() -> None:
    listed = [{"id": 7, "token": "a", "logprob": -0.1,
               "top_logprobs": [{"id": 7, "token": "a", "logprob": -0.1}]},
              {"id": 9, "token": "b", "logprob": -0.2,
               "top_logprobs": [{"id": 9, "token": "b", "logprob": -0.2},
                                {"id": 3, "token": "c", "logprob": -0.25}]}]
    assert _choices(listed, [7, 9]) == [[TokenChoice(7, -0.1, "a")],
                                        [TokenChoice(9, -0.2, "b"), TokenChoice(3, -0.25, "c")]]
    assert _choices(listed, [7, 8]) is None  # ids that do not line up: nothing is looked up
    assert _choices(listed, [7]) is None
    assert _choices([{"token": "a"}], [7]) is None  # no ids (an older server's format)
    assert _choices(None, [7]) is None


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

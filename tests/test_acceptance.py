"""Property tests for the acceptance maths (strategies/acceptance.py, autotune/sim/model.py)."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from autotune.sim.model import true_tokens_per_second, verifier_time
from autotune.sim.presets import PRESETS
from autotune.space import SpecConfig
from strategies.acceptance import (
    acceptance_ratio,
    conditional_from_unconditional,
    expected_step,
    expected_tokens,
    fit_step_time,
)

acceptances = st.lists(st.floats(min_value=0.01, max_value=0.99), min_size=1, max_size=8)


@given(acceptances)
def test_full_drafting_matches_the_closed_form(a: list[float]) -> None:
    n = len(a)
    drafted, emitted = expected_step(np.array(a), n, 0.0)
    assert drafted == n
    assert np.isclose(emitted, 1 + np.sum(np.cumprod(a)))
    assert np.isclose(emitted, expected_tokens(np.cumprod(a), n))


@given(acceptances)
def test_conditional_and_unconditional_round_trip(a: list[float]) -> None:
    assert np.allclose(conditional_from_unconditional(np.cumprod(a)), a)


@given(acceptances)
def test_more_draft_tokens_never_emit_fewer(a: list[float]) -> None:
    emitted = [expected_step(np.array(a), n, 0.0)[1] for n in range(1, len(a) + 1)]
    assert all(x <= y + 1e-12 for x, y in zip(emitted, emitted[1:], strict=False))


@given(acceptances, st.floats(min_value=0.05, max_value=0.95))
def test_p_min_drafts_less_and_accepts_a_larger_share(a: list[float], p: float) -> None:
    n = len(a)
    full_drafted, full_emitted = expected_step(np.array(a), n, 0.0)
    cut_drafted, cut_emitted = expected_step(np.array(a), n, p)
    assert cut_drafted <= full_drafted + 1e-9
    assert cut_emitted <= full_emitted + 1e-9
    assert (cut_emitted - 1) / cut_drafted >= (full_emitted - 1) / full_drafted - 1e-9


def test_acceptance_ratio_is_not_alpha() -> None:
    # The reference's worked example: alpha 0.8, gamma 4 -> ratio 0.59.
    assert np.isclose(acceptance_ratio([0.8] * 4, 4), 0.5904)


@given(st.floats(0.01, 1.0), st.floats(0.0, 0.5))
def test_step_time_fit_recovers_a_line(alpha: float, beta: float) -> None:
    points = [(n, alpha + beta * n) for n in (0.0, 2.0, 8.0)]
    fitted = fit_step_time(points)
    assert np.allclose(fitted, (alpha, beta), atol=1e-6)


def test_datacenter_preset_reproduces_the_published_curve() -> None:
    # SIMULATION calibrated to ~21 / 35 / 44 / 49 / 49 t/s (ik_llama.cpp PR #1744), flash
    # attention off (the calibration's plane; "auto" is on, as on a real GPU).
    landscape = PRESETS["dc-gpu-31b-mtp"]
    curve = [true_tokens_per_second(landscape, SpecConfig("draft-mtp", n, 0.0, "mtp-q8_0.gguf",
                                                                flash_attn="off"))
             for n in (1, 2, 3, 4)]
    assert np.allclose(curve, [35, 44, 49, 49], rtol=0.03)
    assert true_tokens_per_second(landscape, SpecConfig(flash_attn="off")) == 21.0


def test_moe_preset_reproduces_the_published_figures() -> None:
    # SIMULATION calibrated to vllm-mlx #699 (V(n)/V1 = 1.59/1.85/2.44/3.32 at n = 2/3/5/8) and
    # llama.cpp #24266 (63 -> 68 t/s, best at draft-max 1).
    landscape = PRESETS["moe-hybrid"]
    costs = [verifier_time(landscape, n) for n in (2, 3, 5, 8)]
    assert np.allclose(costs, [1.59, 1.85, 2.44, 3.32], rtol=0.03)
    curve = [true_tokens_per_second(landscape, SpecConfig("draft-mtp", n, 0.0, "mtp-q8_0.gguf",
                                                                flash_attn="off"))
             for n in (1, 2, 3, 4)]
    assert int(np.argmax(curve)) == 0
    assert np.isclose(curve[0], 68, rtol=0.02)


@given(acceptances, st.floats(min_value=0.0, max_value=0.95))
def test_draft_min_drops_short_drafts_only(a: list[float], p: float) -> None:
    n = len(a)
    plain = expected_step(np.array(a), n, p)
    assert np.allclose(expected_step(np.array(a), n, p, 1), plain)  # every draft has >= 1
    steps = [expected_step(np.array(a), n, p, m) for m in range(0, n + 1)]
    for (d1, e1), (d2, e2) in zip(steps, steps[1:], strict=False):
        assert d2 <= d1 + 1e-9 and e2 <= e1 + 1e-9  # a higher floor drops more drafts
        assert e2 >= 1.0 - 1e-12
    if p == 0.0:  # without a confidence cut every draft is full length: nothing dropped
        assert np.allclose(steps[-1], plain)


def test_draft_min_matches_a_simulation_of_the_rule() -> None:
    from strategies.acceptance import CONFIDENCE_CONCENTRATION as k

    a, n, p = np.array([0.8, 0.7, 0.6, 0.5, 0.4, 0.4]), 6, 0.5
    rng = np.random.default_rng(0)
    q = rng.beta(a * k, (1 - a) * k, size=(100_000, n))
    passed = q >= p
    length = np.where(passed.all(1), n, np.argmin(passed, 1))
    hits = (rng.random((100_000, n)) < q) & passed
    accepted = np.minimum(np.where(hits.all(1), n, np.argmin(hits, 1)), length)
    for n_min in (2, 3, 4):
        kept = length >= n_min
        drafted, emitted = expected_step(a, n, p, n_min)
        assert abs(drafted - (length * kept).mean()) < 0.02
        assert abs(emitted - 1 - (accepted * kept).mean()) < 0.02

"""Acceptance maths the model-based strategy uses. Pure functions.

E[tokens per verify step] with per-position conditional acceptance a_1..a_k is
1 + sum_i prod_{j<=i} a_j; with unconditional r_i (what per-position counters report:
accepted at position i / drafts) it is 1 + sum_i r_i. A p-min threshold is modelled as in the
simulator: calibrated Beta confidences with mean a_i, drafting stops at the first q_i < p_min.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scipy import stats as scipy_stats

CONFIDENCE_CONCENTRATION = 4.0  # Beta(a*k, (1-a)*k): how spread drafter confidences are


def position_terms(acceptance: np.ndarray, p_min: float) -> tuple[np.ndarray, np.ndarray]:
    """(P(q_i >= p), E[q_i ; q_i >= p]) per position for Beta confidences with mean a_i."""
    k = CONFIDENCE_CONCENTRATION
    a = np.clip(acceptance, 1e-4, 1 - 1e-4)
    alpha, beta = a * k, (1 - a) * k
    if p_min <= 0:
        return np.ones_like(a), a
    survive = scipy_stats.beta.sf(p_min, alpha, beta)
    # E[q 1{q>=p}] = mean * P(Beta(alpha+1, beta) >= p)
    accepted = a * scipy_stats.beta.sf(p_min, alpha + 1, beta)
    return survive, accepted


def expected_step(acceptance: np.ndarray, draft_max: int, p_min: float) -> tuple[float, float]:
    """(E[drafted tokens], E[tokens emitted]) per verify step."""
    a = acceptance[:draft_max]
    survive, accepted = position_terms(a, p_min)
    # Newer llama.cpp drops the low-confidence token instead of drafting it (reference §1).
    drafted = float(np.sum(np.cumprod(survive)))
    emitted = 1.0 + float(np.sum(np.cumprod(accepted)))
    return drafted, emitted


def drafter_passes(acceptance: np.ndarray, draft_max: int, p_min: float) -> float:
    """E[drafter forward passes] per step: position i is evaluated when every earlier one
    passed the p_min threshold, including the one that then fails it."""
    survive, _ = position_terms(acceptance[:draft_max], p_min)
    return 1.0 + float(np.sum(np.cumprod(survive)[:-1]))


def unconditional_acceptance(acceptance: np.ndarray, draft_max: int, p_min: float) -> np.ndarray:
    """r_i = P(position i accepted), what per-position counters report (accepted_i / drafts)."""
    _, accepted = position_terms(acceptance[:draft_max], p_min)
    return np.cumprod(accepted)


def expected_tokens(unconditional: Sequence[float], draft_max: int) -> float:
    """1 + sum of the first ``draft_max`` unconditional acceptances."""
    return 1.0 + float(np.sum(np.asarray(unconditional, dtype=float)[:draft_max]))


def conditional_from_unconditional(unconditional: Sequence[float]) -> np.ndarray:
    """a_i = r_i / r_{i-1} (r_0 = 1), clipped to [0, 1]."""
    r = np.asarray(unconditional, dtype=float)
    previous = np.concatenate(([1.0], r[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(previous > 0, r / previous, 0.0)
    return np.clip(a, 0.0, 1.0)


def acceptance_ratio(conditional: Sequence[float], draft_max: int) -> float:
    """llama.cpp's "acceptance" (accepted / drafted) under full drafting: not alpha."""
    a = np.asarray(conditional, dtype=float)[:draft_max]
    return float(np.sum(np.cumprod(a)) / draft_max)


def fit_step_time(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least squares for step time = alpha + beta * passes, from (drafter passes, step time)
    pairs (no drafting: 0 passes)."""
    drafted = np.array([p[0] for p in points])
    times = np.array([p[1] for p in points])
    if len(points) == 1 or np.ptp(drafted) == 0:
        return float(times[0]), 0.0
    beta, alpha = np.polyfit(drafted, times, 1)
    return float(alpha), float(max(beta, 0.0))


def predict_tokens_per_second(
    conditional: Sequence[float] | np.ndarray, draft_max: int, p_min: float, alpha: float,
    verifier_beta: float, drafter_beta: float,
) -> float:
    """Tokens/s for step time = alpha + verifier_beta * drafted + drafter_beta * passes: the
    verifier pays per drafted token, the drafter per forward pass, including the pass whose
    token fails the p_min threshold and is dropped."""
    a = np.asarray(conditional, dtype=float)
    drafted, emitted = expected_step(a, draft_max, p_min)
    step = alpha + verifier_beta * drafted + drafter_beta * drafter_passes(a, draft_max, p_min)
    return emitted / max(step, 1e-9)

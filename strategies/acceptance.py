"""Acceptance maths the model-based strategy uses. Pure functions.

E[tokens per verify step] with per-position conditional acceptance a_1..a_k is
1 + sum_i prod_{j<=i} a_j; with unconditional r_i (what per-position counters report:
accepted at position i / drafts) it is 1 + sum_i r_i. A p-min threshold is modelled as in the
simulator: calibrated Beta confidences with mean a_i, drafting stops at the first q_i < p_min.
A draft shorter than n-min (llama.cpp's ``--spec-draft-n-min``) is dropped unverified: the
drafter's passes are spent and the step yields one token.
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


def expected_step(acceptance: np.ndarray, draft_max: int, p_min: float,
                  draft_min: int = 0) -> tuple[float, float]:
    """(E[drafted tokens], E[tokens emitted]) per verify step; drafted tokens count only
    drafts that reach the verifier."""
    a = acceptance[:draft_max]
    survive, accepted = position_terms(a, p_min)
    # Newer llama.cpp drops the low-confidence token instead of drafting it (reference §1).
    drafted = float(np.sum(_kept(survive, draft_min)))
    emitted = 1.0 + float(np.sum(_kept_acceptance(accepted, survive, draft_min)))
    return drafted, emitted


def _kept(survive: np.ndarray, draft_min: int) -> np.ndarray:
    """P(draft length >= max(i, n_min)) per position i: a position is verified only when the
    whole draft is kept."""
    reach = np.cumprod(survive)  # P(draft length >= i)
    if draft_min <= 1:
        return reach
    floor = reach[draft_min - 1] if draft_min <= len(reach) else 0.0
    return np.where(np.arange(1, len(reach) + 1) < draft_min, floor, reach)


def _kept_acceptance(accepted: np.ndarray, survive: np.ndarray, draft_min: int) -> np.ndarray:
    """P(position i accepted and the draft kept): before n_min, the positions after i up to
    n_min must still pass p_min."""
    chain = np.cumprod(accepted)
    if draft_min <= 1:
        return chain
    if draft_min > len(chain):
        return np.zeros_like(chain)
    tail = np.array([float(np.prod(survive[i + 1:draft_min])) for i in range(len(chain))])
    return np.where(np.arange(1, len(chain) + 1) < draft_min, chain * tail, chain)


def drafter_passes(acceptance: np.ndarray, draft_max: int, p_min: float) -> float:
    """E[drafter forward passes] per step: position i is evaluated when every earlier one
    passed the p_min threshold, including the one that then fails it."""
    survive, _ = position_terms(acceptance[:draft_max], p_min)
    return 1.0 + float(np.sum(np.cumprod(survive)[:-1]))


def unconditional_acceptance(acceptance: np.ndarray, draft_max: int, p_min: float,
                             draft_min: int = 0) -> np.ndarray:
    """r_i = P(position i accepted), what per-position counters report (accepted_i / drafts)."""
    survive, accepted = position_terms(acceptance[:draft_max], p_min)
    return _kept_acceptance(accepted, survive, draft_min)


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
    verifier_beta: float, drafter_beta: float, draft_min: int = 0,
) -> float:
    """Tokens/s for step time = alpha + verifier_beta * drafted + drafter_beta * passes: the
    verifier pays per drafted token, the drafter per forward pass, including the pass whose
    token fails the p_min threshold and is dropped."""
    a = np.asarray(conditional, dtype=float)
    drafted, emitted = expected_step(a, draft_max, p_min, draft_min)
    step = alpha + verifier_beta * drafted + drafter_beta * drafter_passes(a, draft_max, p_min)
    return emitted / max(step, 1e-9)

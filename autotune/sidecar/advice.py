"""Advice without restarts: which draft-max would be fastest now. Pure.

Two measured inputs meet here (``spec-decoding-model.md`` section 1):

- the live per-position acceptance r_i (unconditional: accepted at position i per draft), so a
  step drafting up to d tokens yields E(d) = 1 + sum(r_0..r_{d-1}) tokens;
- the cost of a step, measured at the last tune: seconds per verification step as a line in
  tokens drafted per step, a + b * drafted. ``a`` is a step that drafts nothing (no drafting:
  one over its decode speed); ``b`` what one more drafted token costs to draft and verify.

Predicted decode speed at draft-max d is E(d) / (a + b * fill * d), where ``fill`` is the share
of draft-max the live drafts actually use (p-min and n-gram misses stop drafts early); d = 0
is no drafting. Positions beyond those observed continue the last observed conditional
acceptance (flagged as extrapolated). The uncertainty comes from the acceptance counts
(Beta posteriors per position, sampled); the step cost is taken as exact, which it is not: the
interval is a lower bound on the real uncertainty, and the README says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EXTRAPOLATE = 2  # draft lengths beyond the observed positions that are still predicted
SAMPLES = 400


@dataclass(frozen=True)
class StepCost:
    base_seconds: float  # a: a verification step with nothing drafted
    per_draft_token_seconds: float  # b: each token drafted per step
    points: int  # measured setups behind the fit

    def seconds(self, drafted: float) -> float:
        return self.base_seconds + self.per_draft_token_seconds * drafted


def step_point(decode_tokens_per_second: float, acceptance: float | None,
               mean_draft_length: float | None) -> tuple[float, float] | None:
    """One measured setup as (tokens drafted per step, seconds per step); ``None`` when the
    reading cannot say. A step yields 1 + accepted tokens, so its length is that over the
    decode speed."""
    if decode_tokens_per_second <= 0:
        return None
    if not mean_draft_length:
        return (0.0, 1.0 / decode_tokens_per_second)
    if acceptance is None:
        return None
    tokens = 1.0 + acceptance * mean_draft_length
    return (mean_draft_length, tokens / decode_tokens_per_second)


def fit_step_cost(points: Sequence[tuple[float, float]]) -> StepCost | None:
    """Least squares a + b * drafted over the measured setups, with a > 0 and b >= 0 (a
    drafted token never makes a step cheaper). Needs two distinct draft lengths."""
    if len({round(x, 6) for x, _ in points}) < 2:
        return None
    x = np.array([p[0] for p in points], dtype=float)
    y = np.array([p[1] for p in points], dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    if slope < 0:  # noise: the flattest honest line is a constant
        slope, intercept = 0.0, float(np.mean(y))
    if intercept <= 0:  # through the cheapest observed step instead
        intercept = float(np.min(y)) * 0.5
    return StepCost(float(intercept), float(slope), len(points))


def conditional_rates(drafts: float, accepted: Sequence[float]) -> np.ndarray:
    """a_j = P(position j accepted | positions before it accepted), from counts."""
    rates = []
    previous = drafts
    for count in accepted:
        rates.append(min(count / previous, 1.0) if previous > 0 else 0.0)
        previous = count
    return np.asarray(rates, dtype=float)


def extend(conditional: np.ndarray, length: int) -> np.ndarray:
    """Conditional rates up to ``length`` positions, continuing the last observed one."""
    if conditional.size >= length:
        return conditional[:length]
    last = conditional[-1] if conditional.size else 0.0
    return np.concatenate([conditional, np.full(length - conditional.size, last)])


def predict(conditional: np.ndarray, cost: StepCost, fill: float, draft_max: int) -> float:
    """Predicted decode tokens/s at ``draft_max`` (0: no drafting)."""
    if draft_max == 0:
        return 1.0 / cost.base_seconds
    unconditional = np.cumprod(extend(conditional, draft_max))
    tokens = 1.0 + float(unconditional.sum())
    return tokens / cost.seconds(fill * draft_max)


@dataclass(frozen=True)
class Advice:
    current_draft_max: int
    best_draft_max: int  # 0 means no drafting
    predicted_tokens_per_second: dict[int, float]
    expected_gain: float  # predicted best over current, minus one
    gain_low: float  # 5th percentile over the acceptance's uncertainty
    gain_high: float  # 95th percentile
    probability_better: float  # share of samples where the best beats the current
    observed_positions: int  # draft-max above this rests on extrapolated acceptance

    def as_dict(self) -> dict[str, object]:
        return {
            "current_draft_max": self.current_draft_max,
            "best_draft_max": self.best_draft_max,
            "predicted_tokens_per_second": {str(k): round(v, 2) for k, v in
                                            self.predicted_tokens_per_second.items()},
            "expected_gain": round(self.expected_gain, 4),
            "gain_interval": [round(self.gain_low, 4), round(self.gain_high, 4)],
            "probability_better": round(self.probability_better, 3),
            "observed_positions": self.observed_positions,
        }


def advise(drafts: float, accepted: Sequence[float], drafted_tokens: float, current: int,
           cost: StepCost, *, seed: int = 0) -> Advice | None:
    """Predicted speed for every draft-max from 0 to the observed positions plus
    ``EXTRAPOLATE``, the best of them, and the gain of switching from ``current``."""
    if drafts <= 0 or current < 1 or not accepted:
        return None
    fill = min(max(drafted_tokens / (drafts * current), 0.0), 1.0) or 1.0
    observed = len(accepted)
    candidates = range(0, max(observed, current) + EXTRAPOLATE + 1)
    conditional = conditional_rates(drafts, accepted)
    point = {d: predict(conditional, cost, fill, d) for d in candidates}
    best = max(point, key=lambda d: point[d])
    rng = np.random.default_rng(seed)
    previous = np.concatenate([[drafts], np.asarray(accepted[:-1], dtype=float)])
    hits = np.minimum(np.asarray(accepted, dtype=float), previous)
    sampled = rng.beta(hits[None, :] + 0.5, (previous - hits)[None, :] + 0.5,
                       size=(SAMPLES, observed))
    gains = np.array([predict(row, cost, fill, best) / predict(row, cost, fill, current) - 1.0
                      for row in sampled])
    return Advice(
        current_draft_max=current, best_draft_max=best, predicted_tokens_per_second=point,
        expected_gain=point[best] / point[current] - 1.0,
        gain_low=float(np.quantile(gains, 0.05)), gain_high=float(np.quantile(gains, 0.95)),
        probability_better=float(np.mean(gains > 0)) if best != current else 0.0,
        observed_positions=observed,
    )

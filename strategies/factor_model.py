"""A log-additive model of throughput: log tokens/s = drafting effect + K-cache effect +
V-cache effect + flash-attention effect.

KV cache type and flash attention change the verifier's speed by a few per cent, about the same
whatever drafts, while one reading is noisy by about as much. Pooling every launch into one
effect per factor level estimates each effect from all of them instead of from the one or two
launches of a single setup. Drafting settings expected to perform alike (one draft-max apart)
can be tied by a prior on their difference, so a setting read once, unluckily, borrows strength
from its measured neighbours. Pure functions; weighted least squares with NumPy.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

PRIOR_SIGMA = 0.05  # relative noise of one full reading, until residuals say otherwise
PRIOR_WEIGHT = 3.0  # how many residual degrees of freedom the prior is worth

Levels = tuple[Hashable, ...]  # one level per factor; factor 0 carries the intercept


@dataclass(frozen=True)
class FactorFit:
    levels: tuple[tuple[Hashable, ...], ...]  # the levels seen, per factor
    coefficients: np.ndarray
    covariance: np.ndarray
    sigma: float

    def knows(self, levels: Levels) -> bool:
        return all(level in seen for level, seen in zip(levels, self.levels, strict=True))

    def _row(self, levels: Levels) -> np.ndarray:
        return _design_row(levels, self.levels, len(self.coefficients))

    def predict(self, levels: Levels) -> tuple[float, float]:
        """(predicted tokens/s, standard error of its log) of one combination of known levels."""
        x = self._row(levels)
        se = float(np.sqrt(max(x @ self.covariance @ x, 0.0)))
        return float(np.exp(x @ self.coefficients)), se

    def main_effect(self, level: Hashable) -> float:
        """The log-throughput effect of a level of factor 0 (at every other factor's reference)."""
        return float(self.coefficients[self.levels[0].index(level)])


def _design_row(levels: Levels, seen: tuple[tuple[Hashable, ...], ...], width: int) -> np.ndarray:
    x = np.zeros(width)
    x[seen[0].index(levels[0])] = 1.0
    offset = len(seen[0])
    for level, factor in zip(levels[1:], seen[1:], strict=True):
        index = factor.index(level)
        if index > 0:  # each later factor's first level is its reference
            x[offset + index - 1] = 1.0
        offset += len(factor) - 1
    return x


def fit_factors(rows: Sequence[tuple[Levels, float, float]],
                neighbours: Sequence[tuple[Hashable, Hashable, float]] = ()) -> FactorFit | None:
    """Fit from (levels, tokens/s, weight) rows; weight = requests measured relative to a full
    reading. Each ``neighbours`` entry (a, b, weight) is a prior reading, worth ``weight`` full
    readings, that factor-0 levels a and b have the same effect (a Gaussian prior on their
    difference with standard deviation sigma / sqrt(weight)); pairs with an unseen level are
    ignored. ``None`` without a positive reading."""
    rows = [r for r in rows if r[1] > 0 and r[2] > 0]
    if not rows:
        return None
    count = len(rows[0][0])
    seen = tuple(tuple(dict.fromkeys(r[0][f] for r in rows)) for f in range(count))
    width = len(seen[0]) + sum(len(f) - 1 for f in seen[1:])
    design = np.array([_design_row(r[0], seen, width) for r in rows])
    y = np.log([r[1] for r in rows])
    w = np.array([r[2] for r in rows], dtype=float)
    sw = np.sqrt(w)
    # Each neighbour pair is one more row: (effect a - effect b) read as 0 with its weight.
    pairs = [(seen[0].index(a), seen[0].index(b), weight) for a, b, weight in neighbours
             if a in seen[0] and b in seen[0]]
    ties = np.zeros((len(pairs), width))
    for row, (a, b, weight) in zip(ties, pairs, strict=True):
        row[a], row[b] = np.sqrt(weight), -np.sqrt(weight)
    coefficients, *_ = np.linalg.lstsq(np.vstack([design * sw[:, None], ties]),
                                       np.concatenate([y * sw, np.zeros(len(pairs))]), rcond=None)
    residual = (y - design @ coefficients) * sw
    dof = len(rows) - int(np.linalg.matrix_rank(design))
    # Few degrees of freedom make the residual estimate itself noisy: blend in the prior.
    sigma2 = (float(residual @ residual) + PRIOR_WEIGHT * PRIOR_SIGMA**2) / (dof + PRIOR_WEIGHT)
    covariance = sigma2 * np.linalg.pinv(design.T @ (design * w[:, None]) + ties.T @ ties)
    return FactorFit(seen, coefficients, covariance, float(np.sqrt(sigma2)))

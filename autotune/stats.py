"""Pure statistics: percentiles, robust summaries and "is A really ahead of B"."""

from __future__ import annotations

import math

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear interpolation; ``None`` for no values."""
    if len(values) == 0:
        return None
    return float(np.percentile(np.asarray(values, dtype=float), q))


def median_mad(values: Sequence[float]) -> tuple[float, float]:
    """Median and median absolute deviation."""
    array = np.asarray(values, dtype=float)
    median = float(np.median(array))
    return median, float(np.median(np.abs(array - median)))


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing setup A against B on repeated, interleaved measurements."""

    ratio: float  # median(A) / median(B)
    p_value: float  # one-sided Mann-Whitney U: A stochastically greater than B
    ratio_low: float  # bootstrap lower bound of the ratio of medians
    a_ahead: bool

    @property
    def gain(self) -> float:
        return self.ratio - 1.0


def bootstrap_ratio_low(
    a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95, draws: int = 2000,
    seed: int = 0,
) -> float:
    """Lower confidence bound of median(A)/median(B) by a percentile bootstrap."""
    rng = np.random.default_rng(seed)
    a_arr = np.asarray(a, dtype=float)
    b_arr = np.asarray(b, dtype=float)
    a_medians = np.median(rng.choice(a_arr, size=(draws, a_arr.size)), axis=1)
    b_medians = np.median(rng.choice(b_arr, size=(draws, b_arr.size)), axis=1)
    ratios = a_medians / np.maximum(b_medians, 1e-12)
    return float(np.quantile(ratios, 1.0 - confidence))


def compare(
    a: Sequence[float], b: Sequence[float], *, min_gain: float = 0.02, alpha: float = 0.05,
) -> Comparison:
    """A is *ahead* only when both tests agree: Mann-Whitney says A > B at level ``alpha`` and
    the bootstrap lower bound of the median ratio is above 1 (so the gain is not one outlier),
    and the median gain is at least ``min_gain``. Otherwise the two are a tie."""
    if len(a) == 0 or len(b) == 0:
        raise ValueError("compare needs measurements of both setups")
    ratio = float(np.median(a) / max(float(np.median(b)), 1e-12))
    if len(a) < 2 or len(b) < 2:
        return Comparison(ratio, 1.0, ratio, False)
    p_value = float(scipy_stats.mannwhitneyu(a, b, alternative="greater").pvalue)
    low = bootstrap_ratio_low(a, b, confidence=1.0 - alpha)
    ahead = p_value < alpha and low > 1.0 and ratio >= 1.0 + min_gain
    return Comparison(ratio, p_value, low, ahead)


def rounds_needed(alpha: float) -> int:
    """The fewest rounds per setup at which a one-sided Mann-Whitney test of n against n can
    reach ``alpha`` at all: its smallest p-value is 1 / C(2n, n)."""
    n = 1
    while 1.0 / math.comb(2 * n, n) >= alpha:
        n += 1
    return n

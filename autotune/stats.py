"""Pure statistics: percentiles, robust summaries and "is A really ahead of B"."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

import numpy as np
from scipy import stats as scipy_stats

K = TypeVar("K", bound=Hashable)


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


@dataclass(frozen=True)
class PairedRatio:
    """A against B from interleaved rounds: each round measured both on the same prompts
    within minutes, so the per-round ratio cancels what the machine did to that round."""

    ratio: float  # geometric mean of the per-round ratios A/B
    low: float  # one-sided lower confidence bound of the ratio
    high: float  # one-sided upper confidence bound
    p_greater: float  # one-sided p-value for "A is faster than B" (paired t-test on logs)
    rounds: int  # rounds where both were measured
    log_sd: float  # spread of the per-round log ratios

    def ahead(self, min_gain: float) -> bool:
        """Shown faster, by a gain worth having."""
        return self.low > 1.0 and self.ratio >= 1.0 + min_gain

    def equivalent(self, min_gain: float) -> bool:
        """Shown within the practical margin both ways (two one-sided tests)."""
        return self.low >= 1.0 / (1.0 + min_gain) and self.high <= 1.0 + min_gain

    def behind(self) -> bool:
        return self.high < 1.0


def paired_ratio(a: Sequence[float], b: Sequence[float], *, alpha: float = 0.05) -> PairedRatio:
    """Paired analysis of aligned rounds (``nan`` or 0 where a round has no reading)."""
    a_arr = np.asarray(a, dtype=float)
    b_arr = np.asarray(b, dtype=float)
    size = min(a_arr.size, b_arr.size)
    a_arr, b_arr = a_arr[:size], b_arr[:size]
    both = np.isfinite(a_arr) & np.isfinite(b_arr) & (a_arr > 0) & (b_arr > 0)
    logs = np.log(a_arr[both] / b_arr[both])
    n = int(logs.size)
    if n == 0:
        return PairedRatio(float("nan"), 0.0, float("inf"), 1.0, 0, float("nan"))
    mean = float(np.mean(logs))
    if n < 2:
        return PairedRatio(math.exp(mean), 0.0, float("inf"), 1.0, 1, float("nan"))
    sd = float(np.std(logs, ddof=1))
    se = max(sd / math.sqrt(n), 1e-9)
    crit = float(scipy_stats.t.ppf(1.0 - alpha, n - 1))
    p_greater = float(scipy_stats.t.sf(mean / se, n - 1))
    return PairedRatio(math.exp(mean), _exp(mean - crit * se), _exp(mean + crit * se),
                       p_greater, n, sd)


def _exp(value: float) -> float:
    """exp() that saturates: a tiny alpha over few rounds gives bounds beyond float range."""
    return math.exp(value) if value < 700.0 else float("inf")


def holm(p_values: Mapping[K, float], alpha: float,
         level: Callable[[float], float] | None = None) -> set[K]:
    """The hypotheses Holm's step-down procedure rejects: family-wise error at most ``alpha``
    however many finalists are compared, with more power than Bonferroni. ``level`` turns a
    hypothesis' share of ``alpha`` into the level it is tested at now (a look of a sequential
    test: ``sequential_level``); by default the share itself."""
    rejected: set[K] = set()
    ordered = sorted(p_values.items(), key=lambda item: item[1])
    for rank, (key, p_value) in enumerate(ordered):
        share = alpha / (len(ordered) - rank)
        if p_value > (level(share) if level else share):
            break
        rejected.add(key)
    return rejected


SEQUENTIAL_DRAWS = 200_000  # simulated finishes behind each sequential level
SEQUENTIAL_TAIL = 100  # fewest of them beyond the level for the level to be trusted


@lru_cache(maxsize=256)
def sequential_level(alpha: float, looks: tuple[int, ...]) -> float:
    """The level each look of a one-sided sequential paired t-test is run at, so that a false
    rejection at any of the looks (after ``looks`` rounds each) has probability ``alpha``: a
    constant nominal level (Pocock's boundary), calibrated for t-tests on few rounds. The
    looks share their rounds, so they mostly repeat each other and the level is well above
    Bonferroni's ``alpha / len(looks)`` (0.024 against 0.017 for 4, 6 and 8 rounds at 0.05).
    The normal-theory boundary is not enough here: with the spread estimated from 4-8 rounds
    each look errs more on its own, and at its level the looks together erred in 5.5%.
    """
    distinct = sorted(set(looks))
    if len(distinct) <= 1:
        return alpha
    bonferroni = alpha / len(distinct)
    if alpha * SEQUENTIAL_DRAWS < SEQUENTIAL_TAIL:
        return bonferroni  # too few simulated finishes that far out to place the level
    # Under no effect, the smallest p-value any look sees in each simulated finish; alpha of
    # those finishes must see one below the level. A fixed seed: the same level every call.
    # One round at a time, keeping running sums: memory stays one column however many rounds.
    rng = np.random.default_rng(0)
    total = np.zeros(SEQUENTIAL_DRAWS)
    total_squares = np.zeros(SEQUENTIAL_DRAWS)
    smallest = np.ones(SEQUENTIAL_DRAWS)
    for n in range(1, distinct[-1] + 1):
        round_ = rng.normal(size=SEQUENTIAL_DRAWS)
        total += round_
        total_squares += round_ * round_
        if n < 2 or n not in distinct:
            continue
        mean = total / n
        variance = np.maximum(total_squares - n * mean * mean, 1e-300) / (n - 1)
        t = mean / np.sqrt(variance / n)
        smallest = np.minimum(smallest, scipy_stats.t.sf(t, n - 1))
    return float(min(alpha, max(bonferroni, np.quantile(smallest, alpha))))


def round_matrix(rounds: Sequence[Sequence[float]]) -> np.ndarray:
    """Rounds x setups, ``nan`` where a setup has no reading for a round."""
    width = max((len(r) for r in rounds), default=0)
    matrix = np.full((width, len(rounds)), np.nan)
    for column, readings in enumerate(rounds):
        values = np.asarray(readings, dtype=float)
        values[~(values > 0)] = np.nan
        matrix[: values.size, column] = values
    return matrix


def reading_noise(matrix: np.ndarray) -> float | None:
    """Relative spread of one reading (pooled within-setup standard deviation of the log
    readings): what the machine's noise is, in the units users think in."""
    logs = np.log(matrix)
    deviations = []
    dof = 0
    for column in logs.T:
        values = column[np.isfinite(column)]
        if values.size >= 2:
            deviations.append(float(np.sum((values - values.mean()) ** 2)))
            dof += values.size - 1
    if dof == 0:
        return None
    return math.exp(math.sqrt(sum(deviations) / dof)) - 1.0


def probability_within(matrix: np.ndarray, pick: int, min_gain: float, *, draws: int = 2000,
                       seed: int = 0) -> float:
    """How sure the pick is: the share of round-resamples (rounds drawn with replacement, so
    each round's setups stay paired) in which the pick is within ``min_gain`` of the best."""
    logs = np.log(matrix)
    rows = logs.shape[0]
    if rows == 0 or not np.isfinite(logs[:, pick]).any():
        return 0.0
    rng = np.random.default_rng(seed)
    margin = math.log1p(min_gain)
    sample = logs[rng.integers(0, rows, (draws, rows))]  # draws x rounds x setups
    with warnings.catch_warnings():  # a resample may hold no reading of a setup: nan, skipped
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(sample, axis=1)
        best = np.nanmax(means, axis=1)
    valid = np.isfinite(means[:, pick])
    if not valid.any():
        return 0.0
    return float(np.mean(means[valid, pick] >= best[valid] - margin))


def rounds_to_show(gain: float, log_sd: float, alpha: float) -> int | None:
    """About how many paired rounds would show a lead of ``gain`` at this spread; ``None`` if
    there is no lead to show."""
    if gain <= 0 or not math.isfinite(log_sd):
        return None
    effect = math.log1p(gain)
    for n in range(2, 1000):
        if float(scipy_stats.t.ppf(1.0 - alpha, n - 1)) * log_sd / math.sqrt(n) < effect:
            return n
    return None


# A reading this far below its setup's median, in pooled robust standard deviations (and at
# least 20% below it), was taken while something else held the machine.
OUTLIER_SCALES = 4.0
OUTLIER_FLOOR = math.log(1.2)


def disturbed_readings(matrix: np.ndarray, outside: np.ndarray | None = None,
                       outside_limit: float = 0.10) -> np.ndarray:
    """Readings (rounds x setups) taken while outside load held the machine (``outside``,
    shares of the machine), or far below their setup's own median. Only drops count:
    interference slows a server, it never speeds one up."""
    logs = np.log(matrix)
    flagged = np.zeros(matrix.shape, dtype=bool)
    if outside is not None:
        flagged |= np.nan_to_num(outside, nan=0.0) >= outside_limit
    if logs.shape[0] >= 3:
        with np.errstate(all="ignore"):
            deviation = logs - np.nanmedian(logs, axis=0)
        pooled = deviation[np.isfinite(deviation)]
        if pooled.size:
            scale = 1.4826 * float(np.median(np.abs(pooled)))
            cut = -max(OUTLIER_SCALES * scale, OUTLIER_FLOOR)
            flagged |= np.nan_to_num(deviation, nan=0.0) < cut
    return flagged


def disturbed_rounds(matrix: np.ndarray, outside: np.ndarray | None = None,
                     outside_limit: float = 0.10) -> list[int]:
    """Rounds with at least one disturbed reading: measured again while the budget lasts."""
    flagged = disturbed_readings(matrix, outside, outside_limit)
    return [int(r) for r in np.where(flagged.any(axis=1))[0]]

"""Pure verdicts for the gate. Each signal is judged on its own, as non-inferiority: "no
worse than the tolerance" must be shown to pass, and "worse than the tolerance" must be shown
to fail; anything between is inconclusive, never a coin flip."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats as scipy_stats

from autotune.greedy import OutputComparison
from autotune.stats import paired_ratio

Verdict = Literal["pass", "regression", "inconclusive", "not-applicable"]


@dataclass(frozen=True)
class Signal:
    name: str  # throughput | acceptance | mean accepted length | correctness | quality
    verdict: Verdict
    estimate: float | None  # ratio (throughput) or difference (acceptance) or share
    low: float | None
    high: float | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _interval(a: Sequence[float], b: Sequence[float], *, paired: bool,
              alpha: float) -> tuple[float, float, float]:
    """Mean of b - a with one-sided (1 - alpha) bounds each way: a paired t interval when
    the readings were taken side by side, Welch's otherwise."""
    a_arr = np.asarray(a, dtype=float)
    b_arr = np.asarray(b, dtype=float)
    if paired:
        d = b_arr - a_arr
        mean = float(d.mean())
        se = float(d.std(ddof=1)) / math.sqrt(d.size)
        dof = float(d.size - 1)
    else:
        mean = float(b_arr.mean() - a_arr.mean())
        va = float(a_arr.var(ddof=1)) / a_arr.size
        vb = float(b_arr.var(ddof=1)) / b_arr.size
        se = math.sqrt(va + vb)
        denominator = (va**2 / (a_arr.size - 1) if va else 0.0) + (
            vb**2 / (b_arr.size - 1) if vb else 0.0)
        dof = (va + vb) ** 2 / denominator if denominator else float(a_arr.size + b_arr.size - 2)
    if se == 0.0:
        return mean, mean, mean
    half = float(scipy_stats.t.ppf(1.0 - alpha, max(dof, 1.0))) * se
    return mean, mean - half, mean + half


def throughput_signal(before: Sequence[float], after: Sequence[float], *, tolerance: float,
                      alpha: float, paired: bool) -> Signal:
    """tokens/s after against before, as a ratio of geometric means: passes when the lower
    bound is above ``1 - tolerance``, a regression when the upper bound is below it."""
    if len(before) < 2 or len(after) < 2 or min(*before, *after) <= 0:
        return Signal("throughput", "inconclusive", None, None, None,
                      "fewer than two readings on a side")
    if paired:  # the finish's paired t on log ratios, one-sided bounds at alpha
        shown = paired_ratio(after, before, alpha=alpha)
        ratio, ratio_low, ratio_high = shown.ratio, shown.low, shown.high
    else:
        mean, low, high = _interval([math.log(v) for v in before],
                                    [math.log(v) for v in after], paired=False, alpha=alpha)
        ratio, ratio_low, ratio_high = math.exp(mean), math.exp(low), math.exp(high)
    floor = 1.0 - tolerance
    verdict: Verdict = ("pass" if ratio_low >= floor else
                        "regression" if ratio_high < floor else "inconclusive")
    how = "paired on the same prompts" if paired else "unpaired"
    detail = (f"x{ratio:.3f} (x{ratio_low:.3f}..x{ratio_high:.3f}) over {len(after)} launches, "
              f"{how}; allowed: no more than {tolerance:.0%} slower")
    return Signal("throughput", verdict, ratio, ratio_low, ratio_high, detail)


def acceptance_signal(name: str, before: Sequence[float | None], after: Sequence[float | None],
                      *, tolerance: float, alpha: float, paired: bool,
                      relative: bool = False) -> Signal:
    """A drafting figure (acceptance rate; mean accepted length, judged relative) after
    against before. It moves far less than throughput on a noisy machine, so it catches a
    worse drafter even where throughput is inconclusive."""
    drafted_before = [b for b in before if b is not None]
    drafted_after = [a for a in after if a is not None]
    if not drafted_before and not drafted_after:
        return Signal(name, "not-applicable", None, None, None, "no drafting on either side")
    if drafted_before and not drafted_after:
        return Signal(name, "regression", None, None, None, "drafting stopped")
    if not drafted_before:
        return Signal(name, "not-applicable", None, None, None,
                      "the baseline did not draft; nothing to compare with")
    was, now = drafted_before, drafted_after
    if paired:
        pairs = [(b, a) for b, a in zip(before, after, strict=False)
                 if b is not None and a is not None]
        was, now = [b for b, _ in pairs], [a for _, a in pairs]
    if len(was) < 2 or len(now) < 2:
        return Signal(name, "inconclusive", None, None, None,
                      "fewer than two drafting launches on a side")
    scale = float(np.mean(was)) if relative else 1.0
    mean, low, high = (value / scale for value in
                       _interval(was, now, paired=paired, alpha=alpha))
    verdict: Verdict = ("pass" if low >= -tolerance else
                        "regression" if high < -tolerance else "inconclusive")
    unit = "%" if relative else ""
    factor = 100.0 if relative else 1.0
    detail = (f"{np.mean(was):.3f} -> {np.mean(now):.3f} (change {mean * factor:+.2f}{unit}, "
              f"{low * factor:+.2f}..{high * factor:+.2f}{unit}); allowed drop "
              f"{tolerance * factor:.2f}{unit}")
    return Signal(name, verdict, mean, low, high, detail)


def correctness_signal(name: str, comparisons: Sequence[OutputComparison], *,
                       required: bool, max_loss: float | None = None) -> Signal:
    """Share of prompts whose greedy output is identical. ``required``: any divergence is a
    regression (drafting at temperature 0 is lossless by design) unless the reference's own
    log-probabilities show a near-tie there, a choice that rounding can tip; otherwise the
    share is judged against ``max_loss`` when given, and only reported when not."""
    if not comparisons:
        return Signal(name, "not-applicable", None, None, None, "no outputs compared")
    same = sum(c.identical for c in comparisons)
    share = same / len(comparisons)
    diverged = [c for c in comparisons if not c.identical]
    ties = [c for c in diverged if c.near_tie]
    real = [c for c in diverged if not c.near_tie]
    detail = f"{same}/{len(comparisons)} greedy outputs identical"
    if real:
        first = real[0]
        detail += (f"; prompt {first.prompt_index} ({first.label}) first differs at token "
                   f"{first.first_divergence}, edit distance {first.edit_distance} tokens")
        if first.near_tie is False:
            detail += (f" (the reference chose {first.reference_token!r}"
                       + (f", {first.logprob_gap:.2f} nats likelier than {first.token!r})"
                          if first.logprob_gap is not None else
                          "; this token was not among its likeliest)"))
    if ties:
        widest = max(ties, key=lambda c: c.logprob_gap or 0.0)
        detail += (f"; {len(ties)} differ only at a near-tie (the reference's own token at "
                   f"most {widest.logprob_gap:.3f} nats ahead: prompt {widest.prompt_index} "
                   f"token {widest.first_divergence}, {widest.reference_token!r} against "
                   f"{widest.token!r})")
    if required:
        verdict: Verdict = "pass" if not real else "regression"
    elif max_loss is not None:
        verdict = "pass" if 1.0 - share <= max_loss else "regression"
    else:
        verdict = "pass" if not diverged else "not-applicable"
        if diverged:
            detail += " (reported; no max_quality_loss set)"
    return Signal(name, verdict, share, None, None, detail)


def overall(signals: Sequence[Signal]) -> Verdict:
    """A regression in any signal fails; otherwise inconclusive if any is; else pass."""
    verdicts = {s.verdict for s in signals}
    if "regression" in verdicts:
        return "regression"
    if "inconclusive" in verdicts:
        return "inconclusive"
    return "pass"

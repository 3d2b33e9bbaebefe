"""The objective: aggregate generated tokens/s over the measurement window, under the user's
latency and error limits. Pure functions over measured samples.

Two rates are reported, and only the first is optimised:
- ``tokens_per_second``, end to end: generated tokens over the wall-clock window of the
  measured requests, prompt processing, HTTP and queueing included. This is what a client sees.
- ``decode_tokens_per_second``: the server's own ``timings`` rate (generated tokens over its
  decode time), the figure users compare with llama-bench; 15-25% higher on a GPU.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from autotune.config import LimitsSpec
from autotune.measurements import LevelResult, RequestSample
from autotune.stats import percentile


@dataclass(frozen=True)
class ClassSummary:
    requests: int
    tokens_per_second: float  # this class's tokens over its own request time
    tpot_p50_ms: float | None
    acceptance: float | None  # accepted / drafted, from the server's per-request timings


@dataclass(frozen=True)
class LevelSummary:
    concurrency: int
    requests: int
    errors: int
    tokens_per_second: float
    decode_tokens_per_second: float | None
    ttft_p95_ms: float | None
    tpot_p95_ms: float | None
    e2e_p95_ms: float | None
    acceptance: float | None
    per_position_acceptance: list[float]
    by_class: dict[str, ClassSummary] = field(default_factory=dict)
    mean_draft_length: float | None = None  # drafted tokens per draft, from /metrics
    outside_cpu_share: float | None = None  # other work's share of the machine meanwhile
    steal_share: float | None = None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Evaluation:
    objective: float  # tokens/s at the first (primary) concurrency level
    feasible: bool
    violated: list[str]
    levels: list[LevelSummary]


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1000.0


def _acceptance(samples: Sequence[RequestSample]) -> float | None:
    drafted = sum(s.draft_tokens or 0 for s in samples)
    accepted = sum(s.draft_accepted or 0 for s in samples)
    return accepted / drafted if drafted else None


def summarize_class(samples: Sequence[RequestSample]) -> ClassSummary:
    ok = [s for s in samples if s.ok]
    busy = sum(s.e2e_s for s in ok)
    return ClassSummary(
        requests=len(samples),
        tokens_per_second=sum(s.generated_tokens for s in ok) / busy if busy > 0 else 0.0,
        tpot_p50_ms=_ms(percentile([s.tpot_s for s in ok if s.tpot_s is not None], 50)),
        acceptance=_acceptance(ok),
    )


def _decode_rate(samples: Sequence[RequestSample]) -> float | None:
    """Generated tokens over the server's decode time, pooled over requests."""
    timed = [s for s in samples if s.server_tokens_per_second and s.generated_tokens > 0]
    seconds = sum(s.generated_tokens / float(s.server_tokens_per_second or 1.0) for s in timed)
    return sum(s.generated_tokens for s in timed) / seconds if seconds > 0 else None


def summarize_level(level: LevelResult) -> LevelSummary:
    measured = level.measured
    ok = [s for s in measured if s.ok]
    tokens = sum(s.generated_tokens for s in ok)
    by_label: dict[str, list[RequestSample]] = defaultdict(list)
    for sample in measured:
        by_label[sample.label].append(sample)
    counters = level.counters
    acceptance = (
        counters.accepted_tokens / counters.draft_tokens
        if counters.present and counters.draft_tokens > 0
        else _acceptance(ok)
    )
    return LevelSummary(
        concurrency=level.concurrency,
        requests=len(measured),
        errors=len(measured) - len(ok),
        tokens_per_second=tokens / level.window_s if level.window_s > 0 else 0.0,
        decode_tokens_per_second=_decode_rate(ok),
        ttft_p95_ms=_ms(percentile([s.ttft_s for s in ok if s.ttft_s is not None], 95)),
        tpot_p95_ms=_ms(percentile([s.tpot_s for s in ok if s.tpot_s is not None], 95)),
        e2e_p95_ms=_ms(percentile([s.e2e_s for s in ok], 95)),
        acceptance=acceptance,
        per_position_acceptance=counters.per_position_acceptance(),
        by_class={label: summarize_class(group) for label, group in sorted(by_label.items())},
        mean_draft_length=(counters.draft_tokens / counters.drafts
                           if counters.present and counters.drafts > 0 else None),
        outside_cpu_share=level.interference.outside_cpu_share if level.interference else None,
        steal_share=level.interference.steal_share if level.interference else None,
    )


def violations(level: LevelSummary, limits: LimitsSpec) -> list[str]:
    broken: list[str] = []
    if level.error_rate > limits.max_error_rate:
        broken.append(f"error_rate {level.error_rate:.2f} > {limits.max_error_rate:g}")
    for name in ("ttft_p95_ms", "tpot_p95_ms", "e2e_p95_ms"):
        limit = getattr(limits, name)
        value = getattr(level, name)
        if limit is not None and (value is None or value > limit):
            shown = "none" if value is None else f"{value:.0f}"
            broken.append(f"{name} {shown} > {limit:g}")
    return broken


def evaluate(levels: Sequence[LevelResult], limits: LimitsSpec) -> Evaluation:
    """Score one launch. The objective is the first concurrency level's tokens/s; the limits
    hold at every level (a setup that is fast alone but breaks the TTFT limit at 4 clients is
    not deployable for 4 clients)."""
    summaries = [summarize_level(level) for level in levels]
    broken: list[str] = []
    for summary in summaries:
        prefix = f"c={summary.concurrency} " if len(summaries) > 1 else ""
        broken += [prefix + item for item in violations(summary, limits)]
    return Evaluation(
        objective=summaries[0].tokens_per_second,
        feasible=not broken,
        violated=broken,
        levels=summaries,
    )


def with_logged_acceptance(per_request: list[tuple[int, int]],
                           levels: list[LevelResult]) -> list[LevelResult]:
    """Acceptance for servers that only log it, one line per drafting request (the ik fork):
    the last lines are the last level's measured requests, each level's warm-ups before
    them. A request that drafted nothing logs nothing, so this is the pooled acceptance of
    the level's last logged requests: close, not exact."""
    if not per_request:
        return levels
    remaining = list(per_request)
    out: list[LevelResult] = []
    for level in reversed(levels):
        measured = len(level.measured)
        mine = remaining[len(remaining) - measured:] if measured else []
        del remaining[max(0, len(remaining) - len(level.samples)):]
        if level.counters.present or not mine:
            out.append(level)
            continue
        counters = replace(
            level.counters, accepted_tokens=float(sum(a for a, _ in mine)),
            draft_tokens=float(sum(d for _, d in mine)), present=True)
        out.append(replace(level, counters=counters))
    return out[::-1]

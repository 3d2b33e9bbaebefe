"""Measurement records: what one request and one concurrency level measured. The prober makes
them, the objective scores them, the store keeps them; none of those imports another for them."""

from __future__ import annotations

from dataclasses import dataclass, field

from autotune.backends import SpecCounters
from autotune.interference import Interference


@dataclass(frozen=True)
class RequestSample:
    prompt_index: int
    label: str
    concurrency: int
    warmup: bool
    started_s: float  # seconds after the level's measurement window opened
    e2e_s: float
    ttft_s: float | None = None
    tpot_s: float | None = None
    generated_tokens: int = 0
    prompt_tokens: int | None = None
    draft_tokens: int | None = None
    draft_accepted: int | None = None
    server_tokens_per_second: float | None = None
    error: str | None = None
    # The transport failure a retry on a fresh connection recovered from (issue 11): kept so a
    # flaky server shows up in the data even when every request finally succeeded.
    retried_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class LevelResult:
    """All requests sent at one concurrency level."""

    concurrency: int
    samples: tuple[RequestSample, ...]
    window_s: float
    counters: SpecCounters = field(default_factory=SpecCounters)
    interference: Interference | None = None

    @property
    def measured(self) -> list[RequestSample]:
        return [s for s in self.samples if not s.warmup]

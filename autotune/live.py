"""Live figures from two scrapes of a server's ``/metrics``: windowed rates for the sidecar.
Pure: counters in, rates out. A counter that went down means the server restarted between the
scrapes; the window then counts from zero (what the new process did), as Prometheus' rate()
treats a reset."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from autotune.backends import SpecCounters


@dataclass(frozen=True)
class Scrape:
    at_s: float  # monotonic seconds
    counters: SpecCounters


@dataclass(frozen=True)
class LiveWindow:
    seconds: float
    generated_tokens_per_second: float  # follows demand: idle windows read low
    generated_tokens: float
    # Tokens per second of decoding time: the speed a request sees, whatever the demand
    # (None where the server does not report decoding time, or nothing was generated).
    decode_tokens_per_second: float | None
    drafted_tokens: float
    drafted_tokens_per_second: float
    accepted_tokens_per_second: float
    acceptance: float | None  # accepted / drafted tokens
    mean_accepted_length: float | None  # accepted tokens per draft
    per_position_acceptance: tuple[float, ...]
    reset: bool  # the server restarted inside the window
    counts: SpecCounters  # the window's own counts, to pool windows


def _went_down(later: SpecCounters, earlier: SpecCounters) -> bool:
    scalar = [f.name for f in fields(SpecCounters)
              if f.name not in ("accepted_per_position", "present", "levels")]
    if later.levels:  # gauges may go down; only the token counter tells a restart
        scalar = ["generated_tokens"]
    if any(getattr(later, name) < getattr(earlier, name) for name in scalar):
        return True
    return any(now < before for now, before in zip(later.accepted_per_position,
                                                   earlier.accepted_per_position, strict=False))


def window(earlier: Scrape, later: Scrape) -> LiveWindow | None:
    """Rates between two scrapes; ``None`` when no time passed. Gauge-only servers (SGLang's
    ``spec_accept_length``) give a level, not counts: their acceptance figures are the later
    scrape's as they stand."""
    seconds = later.at_s - earlier.at_s
    if seconds <= 0:
        return None
    reset = _went_down(later.counters, earlier.counters)
    delta = later.counters if reset else later.counters.minus(earlier.counters)
    if later.counters.levels:
        delta = replace(later.counters, generated_tokens=delta.generated_tokens,
                        decode_seconds=delta.decode_seconds)
    drafted = delta.draft_tokens
    accepted = delta.accepted_tokens
    generated = max(delta.generated_tokens, 0.0)
    return LiveWindow(
        seconds=seconds,
        generated_tokens_per_second=generated / seconds,
        generated_tokens=generated,
        decode_tokens_per_second=(generated / delta.decode_seconds
                                  if delta.decode_seconds > 0 and generated > 0 else None),
        drafted_tokens=max(drafted, 0.0),
        drafted_tokens_per_second=max(drafted, 0.0) / seconds,
        accepted_tokens_per_second=max(accepted, 0.0) / seconds,
        acceptance=accepted / drafted if drafted > 0 else None,
        mean_accepted_length=accepted / delta.drafts if delta.drafts > 0 else None,
        per_position_acceptance=tuple(delta.per_position_acceptance()),
        reset=reset,
        counts=delta,
    )

"""What every server kind provides: render flags, parse timings, parse metrics, health.

The controller and prober only talk to this protocol; they never import a concrete backend.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client.parser import text_string_to_metric_families

from autotune.space import SpecConfig


@dataclass(frozen=True)
class LaunchSettings:
    """The fixed part of a launch: everything the search does not vary."""

    binary: str
    model: str
    host: str
    port: int
    ctx_size: int
    parallel: int
    threads: int | None = None
    gpu_layers: int | None = None
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServerTimings:
    """The server's own per-request accounting (llama.cpp's ``timings`` object)."""

    prompt_tokens: int | None = None
    prompt_ms: float | None = None
    predicted_tokens: int | None = None
    predicted_ms: float | None = None
    predicted_per_second: float | None = None
    draft_tokens: int | None = None
    draft_accepted: int | None = None


@dataclass(frozen=True)
class SpecCounters:
    """Speculative-decoding counters from ``/metrics``; subtract two reads for a window."""

    drafts: float = 0.0
    draft_tokens: float = 0.0
    accepted_tokens: float = 0.0
    generated_tokens: float = 0.0
    accepted_per_position: tuple[float, ...] = ()
    present: bool = False  # whether the server reported speculative counters at all
    decode_seconds: float = 0.0  # time spent generating; tokens over it is demand-independent
    # True where the acceptance fields are a level (SGLang's gauges), not counts: a window
    # takes them as they stand instead of differencing them.
    levels: bool = False

    def _combine(self, other: SpecCounters, sign: float) -> SpecCounters:
        width = max(len(self.accepted_per_position), len(other.accepted_per_position))
        mine = list(self.accepted_per_position) + [0.0] * (width - len(self.accepted_per_position))
        theirs = list(other.accepted_per_position) + [0.0] * (
            width - len(other.accepted_per_position)
        )
        return SpecCounters(
            drafts=self.drafts + sign * other.drafts,
            draft_tokens=self.draft_tokens + sign * other.draft_tokens,
            accepted_tokens=self.accepted_tokens + sign * other.accepted_tokens,
            generated_tokens=self.generated_tokens + sign * other.generated_tokens,
            accepted_per_position=tuple(a + sign * b for a, b in zip(mine, theirs, strict=True)),
            present=self.present or other.present,
            decode_seconds=self.decode_seconds + sign * other.decode_seconds,
            levels=self.levels or other.levels,
        )

    def minus(self, earlier: SpecCounters) -> SpecCounters:
        """The counts of the window between ``earlier`` and this read."""
        return self._combine(earlier, -1.0)

    def plus(self, other: SpecCounters) -> SpecCounters:
        """Pool two windows."""
        return self._combine(other, 1.0)

    def per_position_acceptance(self) -> list[float]:
        """Unconditional acceptance r_i = accepted at position i / drafts, up to the last
        position that ever accepted (llama.cpp lists positions far beyond draft-max)."""
        if self.drafts <= 0:
            return []
        values = [value / self.drafts for value in self.accepted_per_position]
        while values and values[-1] == 0.0:
            values.pop()
        return values


class Backend(Protocol):
    """One server kind. Implementations are small modules in this package."""

    name: str
    kv_types: tuple[str, ...]
    methods: tuple[str, ...]
    health_path: str
    chat_path: str
    completion_path: str | None
    has_server_tuner: bool  # adapts draft parameters itself at run time (a finish contender)
    per_request_knobs: bool  # accepts speculative.* in a request body (probed before use)
    # Constraints of this server kind, checked with the spec (not hard-coded elsewhere):
    kv_one_dtype: bool  # one dtype for K and V (vLLM, SGLang: --kv-cache-dtype)
    flash_attn_knob: bool  # has a flash-attention on/off flag
    quantized_v_needs_flash_attn: bool  # refuses a quantized V cache without flash attention
    p_min_knob: bool  # drafting stops below a drafter confidence (llama.cpp's p-min)
    # The drafter's own knobs it has, as space keys: "draft_min", "draft_cache_types",
    # "draft_quantizations".
    drafter_knobs: tuple[str, ...]

    def launch_argv(self, launch: LaunchSettings, config: SpecConfig) -> list[str]:
        """The full argument list (binary first) that starts this setup."""
        ...

    def parse_timings(self, payload: Mapping[str, Any]) -> ServerTimings | None:
        """Timings from a response's final chunk, if the server sends any."""
        ...

    def parse_metrics(self, text: str) -> SpecCounters:
        """Speculative counters from a ``/metrics`` page."""
        ...

    def startup_error(self, log_lines: Sequence[str]) -> str | None:
        """The line of a failed start's log that says why, if one does."""
        ...

    def request_knobs(self, config: SpecConfig) -> dict[str, float | int]:
        """Body keys that set ``config``'s draft parameters for one request."""
        ...

    def log_acceptance(self, log_lines: Sequence[str]) -> list[tuple[int, int]]:
        """(accepted, drafted) per request from the server's log, for servers whose metrics
        and timings do not carry them; empty elsewhere."""
        ...

    def tuner_choice(self, log_lines: Sequence[str]) -> str | None:
        """What the server's own run-time tuner would keep, as it logs it."""
        ...


class ServerWithoutLogFeatures:
    """What most servers lack: acceptance only in logs, a run-time tuner, per-request draft
    knobs. Their backends inherit these no-ops instead of repeating them (mainline
    llama.cpp keeps its own request_knobs, the ik fork all three)."""

    def log_acceptance(self, log_lines: Sequence[str]) -> list[tuple[int, int]]:
        return []  # counters and timings carry acceptance

    def tuner_choice(self, log_lines: Sequence[str]) -> str | None:
        return None

    def request_knobs(self, config: SpecConfig) -> dict[str, float | int]:
        return {}


def sum_samples(text: str, names: Mapping[str, str]) -> tuple[dict[str, float], dict[int, float]]:
    """Sum Prometheus samples by key. ``names`` maps sample name -> key; a sample named
    ``<key>`` ``per_position`` is also split by its ``position`` label."""
    totals: dict[str, float] = defaultdict(float)
    positions: dict[int, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = names.get(sample.name)
            if key is None:
                continue
            if key == "per_position":
                position = sample.labels.get("position")
                if position is not None and position.isdigit():
                    positions[int(position)] += sample.value
            else:
                totals[key] += sample.value
    return dict(totals), dict(positions)


def counters_from(totals: Mapping[str, float], positions: Mapping[int, float]) -> SpecCounters:
    ordered = tuple(positions[i] for i in sorted(positions)) if positions else ()
    return SpecCounters(
        drafts=totals.get("drafts", 0.0),
        draft_tokens=totals.get("draft_tokens", 0.0),
        accepted_tokens=totals.get("accepted_tokens", 0.0),
        generated_tokens=totals.get("generated_tokens", 0.0),
        decode_seconds=totals.get("decode_seconds", 0.0),
        accepted_per_position=ordered,
        present=any(k in totals for k in ("drafts", "draft_tokens", "accepted_tokens")),
    )


def usage_timings(payload: Mapping[str, Any]) -> ServerTimings | None:
    """Token counts from an OpenAI-style ``usage`` object (vLLM, SGLang): neither sends
    llama.cpp's ``timings``."""
    usage = payload.get("usage")
    if not isinstance(usage, Mapping):
        return None
    completion = usage.get("completion_tokens")
    prompt = usage.get("prompt_tokens")
    return ServerTimings(
        prompt_tokens=prompt if isinstance(prompt, int) else None,
        predicted_tokens=completion if isinstance(completion, int) else None,
    )


def first_error_line(log_lines: Sequence[str], markers: Sequence[str]) -> str | None:
    """The first log line that carries one of ``markers`` (the server's own words)."""
    for line in log_lines:
        lowered = line.lower()
        if any(marker in lowered for marker in markers):
            return line.strip()
    return None


"""Trials without restarts, where the server reads draft parameters per request.

The ik fork honours ``speculative.n_max``, ``speculative.n_min`` and ``speculative.p_min`` in
a request body; mainline llama.cpp compiles them out and ignores them silently. So it is
probed, never assumed: two greedy requests on a drafter setup, at n_max 1 and at the launch's
own draft-max (p_min 0), and the drafted tokens per verification step compared (a step yields
one token plus the accepted ones, so steps = generated - accepted). Where the knobs reach the server, drafter setups that
differ only in draft-max, n-min and p-min share one launch (started at the space's largest
draft-max, since a slot's draft batch is sized at start); launch-only knobs (drafter file, its
KV cache, KV type, flash attention, method) still relaunch."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from autotune.backends.base import Backend

PROBE_PROMPT = "Count from one to forty in words, separated by commas:"
LOW = 1
LOG_WAIT_S = 3.0  # the server logs a request's acceptance just after it answers


@dataclass(frozen=True)
class KnobProbe:
    works: bool
    high: int  # the larger n_max asked for (the launch's own, never beyond what it sized)
    per_step_low: float  # drafted tokens per verification step at n_max LOW
    per_step_high: float

    def describe(self) -> str:
        return (f"drafted {self.per_step_low:.1f} tokens per step at speculative.n_max={LOW} "
                f"and {self.per_step_high:.1f} at n_max={self.high}")


def _per_step(accepted: int, drafted: int, generated: int) -> float:
    return drafted / max(1, generated - accepted)


def probe_knobs(backend: Backend, base_url: str, log_path: Path, high: int, *,
                timeout_s: float = 60.0) -> KnobProbe | None:
    """``None`` when the server drafted nothing in a request (nothing to compare) or the
    launch drafts too few tokens to tell."""
    if high < 2:
        return None
    readings = []
    with httpx.Client(timeout=timeout_s) as client:
        for n_max in (LOW, high):
            before = len(backend.log_acceptance(_lines(log_path)))
            response = client.post(base_url + "/completion", json={
                "prompt": PROBE_PROMPT, "n_predict": 48, "temperature": 0,
                "cache_prompt": False, "speculative.n_max": n_max, "speculative.p_min": 0.0})
            response.raise_for_status()
            payload = response.json()
            generated = int(payload.get("tokens_predicted") or
                            (payload.get("timings") or {}).get("predicted_n") or 0)
            timings = backend.parse_timings(payload)
            if timings and timings.draft_tokens:
                pair = (timings.draft_accepted or 0, timings.draft_tokens)
            else:
                logged = _wait_for_lines(backend, log_path, before)
                if not logged:
                    return None
                pair = logged[-1]
            readings.append(_per_step(pair[0], pair[1], generated))
    low, at_high = readings
    # ignored knobs read the same twice; working ones draft up to `high` times more per step
    return KnobProbe(works=at_high >= 1.5 * max(low, 0.5), high=high, per_step_low=low,
                     per_step_high=at_high)


def _wait_for_lines(backend: Backend, log_path: Path, before: int) -> list[tuple[int, int]]:
    deadline = time.monotonic() + LOG_WAIT_S
    while True:
        logged = backend.log_acceptance(_lines(log_path))[before:]
        if logged or time.monotonic() > deadline:
            return logged
        time.sleep(0.1)


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


@dataclass
class LaunchPool:
    """At most one kept server, keyed by its launch argument list (port aside)."""

    key: tuple[str, ...] | None = None
    stack: contextlib.ExitStack | None = None
    launched: Any = None
    launches: int = 0
    reused: int = 0
    launch_seconds: list[float] = field(default_factory=list)

    @contextlib.contextmanager
    def use(self, key: Sequence[str],
            start: Callable[[], AbstractContextManager[Any]]) -> Iterator[Any]:
        """The kept server when ``key`` matches, else a new one kept in its place. A trial
        that fails drops the server: the next one starts clean."""
        if self.key != tuple(key) or self.launched is None or self.launched.death():
            self.close()
            stack = contextlib.ExitStack()
            self.launched = stack.enter_context(start())
            self.stack, self.key = stack, tuple(key)
            self.launches += 1
            self.launch_seconds.append(self.launched.launch_seconds)
            fresh = True
        else:
            self.reused += 1
            fresh = False
        try:
            yield dataclasses.replace(self.launched, launch_seconds=(
                self.launched.launch_seconds if fresh else 0.0))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.stack is not None:
            self.stack.close()
        self.stack, self.key, self.launched = None, None, None

    def saved_seconds(self) -> float:
        mean = sum(self.launch_seconds) / len(self.launch_seconds) if self.launch_seconds else 0.0
        return mean * self.reused

"""The sidecar: scrape the live server every interval, keep windows, drift and advice, export
them, and retune on a canary on drift, on a schedule or on request.

One thread does the work (scrape, judge, start or collect a retune); the HTTP server answers
from snapshots in its own thread. A retune is a child process (``retune.py``), so the loop
keeps scraping while it runs."""

from __future__ import annotations

import contextlib
import faulthandler
import io
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from prometheus_client import CollectorRegistry

from autotune.backends import get_backend
from autotune.config import TuneSpec
from autotune.drift import DriftSettings
from autotune.errors import SpecError
from autotune.launcher import Terminated
from autotune.live import Scrape
from autotune.sidecar.exporter import (
    DriftView,
    Routes,
    SidecarCollector,
    SidecarSnapshot,
    StudyCollector,
    serve,
)
from autotune.sidecar.retune import APPLY_TIMEOUT_S, RetuneResult, Retuner, run_apply
from autotune.sidecar.watch import Alarm, Watch, step_cost_of
from autotune.space import SpecConfig
from autotune.store import repository as repo
from autotune.store.session import Store

Echo = Callable[[str], None]
DOWN_AFTER = 3  # failed scrapes in a row before /healthz says 503
EXPORTED = 5  # studies exported: the latest recommendation's and the retunes before it
STALL_INTERVALS = 30  # a step this many intervals (at least 2 min) late dumps every stack


@dataclass(frozen=True)
class Target:
    url: str  # the live server's base URL
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SpecError(f"live server URL {url!r} is not http(s)://HOST:PORT; give e.g. "
                            "--server http://127.0.0.1:8080")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise SpecError(f"live server URL {url!r} has a bad port; give e.g. "
                            "--server http://127.0.0.1:8080") from None
        return cls(f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}", parts.hostname,
                   port)


def _latest_recommendation(store: Store) -> tuple[str, dict[str, Any]] | None:
    finished = [s for s in repo.list_studies(store) if s.recommendation]
    return (finished[-1].name, finished[-1].recommendation or {}) if finished else None


class Sidecar:
    def __init__(self, spec: TuneSpec, *, spec_path: Path, target: Target, store: Store,
                 store_location: str, name: str, log_dir: Path, echo: Echo,
                 registry: CollectorRegistry | None = None) -> None:
        settings = spec.sidecar
        if spec.server.port and spec.server.port == target.port and spec.server.host in (
                target.host, "127.0.0.1", "localhost", "0.0.0.0"):
            raise SpecError(f"server.port {spec.server.port} is the live server's port; a "
                            "retune's canary needs another (0 picks a free one)")
        self.spec = spec
        self.settings = settings
        self.target = target
        self.backend = get_backend(spec.server.kind)
        self.store = store
        self.echo = echo
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.watch = Watch(reference_windows=settings.reference_windows,
                           min_window_tokens=settings.min_window_tokens,
                           settings=DriftSettings(min_shift=settings.min_shift),
                           draft_max=settings.draft_max)
        self.retuner = Retuner(spec_path=spec_path, store=store, store_location=store_location,
                               base_name=name, log_dir=log_dir,
                               trials=settings.retune_trials, log=self._log)
        self.studies: list[str] = []
        self.recommendation: dict[str, Any] | None = None
        self.requested: str | None = None
        self.advised: int | None = None  # the best draft-max last logged
        self.retunes: dict[str, int] = {}
        self.last_retune_start = time.monotonic()
        self.last_retune_unix: float | None = None
        self.scrapes = self.scrape_errors = self.failing = 0
        self.last_ok_unix: float | None = None
        self.client = httpx.Client(timeout=min(10.0, settings.interval_s))
        latest = _latest_recommendation(store)
        if latest is not None:
            self._publish(*latest, rebase=False)
        self.registry = registry or CollectorRegistry(auto_describe=False)
        self.registry.register(SidecarCollector(self.snapshot))
        # the last few studies: a sidecar that runs for months must not export (or query)
        # every retune it ever ran at each scrape
        self.registry.register(StudyCollector(store, lambda: list(self.studies[-EXPORTED:])))

    def _log(self, line: str) -> None:
        self.echo(f"{time.strftime('%H:%M:%S')} {line}")
        sys.stdout.flush()  # a daemon's log is read while it runs (journald, a file)

    # -- what the exporter shows -------------------------------------------------------------
    def snapshot(self) -> SidecarSnapshot:
        with self.lock:
            drift = {}
            for signal, state in self.watch.drift.items():
                detector = state.detector
                alarm = state.alarm
                drift[signal] = DriftView(
                    state=0 if alarm is None else (1 if alarm.direction == "up" else -1),
                    high=detector.high if detector else 0.0,
                    low=detector.low if detector else 0.0,
                    threshold=detector.h if detector else None,
                    reference=math.exp(detector.reference.center) if detector else None,
                    alarms=state.alarms)
            return SidecarSnapshot(
                scrapes=self.scrapes, scrape_errors=self.scrape_errors, up=self.failing == 0
                and self.last_ok_unix is not None, last_scrape_ok_unix=self.last_ok_unix,
                live=self.watch.latest, windows=self.watch.windows, resets=self.watch.resets,
                drift=drift, advice=self.watch.advice, retune_running=self.retuner.running,
                retunes=dict(self.retunes), last_retune_unix=self.last_retune_unix,
                recommendation=self.recommendation)

    def health(self) -> tuple[bool, dict[str, Any]]:
        with self.lock:
            ok = self.failing < DOWN_AFTER
            return ok, {
                "status": "ok" if ok else "live server unreachable",
                "live_server": self.target.url,
                "failed_scrapes_in_a_row": self.failing,
                "last_scrape_ok_age_s": (round(time.time() - self.last_ok_unix, 1)
                                         if self.last_ok_unix else None),
                "retune_running": self.retuner.running,
            }

    def recommendation_payload(self) -> dict[str, Any] | None:
        with self.lock:
            if self.recommendation is None:
                return None
            advice = self.watch.advice
            return {
                "study": self.studies[-1] if self.studies else None,
                "recommendation": self.recommendation,
                "command": self.recommendation.get("command"),
                "command_shell": self.recommendation.get("command_shell"),
                "advice": advice.as_dict() if advice else None,
                "drift": [alarm.__dict__ for alarm in self.watch.drifted],
            }

    def request_retune(self, trigger: str = "request") -> tuple[bool, str]:
        with self.lock:
            if self.retuner.running or self.requested:
                return False, "a retune is already running"
            self.requested = trigger
        self.wake.set()
        return True, "retune requested; a canary study starts within one interval"

    # -- the work ----------------------------------------------------------------------------
    def scrape_once(self) -> list[Alarm]:
        try:
            response = self.client.get(f"{self.target.url}/metrics")
            response.raise_for_status()
            counters = self.backend.parse_metrics(response.text)
        except (httpx.HTTPError, ValueError) as error:
            with self.lock:
                self.scrapes += 1
                self.scrape_errors += 1
                self.failing += 1
                failing = self.failing
            # The first failure and the one that turns /healthz to 503 are logged; the rest
            # would only repeat them every interval.
            if failing in (1, DOWN_AFTER):
                reason = (str(error).splitlines() or [type(error).__name__])[0]
                down = (f" ({DOWN_AFTER} in a row: /healthz answers 503 until a scrape works)"
                        if failing == DOWN_AFTER else "")
                self._log(f"scrape of {self.target.url}/metrics failed: {reason}{down}")
            return []
        with self.lock:
            self.scrapes += 1
            recovered, self.failing = self.failing, 0
            self.last_ok_unix = time.time()
            windows_before = self.watch.windows
            # Windows under our own canary's load say nothing about the live setup.
            alarms = self.watch.feed(Scrape(time.monotonic(), counters),
                                     judge=not self.retuner.running)
            live = self.watch.latest if self.watch.windows > windows_before else None
        if recovered:
            self._log(f"scrape of {self.target.url}/metrics works again after {recovered} "
                      f"failed {'scrape' if recovered == 1 else 'scrapes'}")
        if live is not None:
            acceptance = f"{live.acceptance:.2f}" if live.acceptance is not None else "-"
            decode = (f"{live.decode_tokens_per_second:.1f}"
                      if live.decode_tokens_per_second else "-")
            self._log(f"window {self.watch.windows}: {live.generated_tokens_per_second:.1f} tok/s "
                      f"generated, {decode} tok/s decode, acceptance {acceptance}")
        for alarm in alarms:
            self._log(f"DRIFT: {alarm.signal} moved {alarm.direction} (window {alarm.window})")
        advice = self.watch.advice
        if advice is not None:
            worth = advice.expected_gain >= 0.02 and advice.probability_better >= 0.8
            advised = advice.best_draft_max if worth else advice.current_draft_max
            if advised != self.advised:  # log changes of what is worth doing, not wobble
                self.advised = advised
                self._log(f"advice: draft-max {advice.current_draft_max} -> "
                          f"{advice.best_draft_max} predicted {advice.expected_gain:+.0%} "
                          f"(5-95%: {advice.gain_low:+.0%} to {advice.gain_high:+.0%}, "
                          f"P(gain) {advice.probability_better:.2f})" if worth else
                          f"advice: keep draft-max {advice.current_draft_max} (no predicted "
                          "gain of 2% with probability 0.8)")
        return alarms

    def step(self) -> None:
        alarms = self.scrape_once()
        if alarms and self.settings.retune_on_drift and not self.retuner.running:
            with self.lock:
                self.requested = self.requested or "drift"
        every = self.settings.retune_every_s
        if every and time.monotonic() - self.last_retune_start >= every:
            with self.lock:
                self.requested = self.requested or "schedule"
        result = self.retuner.poll()
        if result is not None:
            self._collect(result)
        with self.lock:
            trigger, self.requested = self.requested, None
        if trigger and not self.retuner.running:
            self.retuner.start(trigger)
            with self.lock:
                self.retunes[trigger] = self.retunes.get(trigger, 0) + 1
                self.studies.append(self.retuner.study or "")
            self.last_retune_start = time.monotonic()

    def _collect(self, result: RetuneResult) -> None:
        self.last_retune_unix = time.time()
        if result.recommendation is None:
            return
        self._publish(result.study, result.recommendation, rebase=True)
        if self.settings.apply_command:
            run_apply(self.settings.apply_command, result.recommendation, self._log)

    def _publish(self, study: str, recommendation: dict[str, Any], *, rebase: bool) -> None:
        record = repo.find_study(self.store, study)
        setup = SpecConfig.from_params(recommendation["params"]) if recommendation.get(
            "params") else None
        cost = step_cost_of(repo.list_trials(self.store, record.id), setup) if record else None
        with self.lock:
            self.recommendation = recommendation
            if study not in self.studies:
                self.studies.append(study)
            self.watch.cost = cost
            if rebase:  # "normal" is learned again, so one alarm does not retune forever
                self.watch.rebase()
        self._log(f"recommendation from study {study!r}: {recommendation.get('label')} "
                  f"({recommendation.get('command_shell')})")
        if cost is None:
            self._log("no step-cost model in that study (it needs drafting setups at two draft "
                      "lengths, or one and no drafting): no draft-max advice")

    def run(self, on_listening: Callable[[int], None] | None = None) -> None:
        """Until SIGTERM/SIGINT. The canary is stopped and its trial marked interrupted on the
        way out."""
        server = serve(self.registry, self.settings.listen_host, self.settings.listen_port,
                       Routes(health=self.health, recommendation=self.recommendation_payload,
                              retune=self.request_retune))
        port = server.server_address[1]
        self._log(f"sidecar watching {self.target.url}; metrics on "
                  f"http://{self.settings.listen_host}:{port}/metrics")
        if on_listening:
            on_listening(int(port))
        stall_s = max(120.0, STALL_INTERVALS * self.settings.interval_s,
                      APPLY_TIMEOUT_S + 60.0 if self.settings.apply_command else 0.0)
        try:
            while True:
                _watchdog(stall_s)
                self.step()
                self.wake.wait(self.settings.interval_s)
                self.wake.clear()
        except (KeyboardInterrupt, Terminated):
            self._log("stopping")
        finally:
            faulthandler.cancel_dump_traceback_later()
            if self.retuner.running:
                self._log("stopping the running retune and its canary")
                result = self.retuner.stop()
                if result is not None:
                    self.last_retune_unix = time.time()
            server.shutdown()
            server.server_close()
            self.client.close()
            self._log("sidecar stopped")


def _watchdog(stall_s: float) -> None:
    """(Re)arm a dump of every thread's stack to stderr should the loop not come back within
    ``stall_s``: a sidecar once went silent for 420 s in CI and left nothing to say where it
    waited. Skipped where stderr is not a file (in-process tests)."""
    with contextlib.suppress(io.UnsupportedOperation, AttributeError, ValueError):
        faulthandler.dump_traceback_later(stall_s, repeat=False, file=sys.stderr.fileno())

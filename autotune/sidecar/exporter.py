"""Prometheus export and the sidecar's small HTTP API, on one port (127.0.0.1 by default).

Collectors compute their families at scrape time (as prometheus-client's custom collectors
do), from a snapshot of the sidecar and from the results database, into a registry the caller
passes in: tests use their own registry, nothing is global. Names follow Prometheus
conventions: ``autotune_`` prefix, base units, ``_total`` counters, ``_ratio`` for 0..1."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.registry import Collector

from autotune.live import LiveWindow
from autotune.sidecar.advice import Advice
from autotune.store import repository as repo
from autotune.store.models import TrialState
from autotune.store.session import Store

DURATION_BUCKETS = (5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


@dataclass(frozen=True)
class DriftView:
    state: int  # -1 drifted down, 0 none, 1 drifted up
    high: float  # the CUSUM statistics, in scales
    low: float
    threshold: float | None  # None while the reference is still being learned
    reference: float | None  # the reference windows' median, in the signal's unit
    alarms: int


@dataclass(frozen=True)
class SidecarSnapshot:
    scrapes: int = 0
    scrape_errors: int = 0
    up: bool = False  # the last scrape worked
    last_scrape_ok_unix: float | None = None
    live: LiveWindow | None = None
    windows: int = 0
    resets: int = 0
    drift: dict[str, DriftView] = field(default_factory=dict)
    advice: Advice | None = None
    retune_running: bool = False
    retunes: dict[str, int] = field(default_factory=dict)  # by trigger
    last_retune_unix: float | None = None
    recommendation: dict[str, Any] | None = None


def _gauge(name: str, doc: str, value: float | None, unit: str = "") -> Iterable[GaugeMetricFamily]:
    if value is not None:
        yield GaugeMetricFamily(name, doc, value=value, unit=unit)


class SidecarCollector(Collector):
    """The live server's figures, drift and advice, as the sidecar last saw them."""

    def __init__(self, snapshot: Callable[[], SidecarSnapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterable[Any]:
        view = self.snapshot()
        yield CounterMetricFamily("autotune_scrapes", "Scrapes of the live server's /metrics.",
                                  value=view.scrapes)
        yield CounterMetricFamily("autotune_scrape_errors",
                                  "Scrapes of the live server that failed.",
                                  value=view.scrape_errors)
        yield CounterMetricFamily("autotune_server_restarts",
                                  "Counter resets seen (the live server restarted).",
                                  value=view.resets)
        yield from self._up(view)
        live = view.live
        if live is not None:
            yield from _gauge("autotune_live_window_seconds", "Length of the last window.",
                              live.seconds)
            yield from _gauge("autotune_live_generated_tokens_per_second",
                              "Generated tokens per second over the last window (follows demand).",
                              live.generated_tokens_per_second)
            yield from _gauge("autotune_live_decode_tokens_per_second",
                              "Generated tokens per second of decoding time over the last window.",
                              live.decode_tokens_per_second)
            yield from _gauge("autotune_live_accepted_tokens_per_second",
                              "Accepted draft tokens per second over the last window.",
                              live.accepted_tokens_per_second)
            yield from _gauge("autotune_live_draft_acceptance_ratio",
                              "Accepted over drafted tokens in the last window.", live.acceptance)
            yield from _gauge("autotune_live_mean_accepted_tokens",
                              "Accepted tokens per draft in the last window.",
                              live.mean_accepted_length)
            by_position = GaugeMetricFamily(
                "autotune_live_position_acceptance_ratio",
                "Drafts whose token at this position was accepted, in the last window.",
                labels=["position"])
            for position, rate in enumerate(live.per_position_acceptance):
                by_position.add_metric([str(position)], rate)
            yield by_position
        yield from self._drift(view)
        yield from self._advice(view.advice)
        yield from self._retunes(view)

    @staticmethod
    def _up(view: SidecarSnapshot) -> Iterable[GaugeMetricFamily]:
        yield GaugeMetricFamily("autotune_live_up",
                                "1 when the last scrape of the live server worked.",
                                value=1.0 if view.up else 0.0)

    @staticmethod
    def _drift(view: SidecarSnapshot) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        state = GaugeMetricFamily("autotune_drift_state",
                                  "Drift of a signal: -1 down, 0 none, 1 up.", labels=["signal"])
        statistic = GaugeMetricFamily("autotune_drift_statistic",
                                      "CUSUM statistic in reference scales.",
                                      labels=["signal", "side"])
        limit = GaugeMetricFamily("autotune_drift_threshold",
                                  "CUSUM threshold in reference scales.", labels=["signal"])
        reference = GaugeMetricFamily("autotune_drift_reference",
                                      "Median of the reference windows, in the signal's unit.",
                                      labels=["signal"])
        alarms = CounterMetricFamily("autotune_drift_alarms", "Drift alarms raised.",
                                     labels=["signal"])
        for signal, drift in view.drift.items():
            state.add_metric([signal], drift.state)
            statistic.add_metric([signal, "up"], drift.high)
            statistic.add_metric([signal, "down"], drift.low)
            if drift.threshold is not None:
                limit.add_metric([signal], drift.threshold)
            if drift.reference is not None:
                reference.add_metric([signal], drift.reference)
            alarms.add_metric([signal], drift.alarms)
        yield from (state, statistic, limit, reference, alarms)

    @staticmethod
    def _advice(advice: Advice | None) -> Iterable[GaugeMetricFamily]:
        if advice is None:
            return
        yield GaugeMetricFamily("autotune_advice_current_draft_max",
                                "Draft-max the live server runs.", value=advice.current_draft_max)
        yield GaugeMetricFamily("autotune_advice_best_draft_max",
                                "Predicted fastest draft-max (0: no drafting).",
                                value=advice.best_draft_max)
        gain = GaugeMetricFamily("autotune_advice_expected_gain_ratio",
                                 "Predicted speed-up of switching to the best draft-max, minus one.",
                                 labels=["quantile"])
        gain.add_metric(["0.05"], advice.gain_low)
        gain.add_metric(["0.5"], advice.expected_gain)
        gain.add_metric(["0.95"], advice.gain_high)
        yield gain
        yield GaugeMetricFamily("autotune_advice_probability_better_ratio",
                                "Probability that the best draft-max beats the current one.",
                                value=advice.probability_better)
        predicted = GaugeMetricFamily("autotune_advice_predicted_tokens_per_second",
                                      "Predicted decode tokens/s at each draft-max.",
                                      labels=["draft_max"])
        for draft_max, speed in sorted(advice.predicted_tokens_per_second.items()):
            predicted.add_metric([str(draft_max)], speed)
        yield predicted

    @staticmethod
    def _retunes(view: SidecarSnapshot) -> Iterable[Any]:
        retunes = CounterMetricFamily("autotune_retunes", "Retunes started, by trigger.",
                                      labels=["trigger"])
        for trigger, count in sorted(view.retunes.items()):
            retunes.add_metric([trigger], count)
        yield retunes
        yield GaugeMetricFamily("autotune_retune_running", "1 while a canary retune runs.",
                                value=1.0 if view.retune_running else 0.0)
        yield from _gauge("autotune_last_retune_timestamp_seconds",
                          "When the last retune ended (Unix time).", view.last_retune_unix)


class StudyCollector(Collector):
    """Tuning runs from the results database: trials by state, best tokens/s, speed-up over
    no drafting, trial durations and the recommendation."""

    def __init__(self, store: Store, studies: Callable[[], Sequence[str]]) -> None:
        self.store = store
        self.studies = studies

    def collect(self) -> Iterable[Any]:
        trials = GaugeMetricFamily("autotune_study_trials", "Trials of a study by state.",
                                   labels=["study", "state"])
        best = GaugeMetricFamily("autotune_study_best_tokens_per_second",
                                 "Best measured tokens/s of a feasible setup.", labels=["study"])
        speedup = GaugeMetricFamily("autotune_study_speedup_ratio",
                                    "Recommended setup over no drafting.", labels=["study"])
        durations = HistogramMetricFamily("autotune_trial_duration_seconds",
                                          "Wall time of finished trials.", labels=["study"])
        info = InfoMetricFamily("autotune_recommendation", "A study's recommended setup.",
                                labels=["study"])
        for name in self.studies():
            study = repo.find_study(self.store, name)
            if study is None:
                continue
            records = repo.list_trials(self.store, study.id)
            for state in (TrialState.RUNNING, *TrialState.FINISHED, TrialState.INTERRUPTED):
                trials.add_metric([name, state], sum(t.state == state for t in records))
            feasible = [t.objective for t in records
                        if t.state == TrialState.COMPLETE and t.objective is not None]
            if feasible:
                best.add_metric([name], max(feasible))
            seconds = [t.duration_s for t in records if t.finished and t.duration_s is not None]
            buckets = [(str(b), float(sum(s <= b for s in seconds))) for b in DURATION_BUCKETS]
            buckets.append(("+Inf", float(len(seconds))))
            durations.add_metric([name], buckets, sum_value=float(sum(seconds)))
            recommendation = study.recommendation
            if recommendation:
                if recommendation.get("speedup"):
                    speedup.add_metric([name], recommendation["speedup"])
                info.add_metric([name], {
                    "label": str(recommendation.get("label", "")),
                    "verdict": str(recommendation.get("verdict", "")),
                    "command": str(recommendation.get("command_shell", "")),
                })
        yield from (trials, best, speedup, durations, info)


@dataclass
class Routes:
    """What the HTTP API answers besides /metrics."""

    health: Callable[[], tuple[bool, dict[str, Any]]]
    recommendation: Callable[[], dict[str, Any] | None] = lambda: None
    retune: Callable[[], tuple[bool, str]] | None = None


def serve(registry: CollectorRegistry, host: str, port: int, routes: Routes) -> ThreadingHTTPServer:
    """Start the HTTP server in a daemon thread; ``shutdown()`` stops it."""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, payload: Any) -> None:
            self._send(status, (json.dumps(payload, indent=2) + "\n").encode(),
                       "application/json")

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok, detail = routes.health()
                self._json(200 if ok else 503, detail)
            elif path == "/recommendation":
                payload = routes.recommendation()
                if payload is None:
                    self._json(404, {"error": "no recommendation yet"})
                else:
                    self._json(200, payload)
            else:
                self._json(404, {"error": f"no route {path}"})

        def do_POST(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0]
            if path != "/retune" or routes.retune is None:
                self._json(404, {"error": f"no route POST {path}"})
                return
            started, message = routes.retune()
            self._json(202 if started else 409, {"started": started, "message": message})

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return  # scrapes every few seconds would flood the sidecar's log

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="autotune-exporter", daemon=True).start()
    return server

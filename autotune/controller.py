"""The controller: ask the strategy, launch the setup, measure it, store it, tell the strategy.

Each finished trial, with all its request samples, is committed before the next one starts, so
a killed tuner loses at most the trial in flight; ``resume`` replays the stored trials into a
fresh strategy and carries on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autotune.backends import Backend, LaunchSettings, get_backend
from autotune.config import TuneSpec
from autotune.errors import AutotuneError, LaunchError, ProbeError, SpecError
from autotune.launcher import (
    ServerProcess,
    ensure_port_free,
    free_port,
    reap_stale,
    start_server,
    tail_lines,
    wait_healthy,
)
from autotune.objective import Evaluation, evaluate
from autotune.prober import LevelResult, probe
from autotune.space import BASELINE, SpecConfig
from autotune.store import repository as repo
from autotune.store.models import TrialState
from autotune.store.repository import StudyRecord, TrialRecord
from autotune.store.session import Store
from autotune.workload import Workload
from strategies import Observation, create_strategy

Echo = Callable[[str], None]


def observation_of(trial: TrialRecord) -> Observation:
    primary = trial.summary[0] if trial.summary else {}
    return Observation(
        config=trial.config,
        tokens_per_second=trial.objective if trial.state != TrialState.FAILED else None,
        feasible=bool(trial.feasible),
        effort=trial.effort,
        acceptance=primary.get("acceptance"),
        per_position_acceptance=tuple(primary.get("per_position_acceptance") or ()),
    )


@dataclass
class Tuner:
    spec: TuneSpec
    store: Store
    study: StudyRecord
    workload: Workload
    log_dir: Path
    echo: Echo

    @property
    def backend(self) -> Backend:
        return get_backend(self.spec.server.kind)

    def launch_settings(self, port: int) -> LaunchSettings:
        server = self.spec.server
        return LaunchSettings(
            binary=server.binary, model=server.model, host=server.host, port=port,
            ctx_size=server.ctx_size, parallel=server.parallel, threads=server.threads,
            gpu_layers=server.gpu_layers, extra_args=tuple(server.extra_args),
        )

    def _port(self) -> int:
        if self.spec.server.port:
            ensure_port_free(self.spec.server.host, self.spec.server.port)
            return self.spec.server.port
        return free_port(self.spec.server.host)

    @contextlib.contextmanager
    def running(self, config: SpecConfig, trial_id: int, number: int) -> Iterator[tuple[str, float]]:
        """Start ``config``'s server for trial ``trial_id``; yield (base URL, launch seconds);
        always stop it. Attach mode yields the given URL and launches nothing."""
        if self.spec.server.attach_url:
            yield self.spec.server.attach_url.rstrip("/"), 0.0
            return
        port = self._port()
        argv = self.backend.launch_argv(self.launch_settings(port), config)
        base_url = f"http://{self.spec.server.host}:{port}"
        server: ServerProcess = start_server(
            argv, base_url=base_url, log_path=self.log_dir / f"trial-{number:03d}.log"
        )
        try:
            repo.record_server(self.store, trial_id, pid=server.pid, create_time=server.create_time)
            launch_s = wait_healthy(
                server, health_path=self.backend.health_path,
                timeout_s=self.spec.server.startup_timeout_s,
                error_line=self.backend.startup_error,
            )
            yield base_url, launch_s
        finally:
            server.stop()

    def argv_for(self, config: SpecConfig) -> list[str]:
        return self.backend.launch_argv(self.launch_settings(self.spec.server.port), config)

    def probe(self, base_url: str, *, requests: int, warmup: int) -> list[LevelResult]:
        workload = self.spec.workload
        return probe(
            self.backend, base_url, self.workload,
            concurrency_levels=workload.concurrency, requests=requests,
            warmup_requests=warmup, timeout_s=workload.request_timeout_s,
        )

    def measure(self, config: SpecConfig, *, phase: str, effort: float = 1.0) -> TrialRecord:
        """One trial: launch, probe, evaluate, store (samples included), stop."""
        trial_id, number = repo.start_trial(self.store, self.study.id, phase=phase,
                                            config=config, launch_argv=self.argv_for(config),
                                            effort=effort)
        requests = max(1, round(self.spec.workload.requests * effort))
        finished = False
        try:
            with self.running(config, trial_id, number) as (base_url, launch_s):
                levels = self.probe(base_url, requests=requests,
                                    warmup=self.spec.workload.warmup_requests)
                evaluation = evaluate(levels, self.spec.limits)
                excerpt = "".join(tail_lines(self.log_dir / f"trial-{number:03d}.log", 20))
                repo.finish_trial(
                    self.store, trial_id,
                    state=TrialState.COMPLETE if evaluation.feasible else TrialState.INFEASIBLE,
                    evaluation=evaluation, launch_seconds=launch_s, server_log_excerpt=excerpt,
                    samples=[(0, s) for level in levels for s in level.samples],
                )
                finished = True
        except (LaunchError, ProbeError) as error:
            repo.finish_trial(
                self.store, trial_id, state=TrialState.FAILED, failure_reason=str(error),
                server_log_excerpt=getattr(error, "log_excerpt", None),
            )
            finished = True
        finally:
            if not finished:  # Ctrl-C or a bug: leave it for resume to mark interrupted
                with contextlib.suppress(AutotuneError):
                    repo.interrupt_running(self.store, self.study.id)
        return repo.get_trial(self.store, trial_id)


def spec_fingerprint(spec: TuneSpec) -> dict[str, Any]:
    """The parts of a spec that must not change when a study is resumed."""
    data = spec.model_dump(mode="json")
    data["search"].pop("trials", None)  # the budget may be raised on resume
    data.pop("finish", None)
    return data


def open_study(store: Store, spec: TuneSpec, name: str, *, resume: bool) -> StudyRecord:
    existing = repo.find_study(store, name)
    fingerprint = spec_fingerprint(spec)
    if existing is None:
        return repo.create_study(
            store, name=name, server_kind=spec.server.kind, strategy=spec.search.strategy,
            seed=spec.search.seed, trials_budget=spec.search.trials, spec=fingerprint,
        )
    if not resume:
        raise SpecError(
            f"study {name!r} already exists in {store.url}; continue it with --resume, "
            "or start another with --name NEW"
        )
    if existing.spec != fingerprint:
        changed = sorted(k for k in fingerprint if fingerprint[k] != existing.spec.get(k))
        raise SpecError(
            f"the spec changed since study {name!r} started (section {', '.join(changed)}); "
            "resume with the same spec or start another study with --name NEW"
        )
    for pid, create_time in repo.interrupt_running(store, existing.id):
        reap_stale(pid, create_time)
    return existing


def run_search(tuner: Tuner, *, budget: int) -> tuple[list[TrialRecord], SpecConfig | None]:
    """Measure the baseline first, then what the strategy asks, until ``budget`` search trials
    are finished. Returns every finished search trial and the strategy's own pick."""
    spec = tuner.spec
    strategy = create_strategy(spec.search.strategy, spec.space.to_space(),
                               seed=spec.search.seed, budget=budget)
    finished = [t for t in repo.list_trials(tuner.store, tuner.study.id, phase="search")
                if t.finished]
    for trial in finished:
        strategy.tell(observation_of(trial))
    if finished:
        tuner.echo(f"resuming: {len(finished)} finished trials replayed into {strategy.name}")
    if not any(t.config == BASELINE for t in finished) and len(finished) < budget:
        trial = tuner.measure(BASELINE, phase="search")
        tuner.echo(progress_line(trial, len(finished) + 1, budget))
        if trial.state == TrialState.FAILED:
            raise LaunchError(f"the baseline (no drafting) failed: {trial.failure_reason}")
        finished.append(trial)
        strategy.tell(observation_of(trial))
    while len(finished) < budget:
        ask = strategy.ask()
        if ask is None:
            tuner.echo(f"{strategy.name}: no setup left to try")
            break
        trial = tuner.measure(ask.config, phase="search", effort=ask.effort)
        finished.append(trial)
        tuner.echo(progress_line(trial, len(finished), budget))
        strategy.tell(observation_of(trial))
    return finished, strategy.recommend()


def progress_line(trial: TrialRecord, done: int, budget: int) -> str:
    head = f"[{done:>3}/{budget}] {trial.config.describe():<52}"
    if trial.state == TrialState.FAILED:
        return f"{head} FAILED  {trial.failure_reason}"
    primary = trial.summary[0] if trial.summary else {}
    acceptance = primary.get("acceptance")
    shown = f"acc {acceptance:.2f}" if isinstance(acceptance, float) else "        "
    state = "ok" if trial.feasible else "over limit: " + "; ".join(trial.violated)
    return f"{head} {trial.objective or 0:7.1f} t/s  {shown}  {state}"

"""The controller: ask the strategy, launch the setup, measure it, store it, tell the strategy.

Each finished trial, with all its request samples, is committed before the next one starts, so
a killed tuner loses at most the trial in flight; ``resume`` replays the stored trials into a
fresh strategy and carries on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from autotune.backends import Backend, LaunchSettings, get_backend
from autotune.config import TuneSpec
from autotune.errors import AutotuneError, LaunchError, ProbeError, SpecError
from autotune.launcher import (
    ServerProcess,
    describe_exit,
    ensure_port_free,
    free_port,
    reap_stale,
    start_server,
    tail_lines,
    url_host,
    wait_healthy,
)
from autotune.objective import Evaluation, evaluate, with_logged_acceptance
from autotune.measurements import LevelResult
from autotune.prober import probe
from autotune.quality import QualityGuard, quality_violation
from autotune.reuse import KnobProbe, LaunchPool, probe_knobs
from autotune.space import SpecConfig, uses_drafter
from autotune.store import repository as repo
from autotune.store.models import TrialState
from autotune.store.repository import AgreementRecord, StudyRecord, TrialRecord
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


@dataclass(frozen=True)
class Launched:
    """A healthy server of one trial."""

    base_url: str
    launch_seconds: float
    server: ServerProcess

    def death(self) -> str | None:
        """Why the server is gone, if it exited while it was measured."""
        code = self.server.popen.poll()
        if code is None:
            return None
        lines = [line.strip() for line in tail_lines(self.server.log_path, 20) if line.strip()]
        last = lines[-1] if lines else "no output"
        return (f"the server exited with {describe_exit(code)} while it was measured; "
                f"its last log line: {last}")


@dataclass
class Tuner:
    spec: TuneSpec
    store: Store
    study: StudyRecord
    workload: Workload
    log_dir: Path
    echo: Echo
    guard_quality: bool = True  # the gate judges outputs itself
    pool: LaunchPool = dataclasses.field(default_factory=LaunchPool)  # trials without restarts
    knobs: KnobProbe | None = None  # do per-request draft parameters reach the server?
    knobs_probed: bool = False
    launches: int = 0
    _announced: set[str] = dataclasses.field(default_factory=set, init=False, repr=False)

    @functools.cached_property
    def quality(self) -> QualityGuard | None:
        count = min(self.spec.workload.quality_prompts, self.workload.distinct_count)
        if not self.guard_quality or count == 0:
            return None
        return QualityGuard(self.store, self.study.id, self.backend, self.launch_settings(0),
                            self.workload.schedule(count, 0), self.log_dir,
                            self.spec.server.startup_timeout_s,
                            self.spec.workload.request_timeout_s,
                            self.spec.search_space().baseline)

    def agreement(self, config: SpecConfig) -> AgreementRecord | None:
        """Greedy agreement of ``config``'s KV setting with the reference (measured once)."""
        if self.quality is None:
            return None
        record = self.quality.agreement(config)
        if record is not None and record.setting not in self._announced:
            self._announced.add(record.setting)
            self.echo(f"  greedy outputs under {record.setting}: {record.identical}/"
                      f"{record.compared} identical to f16 KV without drafting")
        return record

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
    def running(self, config: SpecConfig, trial_id: int, number: int) -> Iterator[Launched]:
        """Start ``config``'s server for trial ``trial_id``, wait for health, yield it; always
        stop it."""
        port = self._port()
        argv = self.backend.launch_argv(self.launch_settings(port), config)
        self.launches += 1
        base_url = f"http://{url_host(self.spec.server.host)}:{port}"
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
            yield Launched(base_url, launch_s, server)
        finally:
            server.stop()

    def argv_for(self, config: SpecConfig) -> list[str]:
        return self.backend.launch_argv(self.launch_settings(self.spec.server.port), config)

    def probe(self, base_url: str, *, requests: int, warmup: int, rotation: int = 0,
              knobs: dict[str, Any] | None = None) -> list[LevelResult]:
        workload = self.spec.workload
        return probe(
            self.backend, base_url, self.workload,
            concurrency_levels=workload.concurrency, requests=requests,
            warmup_requests=warmup, timeout_s=workload.request_timeout_s, rotation=rotation,
            knobs=knobs,
        )

    def requests_for(self, effort: float) -> int:
        """Requests per slot for a launch at ``effort``, capped so one server never gets a
        prompt twice: a longer launch of a small workload would repeat prompts, which n-gram
        caches answer from memory (the KV screen once read 103 tok/s where 1x read 64)."""
        wanted = max(1, round(self.spec.workload.requests * effort))
        cap = self.workload.distinct_count // sum(self.spec.workload.concurrency)
        return max(1, min(wanted, cap)) if cap >= 1 else wanted

    def measure(self, config: SpecConfig, *, phase: str, effort: float = 1.0,
                rotation: int | None = None, round_: int | None = None,
                requests: int | None = None) -> TrialRecord:
        """One trial: launch, probe, evaluate, store (samples included), stop. ``rotation``
        picks the workload's stretch (default: the trial's number, so successive launches
        cover the whole workload); ``requests`` overrides the effort's request count."""
        if requests is None:
            requests = self.requests_for(effort)
            effort = requests / self.spec.workload.requests
        lost = quality_violation(self.agreement(config), self.spec.limits.max_quality_loss)
        trial_id, number = repo.start_trial(self.store, self.study.id, phase=phase,
                                            config=config, launch_argv=self.argv_for(config),
                                            effort=effort, round_=round_)
        finished = False
        pooled = (phase == "search" and self.knobs is not None and self.knobs.works
                  and uses_drafter(config.method) and self.spec.search.reuse_launches)
        try:
            with self._server(config, trial_id, number, pooled) as launched:
                if phase == "search" and uses_drafter(config.method) and not pooled:
                    self._probe_knobs(launched, int(config.draft_max or 0))
                knobs = {**self.backend.request_knobs(config), "cache_prompt": False}
                levels = self.probe(launched.base_url, requests=requests,
                                    warmup=self.spec.workload.warmup_requests,
                                    rotation=number if rotation is None else rotation,
                                    knobs=knobs if pooled else None)
                death = launched.death()
                if death is not None:  # failed, with its reason, not "over limit: errors"
                    raise ProbeError(death)
                lines = launched.server.log_path.read_text(errors="replace").splitlines()
                levels = with_logged_acceptance(self.backend.log_acceptance(lines), levels)
                choice = self.backend.tuner_choice(lines) if config.server_tuned else None
                if choice:
                    self.echo(f"{config.describe()}: the server's tuner says "
                              f"\"Autotune reuse: {choice}\"")
                evaluation = evaluate(levels, self.spec.limits)
                if lost is not None:
                    evaluation = dataclasses.replace(
                        evaluation, feasible=False, violated=[*evaluation.violated, lost])
                self._check_knobs(config, evaluation)
                excerpt = "".join(tail_lines(launched.server.log_path, 20))
                repo.finish_trial(
                    self.store, trial_id,
                    state=TrialState.COMPLETE if evaluation.feasible else TrialState.INFEASIBLE,
                    evaluation=evaluation, launch_seconds=launched.launch_seconds,
                    server_log_excerpt=excerpt,
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

    def _server(self, config: SpecConfig, trial_id: int, number: int,
                pooled: bool) -> contextlib.AbstractContextManager[Launched]:
        """A fresh launch, or, for drafter setups where per-request knobs work, the kept
        server of the same launch-only knobs (started at the space's largest draft-max);
        draft-max, p-min and n-min then travel in each request."""
        if not pooled:
            self.pool.close()  # one server at a time: a kept one holds the port
            return self.running(config, trial_id, number)
        space = self.spec.space
        # n-min at the server's default: each request sends its own where the space has one
        launch = dataclasses.replace(config, draft_max=space.draft_max.high,
                                     p_min=space.p_min.low, draft_min=None)
        key = self.backend.launch_argv(self.launch_settings(0), launch)
        return self.pool.use(key, lambda: self.running(launch, trial_id, number))

    def _probe_knobs(self, launched: Launched, high: int) -> None:
        """Once per study, on the first drafter launch: say whether draft-max, n-min and
        p-min can be tried without restarts."""
        if self.knobs_probed or not self.backend.per_request_knobs or high < 2:
            return
        self.knobs_probed = True
        with contextlib.suppress(httpx.HTTPError, ValueError):
            self.knobs = probe_knobs(self.backend, launched.base_url, launched.server.log_path,
                                     high)
        if self.knobs is None:
            self.echo("per-request draft parameters: could not tell (nothing drafted); every "
                      "setup is its own launch")
        elif self.knobs.works and not self.spec.search.reuse_launches:
            self.echo(f"per-request draft parameters reach this server ({self.knobs.describe()});"
                      " search.reuse_launches = false: every setup is its own launch")
        elif self.knobs.works:
            self.echo(f"per-request draft parameters reach this server ({self.knobs.describe()}):"
                      " draft-max, n-min and p-min are tried without restarts")
        else:
            self.echo(f"per-request draft parameters do not reach this server "
                      f"({self.knobs.describe()}): every setup is its own launch")

    def release(self) -> None:
        """Stop a kept server and say what keeping it saved."""
        if self.pool.reused:
            self.echo(f"search: {self.pool.reused} trials ran on a kept server; "
                      f"{self.launches} launches in all, about {self.pool.saved_seconds():.0f} s "
                      "of server start-up saved")
        self.pool.close()

    def _check_knobs(self, config: SpecConfig, evaluation: Evaluation) -> None:
        """Say so when the server drafted longer than the setup allows: its length flag did
        not reach it (every "ngram-mod n=..." launch once ran at n-max 64), and the draft
        length axis would be noise."""
        length = evaluation.levels[0].mean_draft_length if evaluation.levels else None
        limit = config.draft_max
        if length is not None and limit is not None and length > limit + 0.01:
            self.echo(f"warning: {config.describe()}: the server drafted {length:.1f} tokens per "
                      f"draft with draft_max {limit}; its draft-length flag did not "
                      "reach the server")


def spec_fingerprint(spec: TuneSpec) -> dict[str, Any]:
    """The parts of a spec that must not change when a study is resumed."""
    data = spec.model_dump(mode="json")
    data["search"].pop("trials", None)  # the budget may be raised on resume
    data.pop("finish", None)
    data.pop("gate", None)
    return data


def open_study(store: Store, spec: TuneSpec, name: str, *, resume: bool) -> StudyRecord:
    existing = repo.find_study(store, name)
    fingerprint = spec_fingerprint(spec)
    if existing is None and resume:
        raise SpecError(f"--resume: no study {name!r} in {store.url} (studies there: "
                        f"{repo.study_names(store)}); "
                        "name one of those with --name, or drop --resume to start it")
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
    return existing


def recover_interrupted(store: Store, study: StudyRecord) -> None:
    """Mark the trials a killed tuner left running as interrupted and reap their servers.
    Only the study's owner may do this (``autotune.lease``): a live tuner's trial in flight
    must not be marked by a second one."""
    for pid, create_time in repo.interrupt_running(store, study.id):
        reap_stale(pid, create_time)


def run_search(tuner: Tuner, *, budget: int) -> tuple[list[TrialRecord], SpecConfig | None]:
    """Measure the baseline first, then what the strategy asks, until ``budget`` search trials
    are finished. Returns every finished search trial and the strategy's own pick."""
    spec = tuner.spec
    space = spec.search_space()
    strategy = create_strategy(spec.search.strategy, space,
                               seed=spec.search.seed, budget=budget)
    finished = [t for t in repo.list_trials(tuner.store, tuner.study.id, phase="search")
                if t.finished]
    for trial in finished:
        strategy.tell(observation_of(trial))
    if finished:
        tuner.echo(f"resuming: {len(finished)} finished trials replayed into {strategy.name}")

    def record(trial: TrialRecord) -> None:
        finished.append(trial)
        tuner.echo(progress_line(trial, len(finished), budget))
        strategy.tell(observation_of(trial))

    baseline = space.baseline
    if not any(t.config == baseline and t.state != TrialState.FAILED for t in finished):
        # Everything is judged against the baseline: a failed start (a port race, a slow
        # disk) is tried once more, also after a resume, before the study gives up.
        for attempt in range(2):
            trial = tuner.measure(baseline, phase="search")
            record(trial)
            if trial.state != TrialState.FAILED:
                break
            if attempt == 0:
                tuner.echo("the baseline (no drafting) failed to start; trying it once more")
        else:
            raise LaunchError(f"the baseline (no drafting) failed twice: {trial.failure_reason}")
    while len(finished) < budget:
        ask = strategy.ask()
        if ask is None:
            tuner.echo(f"{strategy.name}: no setup left to try")
            break
        trial = tuner.measure(ask.config, phase="search", effort=ask.effort)
        record(trial)
        if len(finished) < budget and _worth_remeasuring(trial, finished):
            tuner.echo(f"{trial.config.describe()}: fast but over a limit once; measuring it "
                       "again before dropping it")
            record(tuner.measure(ask.config, phase="search", effort=ask.effort))
    return finished, strategy.recommend()


def _worth_remeasuring(trial: TrialRecord, finished: list[TrialRecord]) -> bool:
    """A launch that broke a limit is measured once more when the setup is promising (as fast
    as the best setup that met the limits) and this was its only launch: one disturbed launch
    must not drop it for good."""
    if trial.state != TrialState.INFEASIBLE or trial.objective is None:
        return False
    if sum(t.config == trial.config for t in finished) > 1:
        return False
    best = max((t.objective for t in finished if t.feasible and t.objective), default=None)
    return best is not None and trial.objective >= best  # nothing feasible yet: no yardstick


def progress_line(trial: TrialRecord, done: int, budget: int) -> str:
    """One line per finished trial. The figures come before the setup's label, whose length
    varies (a drafter's file name), so they stay in columns. ``#N`` is the trial's number, as
    in the results table and its server log's name (``trial-NNN.log``)."""
    label = trial.config.describe()
    head = f"[{done:>3}/{budget}] #{trial.number:<4}"
    if trial.state == TrialState.FAILED:
        return f"{head} {'FAILED':>7}{'':14}  {label}  {trial.failure_reason}"
    primary = trial.summary[0] if trial.summary else {}
    acceptance = primary.get("acceptance")
    shown = f"acc {acceptance:.2f}" if isinstance(acceptance, float) else "        "
    state = "ok" if trial.feasible else "over limit: " + "; ".join(trial.violated)
    return f"{head} {trial.objective or 0:7.1f} t/s  {shown}  {label}  {state}"

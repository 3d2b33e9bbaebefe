"""Repository functions: the only code that reads or writes the tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update

from autotune.objective import Evaluation
from autotune.measurements import RequestSample
from autotune.space import SpecConfig
from autotune.store.models import Agreement, Sample, Study, Trial, TrialState
from autotune.store.session import Store


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class TrialRecord:
    """A trial as the rest of the program sees it (no ORM object crosses module lines)."""

    id: int
    number: int
    phase: str
    state: str
    config: SpecConfig
    objective: float | None
    feasible: bool | None
    violated: list[str]
    summary: list[dict[str, Any]]
    launch_argv: list[str]
    failure_reason: str | None
    server_log_excerpt: str | None
    launch_seconds: float | None
    duration_s: float | None
    effort: float = 1.0
    round: int | None = None
    disturbed: bool = False

    @property
    def finished(self) -> bool:
        return self.state in TrialState.FINISHED


@dataclass(frozen=True)
class StudyRecord:
    id: int
    name: str
    server_kind: str
    strategy: str
    seed: int
    trials_budget: int
    spec: dict[str, Any]
    state: str
    recommendation: dict[str, Any] | None


def _trial_record(row: Trial) -> TrialRecord:
    duration = (row.finished_at - row.started_at).total_seconds() if row.finished_at else None
    return TrialRecord(
        id=row.id, number=row.number, phase=row.phase, state=row.state,
        config=SpecConfig.from_params(row.params), objective=row.objective,
        feasible=row.feasible, violated=list(row.violated or []),
        summary=list(row.summary or []), launch_argv=list(row.launch_argv or []),
        failure_reason=row.failure_reason, server_log_excerpt=row.server_log_excerpt,
        launch_seconds=row.launch_seconds, duration_s=duration, effort=row.effort,
        round=row.round, disturbed=bool(row.disturbed),
    )


def _study_record(row: Study) -> StudyRecord:
    return StudyRecord(
        id=row.id, name=row.name, server_kind=row.server_kind, strategy=row.strategy,
        seed=row.seed, trials_budget=row.trials_budget, spec=dict(row.spec), state=row.state,
        recommendation=dict(row.recommendation) if row.recommendation else None,
    )


def find_study(store: Store, name: str) -> StudyRecord | None:
    with store.session() as session:
        row = session.scalars(select(Study).where(Study.name == name)).one_or_none()
        return _study_record(row) if row else None


def list_studies(store: Store) -> list[StudyRecord]:
    with store.session() as session:
        return [_study_record(r) for r in session.scalars(select(Study).order_by(Study.id))]


def study_names(store: Store) -> str:
    """The stored studies' names for an error line ("none" when there are none)."""
    return ", ".join(s.name for s in list_studies(store)) or "none"


def create_study(
    store: Store, *, name: str, server_kind: str, strategy: str, seed: int, trials_budget: int,
    spec: dict[str, Any],
) -> StudyRecord:
    with store.session() as session:
        row = Study(name=name, created_at=_now(), server_kind=server_kind, strategy=strategy,
                    seed=seed, trials_budget=trials_budget, spec=spec, state="running")
        session.add(row)
        session.flush()
        return _study_record(row)


def set_study_state(
    store: Store, study_id: int, state: str, recommendation: dict[str, Any] | None = None
) -> None:
    with store.session() as session:
        row = session.get_one(Study, study_id)
        row.state = state
        if recommendation is not None:
            row.recommendation = recommendation


def start_trial(
    store: Store, study_id: int, *, phase: str, config: SpecConfig, launch_argv: list[str],
    effort: float = 1.0, round_: int | None = None,
) -> tuple[int, int]:
    """Record a trial as RUNNING before its server starts; returns (trial id, number)."""
    with store.session() as session:
        top = session.scalar(select(func.max(Trial.number)).where(Trial.study_id == study_id))
        row = Trial(
            study_id=study_id, number=0 if top is None else top + 1, phase=phase,
            state=TrialState.RUNNING, params=config.to_params(), config_key=config.key,
            launch_argv=launch_argv, started_at=_now(), effort=effort, round=round_,
        )
        session.add(row)
        session.flush()
        return row.id, row.number


def record_server(store: Store, trial_id: int, *, pid: int, create_time: float | None) -> None:
    with store.session() as session:
        row = session.get_one(Trial, trial_id)
        row.server_pid = pid
        row.server_create_time = create_time


def finish_trial(
    store: Store,
    trial_id: int,
    *,
    state: str,
    evaluation: Evaluation | None = None,
    samples: Sequence[tuple[int, RequestSample]] = (),
    failure_reason: str | None = None,
    server_log_excerpt: str | None = None,
    launch_seconds: float | None = None,
) -> None:
    """Finish a trial and store its samples (``(round, sample)`` pairs) in one transaction."""
    with store.session() as session:
        row = session.get_one(Trial, trial_id)
        if row.state != TrialState.RUNNING:
            raise ValueError(f"trial {row.number} is already {row.state}; finished trials are final")
        row.state = state
        row.finished_at = _now()
        row.failure_reason = failure_reason
        row.server_log_excerpt = server_log_excerpt
        row.launch_seconds = launch_seconds
        if evaluation is not None:
            row.objective = evaluation.objective
            row.feasible = evaluation.feasible
            row.violated = evaluation.violated
            row.summary = [level.to_dict() for level in evaluation.levels]
        session.add_all(
            Sample(trial_id=trial_id, round=round_, **asdict(sample)) for round_, sample in samples
        )


def mark_disturbed(store: Store, trial_ids: Sequence[int]) -> None:
    """Flag finished finish-round trials whose round outside load disturbed."""
    with store.session() as session:
        for trial_id in trial_ids:
            session.get_one(Trial, trial_id).disturbed = True


def interrupt_running(store: Store, study_id: int) -> list[tuple[int | None, float | None]]:
    """Mark trials a killed tuner left RUNNING as INTERRUPTED; return their servers' identities
    so the caller can reap any that survived."""
    with store.session() as session:
        rows = session.scalars(
            select(Trial).where(Trial.study_id == study_id, Trial.state == TrialState.RUNNING)
        ).all()
        servers = [(r.server_pid, r.server_create_time) for r in rows]
        for row in rows:
            row.state = TrialState.INTERRUPTED
            row.finished_at = _now()
            row.failure_reason = "the tuner stopped during this trial; it is measured again"
        return servers


def get_trial(store: Store, trial_id: int) -> TrialRecord:
    with store.session() as session:
        return _trial_record(session.get_one(Trial, trial_id))


def list_trials(store: Store, study_id: int, *, phase: str | None = None) -> list[TrialRecord]:
    with store.session() as session:
        query = select(Trial).where(Trial.study_id == study_id).order_by(Trial.number)
        if phase is not None:
            query = query.where(Trial.phase == phase)
        return [_trial_record(r) for r in session.scalars(query)]


def trial_samples(store: Store, trial_id: int) -> list[dict[str, Any]]:
    with store.session() as session:
        rows = session.scalars(select(Sample).where(Sample.trial_id == trial_id).order_by(Sample.id))
        return [
            {c.name: getattr(r, c.name) for c in Sample.__table__.columns} for r in rows
        ]


@dataclass(frozen=True)
class StudyOwner:
    token: str | None
    host: str | None
    pid: int | None
    create_time: float | None
    since: datetime | None
    heartbeat_at: datetime | None


def study_owner(store: Store, study_id: int) -> StudyOwner:
    with store.session() as session:
        row = session.get_one(Study, study_id)
        return StudyOwner(row.owner_token, row.owner_host, row.owner_pid, row.owner_create_time,
                          row.owner_since, row.heartbeat_at)


def swap_owner(store: Store, study_id: int, *, seen: str | None, token: str | None,
               host: str | None = None, pid: int | None = None,
               create_time: float | None = None) -> bool:
    """Compare-and-swap the study's owner: succeeds only if the owner is still ``seen``, so
    two tuners that both found a study free cannot both take it."""
    now = _now() if token else None
    with store.session() as session:
        owner = Study.owner_token.is_(None) if seen is None else Study.owner_token == seen
        result = session.execute(
            update(Study).where(Study.id == study_id, owner).values(
                owner_token=token, owner_host=host, owner_pid=pid, owner_create_time=create_time,
                owner_since=now, heartbeat_at=now))
        return bool(getattr(result, "rowcount", 0) == 1)


def heartbeat(store: Store, study_id: int, token: str) -> bool:
    """Renew the lease; ``False`` if another tuner took the study meanwhile."""
    with store.session() as session:
        result = session.execute(update(Study).where(
            Study.id == study_id, Study.owner_token == token).values(heartbeat_at=_now()))
        return bool(getattr(result, "rowcount", 0) == 1)


@dataclass(frozen=True)
class AgreementRecord:
    setting: str
    compared: int
    identical: int
    mean_edit_distance: float
    first_divergences: list[int | None]

    @property
    def share(self) -> float:
        """Share of greedy outputs identical to the reference's."""
        return self.identical / self.compared if self.compared else 1.0

    @property
    def loss(self) -> float:
        return 1.0 - self.share


def save_agreement(store: Store, study_id: int, record: AgreementRecord) -> None:
    with store.session() as session:
        session.add(Agreement(study_id=study_id, measured_at=_now(), **asdict(record)))


def study_agreements(store: Store, study_id: int) -> dict[str, AgreementRecord]:
    with store.session() as session:
        rows = session.scalars(select(Agreement).where(Agreement.study_id == study_id)).all()
        return {r.setting: AgreementRecord(r.setting, r.compared, r.identical,
                                           r.mean_edit_distance, list(r.first_divergences))
                for r in rows}

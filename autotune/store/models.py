"""Tables: studies, their trials, and every request's measurements.

Rules (as Optuna's storage states them): a finished trial is never modified, except for the
``disturbed`` flag the finish sets once the rest of its round is measured; its samples are
written in the same transaction that finishes it, so nothing measured is lost or half-stored.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, MetaData, String, Text
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class TrialState:
    RUNNING = "running"
    COMPLETE = "complete"  # measured and within every limit
    INFEASIBLE = "infeasible"  # measured, broke a limit (``violated`` says which)
    FAILED = "failed"  # the server did not start or could not be measured
    INTERRUPTED = "interrupted"  # the tuner died mid-trial; measured again on resume

    FINISHED = (COMPLETE, INFEASIBLE, FAILED)


class Study(Base):
    __tablename__ = "autotune_studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    server_kind: Mapped[str] = mapped_column(String(40))
    strategy: Mapped[str] = mapped_column(String(60))
    seed: Mapped[int] = mapped_column(Integer)
    trials_budget: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, object]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(20), default="running")
    recommendation: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)
    # The tuner that owns the study now (autotune.lease): a second tuner is refused while the
    # owner's heartbeat is fresh and, on the same host, its process lives.
    owner_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    owner_host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    owner_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    owner_create_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    owner_since: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    trials: Mapped[list[Trial]] = relationship(back_populates="study", lazy="raise")


class Trial(Base):
    __tablename__ = "autotune_trials"
    __table_args__ = (UniqueConstraint("study_id", "number", name="uq_trial_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("autotune_studies.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    phase: Mapped[str] = mapped_column(String(20))  # search | finish | verify
    state: Mapped[str] = mapped_column(String(20))
    params: Mapped[dict[str, object]] = mapped_column(JSON)
    config_key: Mapped[str] = mapped_column(String(400), index=True)
    objective: Mapped[float | None] = mapped_column(Float, nullable=True)  # tokens/s
    # Requests measured relative to the spec's usual number; replays weigh readings by it.
    effort: Mapped[float] = mapped_column(Float, default=1.0, server_default="1.0")
    feasible: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    violated: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    summary: Mapped[list[dict[str, object]] | None] = mapped_column(JSON, nullable=True)
    launch_argv: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    server_log_excerpt: Mapped[str | None] = mapped_column(Text, nullable=True)
    launch_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    server_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    server_create_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # Finish and verify: the interleaved round this launch measured (same prompts for every
    # finalist of a round), and whether outside load disturbed it (then it was measured again).
    round: Mapped[int | None] = mapped_column(Integer, nullable=True)
    disturbed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)

    study: Mapped[Study] = relationship(back_populates="trials", lazy="raise")
    samples: Mapped[list[Sample]] = relationship(back_populates="trial", lazy="raise")


class Sample(Base):
    __tablename__ = "autotune_samples"

    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("autotune_trials.id"), index=True)
    round: Mapped[int] = mapped_column(Integer, default=0)
    concurrency: Mapped[int] = mapped_column(Integer)
    prompt_index: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(80))
    warmup: Mapped[bool] = mapped_column(Boolean)
    started_s: Mapped[float] = mapped_column(Float)
    e2e_s: Mapped[float] = mapped_column(Float)
    ttft_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    tpot_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    generated_tokens: Mapped[int] = mapped_column(Integer)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    draft_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    draft_accepted: Mapped[int | None] = mapped_column(Integer, nullable=True)
    server_tokens_per_second: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    retried_error: Mapped[str | None] = mapped_column(Text, nullable=True)

    trial: Mapped[Trial] = relationship(back_populates="samples", lazy="raise")


class Agreement(Base):
    """How often greedy outputs under one KV / flash-attention setting equal the reference's
    (f16 KV, no drafting, the server's defaults), measured once per study and setting."""

    __tablename__ = "autotune_agreement"
    __table_args__ = (UniqueConstraint("study_id", "setting", name="uq_agreement_setting"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("autotune_studies.id"))
    setting: Mapped[str] = mapped_column(String(120))
    compared: Mapped[int] = mapped_column(Integer)
    identical: Mapped[int] = mapped_column(Integer)
    mean_edit_distance: Mapped[float] = mapped_column(Float)
    first_divergences: Mapped[list[int | None]] = mapped_column(JSON)
    measured_at: Mapped[datetime] = mapped_column(DateTime)

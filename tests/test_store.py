from pathlib import Path

import pytest
from sqlalchemy import inspect

from autotune.objective import Evaluation
from autotune.measurements import RequestSample
from autotune.space import SpecConfig
from autotune.store import repository as repo
from autotune.store.models import TrialState
from autotune.store.session import VERSION_TABLE, open_store


def study(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = open_store(str(tmp_path / "r.db"))
    record = repo.create_study(store, name="s", server_kind="llama.cpp", strategy="tpe",
                               seed=0, trials_budget=3, spec={})
    return store, record


def test_migrations_create_tables_with_our_version_table(tmp_path: Path) -> None:
    store, _ = study(tmp_path)
    tables = set(inspect(store.engine).get_table_names())
    assert {"autotune_studies", "autotune_trials", "autotune_samples", VERSION_TABLE} <= tables
    assert "alembic_version" not in tables  # leaves room for Optuna's own storage
    open_store(str(tmp_path / "r.db"))  # re-opening an up-to-date store is a no-op


def test_trial_and_samples_are_stored_together_and_final(tmp_path: Path) -> None:
    store, record = study(tmp_path)
    trial_id, number = repo.start_trial(store, record.id, phase="search",
                                        config=SpecConfig("ngram-mod", 4), launch_argv=["srv"])
    sample = RequestSample(prompt_index=0, label="code", concurrency=1, warmup=False,
                           started_s=0.0, e2e_s=1.0, ttft_s=0.1, tpot_s=0.02,
                           generated_tokens=40, draft_tokens=10, draft_accepted=8)
    evaluation = Evaluation(objective=40.0, feasible=True, violated=[], levels=[])
    repo.finish_trial(store, trial_id, state=TrialState.COMPLETE, evaluation=evaluation,
                      samples=[(0, sample)])
    trial = repo.get_trial(store, trial_id)
    assert number == 0 and trial.objective == 40.0 and trial.config.draft_max == 4
    rows = repo.trial_samples(store, trial_id)
    assert rows[0]["generated_tokens"] == 40 and rows[0]["draft_accepted"] == 8
    with pytest.raises(ValueError, match="finished trials are final"):
        repo.finish_trial(store, trial_id, state=TrialState.FAILED)


def test_interrupted_trials_are_marked_and_their_servers_returned(tmp_path: Path) -> None:
    store, record = study(tmp_path)
    trial_id, _ = repo.start_trial(store, record.id, phase="search", config=SpecConfig(),
                                   launch_argv=["srv"])
    repo.record_server(store, trial_id, pid=12345, create_time=1.0)
    assert repo.interrupt_running(store, record.id) == [(12345, 1.0)]
    assert repo.get_trial(store, trial_id).state == TrialState.INTERRUPTED
    assert repo.interrupt_running(store, record.id) == []

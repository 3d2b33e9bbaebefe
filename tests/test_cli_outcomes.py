"""Honest outcomes through the CLI: a baseline that broke a limit does not anchor ratios
silently, and a `verify` that cannot settle says so with its own exit code (3), not
"DISAGREES". The verify test tunes the SIMULATION (autotune-sim-server), as plumbing only."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import tomli_w
from typer.testing import CliRunner

from autotune.cli import app
from autotune.objective import Evaluation, LevelSummary
from autotune.space import BASELINE, SpecConfig
from autotune.store import repository
from autotune.store.models import TrialState
from autotune.store.session import open_store
from tests.test_sim_server import sim_spec

runner = CliRunner()


def level(tokens_per_second: float, ttft_p95_ms: float) -> LevelSummary:
    return LevelSummary(concurrency=1, requests=4, errors=0, tokens_per_second=tokens_per_second,
                        decode_tokens_per_second=tokens_per_second, ttft_p95_ms=ttft_p95_ms,
                        tpot_p95_ms=20.0, e2e_p95_ms=900.0, acceptance=None,
                        per_position_acceptance=[])


def test_show_says_when_the_baseline_broke_a_limit(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "results.db"))
    study = repository.create_study(store, name="hung-baseline", server_kind="llama.cpp",
                                    strategy="grid", seed=0, trials_budget=2, spec={})
    measured = [
        (BASELINE, Evaluation(14.9, False, ["ttft_p95_ms 9000 > 2000"], [level(14.9, 9000)])),
        (SpecConfig("ngram-mod", 8), Evaluation(324.0, True, [], [level(324.0, 80)])),
    ]
    for config, evaluation in measured:
        trial_id, _ = repository.start_trial(store, study.id, phase="search", config=config,
                                             launch_argv=[])
        state = TrialState.COMPLETE if evaluation.feasible else TrialState.INFEASIBLE
        repository.finish_trial(store, trial_id, state=state, evaluation=evaluation)
    result = runner.invoke(app, ["show", "--store", str(tmp_path / "results.db")])
    assert result.exit_code == 0, result.stderr
    assert "x21.74" in result.stdout  # the ratio is still shown ...
    assert ("'vs base' is against a baseline launch that broke a limit "
            "(ttft_p95_ms 9000 > 2000); read the ratios with care") in result.stdout  # ... flagged


def test_verify_that_cannot_settle_is_inconclusive_exit_3(
        write_spec: Callable[..., Path], tmp_path: Path, free_port: int) -> None:
    spec = sim_spec(write_spec, tmp_path, free_port)
    assert runner.invoke(app, ["tune", str(spec)]).exit_code == 0
    # Two rounds at alpha 1e-6 cannot show any lead (t critical value ~300,000 at one degree
    # of freedom), so the re-measured winner is "unproven", whatever the machine's noise.
    data = tomllib.loads(spec.read_text())
    data["finish"]["alpha"] = 1e-6
    spec.write_text(tomli_w.dumps(data))
    result = runner.invoke(app, ["verify", str(spec), "--rounds", "2"])
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert "INCONCLUSIVE: 2 rounds could not settle" in result.stdout
    assert "DISAGREES" not in result.stdout
    assert "warning: 2 rounds can show only very large differences" in result.stdout

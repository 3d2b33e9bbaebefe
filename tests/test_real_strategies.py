"""Every registered strategy tunes the real llama-server: the "Start here" study, made small
(a drafter made from the real model, n-gram lookup, two K-cache types)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autotune.cli import app
from autotune.config import load_spec
from autotune.space import SpecConfig
from tests.test_strategies import STRATEGIES

pytestmark = pytest.mark.server
TRIALS = 5


@pytest.mark.parametrize("name", STRATEGIES)
def test_strategy_tunes_the_real_server(name: str, write_spec: Callable[..., Path],
                                        tmp_path: Path, free_port: int,
                                        real_drafter: str) -> None:
    spec_path = write_spec(
        server={"port": free_port},
        space={"methods": ["none", "ngram-mod", "draft-simple"],
               "draft_max": {"low": 1, "high": 4}, "p_min": {"low": 0.0, "high": 0.5, "step": 0.5},
               "drafters": [real_drafter], "cache_type_k": ["f16", "q8_0"],
               "cache_type_v": ["f16"]},
        search={"strategy": name, "trials": TRIALS},
        finish={"finalists": 1, "rounds": 2, "requests_per_round": 1},
    )
    result = CliRunner().invoke(app, ["tune", str(spec_path)])
    assert result.exit_code == 0, result.stderr
    assert "launch command:" in result.stdout

    space = load_spec(spec_path).space.to_space()
    with sqlite3.connect(tmp_path / "results.db") as db:
        rows = db.execute("select params, state, effort from autotune_trials "
                          "where phase='search'").fetchall()
        stored = db.execute("select recommendation from autotune_studies").fetchone()[0]
    assert len(rows) == TRIALS
    assert {state for _, state, _ in rows} <= {"complete", "infeasible"}
    for params, _, effort in rows:
        assert space.contains(SpecConfig.from_params(json.loads(params))) and effort > 0
    assert json.loads(stored)["command_shell"]

"""The quality guard on the real llama-server: every KV setting a study tries is compared with
the reference's greedy outputs, shown in the table, and `max_quality_loss = 0` keeps every
setting that changed an output out of the recommendation."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autotune.cli import app

pytestmark = pytest.mark.server
runner = CliRunner()
MIXED = Path(__file__).resolve().parents[1] / "examples" / "workloads" / "mixed.jsonl"


def test_max_quality_loss_zero_keeps_lossy_caches_out(write_spec: Callable[..., Path],
                                                      tmp_path: Path) -> None:
    spec = write_spec(
        space={"methods": ["none", "ngram-mod"], "draft_max": {"low": 8, "high": 8},
               "cache_type_k": ["f16", "q8_0"], "cache_type_v": ["f16", "q8_0"]},
        workload={"files": [str(MIXED)], "requests": 2, "warmup_requests": 1,
                  "quality_prompts": 12},
        limits={"max_quality_loss": 0.0},
        search={"strategy": "grid", "trials": 8},
    )
    out = tmp_path / "rec.json"
    result = runner.invoke(app, ["tune", str(spec), "--json", str(out)])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    with sqlite3.connect(tmp_path / "results.db") as db:
        rows = dict(db.execute("select setting, identical from autotune_agreement"))
    # Every non-reference KV setting the grid tried was compared, once.
    assert set(rows) == {"kv q8_0/f16 fa-auto", "kv f16/q8_0 fa-on", "kv q8_0/q8_0 fa-on"}
    # Measured on this build: the q8_0 K and V cache changes some of the 12 greedy answers.
    assert rows["kv q8_0/q8_0 fa-on"] < 12
    recommendation = json.loads(out.read_text())
    params = recommendation["params"]
    lossy = [s for s, same in rows.items() if same < 12]
    chosen = f"kv {params['cache_type_k']}/{params['cache_type_v']} fa-{params['flash_attn']}"
    assert chosen not in lossy, recommendation
    assert "quality_loss" in result.stdout  # the table names the limit those settings broke
    assert f"{rows['kv q8_0/q8_0 fa-on']}/12" in result.stdout  # and shows the agreement
    assert " ref " in result.stdout

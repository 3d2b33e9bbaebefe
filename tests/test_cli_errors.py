"""Bad input through the CLI: one line naming what was wrong and how to fix it, exit 2, no
traceback, and nothing created or lost. None of these launches a server."""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autotune.cli import app

runner = CliRunner()


def one_line_error(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("autotune: error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


def test_json_into_a_missing_folder_is_refused_before_any_launch(
        write_spec: Callable[..., Path], tmp_path: Path) -> None:
    spec = write_spec()
    line = one_line_error(["tune", str(spec), "--json", str(tmp_path / "nope" / "rec.json")])
    assert "does not exist" in line
    assert not (tmp_path / "results.db").exists()


def test_a_lone_surrogate_in_the_workload_is_one_line(write_spec: Callable[..., Path],
                                                      tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi \\ud800"}]}\n')
    spec = write_spec(workload={"files": [str(bad)]})
    for command in ("check", "tune"):
        line = one_line_error([command, str(spec)])
        assert "lone surrogate" in line and "line 1" in line


def test_a_strategy_that_cannot_run_here_is_refused_before_the_study(
        write_spec: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # as if PyTorch were not installed
    spec = write_spec()
    line = one_line_error(["tune", str(spec), "--strategy", "gp"])
    assert "torch" in line.lower()
    assert not (tmp_path / "results.db").exists()  # no study row that would demand --resume


def test_check_refuses_an_unknown_strategy(write_spec: Callable[..., Path]) -> None:
    spec = write_spec(search={"strategy": "annealing"})
    assert "not registered" in one_line_error(["check", str(spec)])


def test_show_on_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    assert "no results database" in one_line_error(["show", "--store", str(missing)])
    assert not missing.exists()


def test_verify_before_any_tune_creates_nothing(write_spec: Callable[..., Path],
                                                tmp_path: Path) -> None:
    spec = write_spec()
    assert "no results database" in one_line_error(["verify", str(spec)])
    assert not (tmp_path / "results.db").exists()


def test_show_on_a_database_without_studies_says_so(tmp_path: Path) -> None:
    from autotune.store.session import open_store

    empty = tmp_path / "empty.db"
    open_store(str(empty))
    line = one_line_error(["show", "--store", str(empty)])
    assert "no study in" in line and "None" not in line


def test_a_misspelt_key_names_the_closest_valid_one(write_spec: Callable[..., Path]) -> None:
    spec = write_spec(space={"draft_maxx": {"low": 1, "high": 2}})
    assert "did you mean 'draft_max'" in one_line_error(["check", str(spec)])


def test_a_directory_as_model_says_so(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    spec = write_spec(server={"model": str(tmp_path)})
    assert "is a directory" in one_line_error(["check", str(spec)])


def test_a_file_that_is_not_gguf_is_refused_before_launch(write_spec: Callable[..., Path],
                                                          tmp_path: Path) -> None:
    text = tmp_path / "drafter.gguf"
    text.write_text("not a model\n")
    spec = write_spec(space={"methods": ["none", "draft-simple"], "drafters": [str(text)]})
    for command in ("check", "tune"):
        assert "is not a GGUF file" in one_line_error([command, str(spec)])


def test_pinned_flash_attention_off_conflicts_with_a_quantized_v_cache(
        write_spec: Callable[..., Path]) -> None:
    spec = write_spec(space={"cache_type_v": ["q8_0"], "flash_attn": ["off"]})
    line = one_line_error(["check", str(spec)])
    assert "needs flash attention on" in line and "space.flash_attn" in line


def test_resume_of_a_study_that_does_not_exist_names_the_ones_that_do(
        write_spec: Callable[..., Path], tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    spec = write_spec()
    with sqlite3.connect(db):
        pass  # an empty database: migrations run, no study
    line = one_line_error(["tune", str(spec), "--resume", "--name", "does-not-exist"])
    assert "no study 'does-not-exist'" in line and "studies there: none" in line
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from autotune_studies").fetchone()[0] == 0


def test_a_file_that_is_not_a_database_is_one_line_with_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "results.db"
    bad.write_text("not sqlite\n")
    line = one_line_error(["show", "--store", str(bad)])
    assert "file is not a database" in line and "choose another path" in line
    assert "sqlalche.me" not in line and "[SQL:" not in line


@pytest.mark.parametrize("where", ["chmod-555-folder", "sysfs"])
def test_a_folder_that_cannot_be_written_is_one_line_with_the_fix(
        where: str, write_spec: Callable[..., Path], tmp_path: Path) -> None:
    if where == "chmod-555-folder":
        if os.geteuid() == 0:
            pytest.skip("root writes into a mode-555 folder; the sysfs case covers root")
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o555)
    else:
        folder = Path("/sys")  # exists everywhere on Linux; nobody, root included, creates files in it
    line = one_line_error(["tune", str(write_spec()), "--store", str(folder / "results.db")])
    assert "is not writable" in line and "choose another path" in line
    assert not (folder / "results.db").exists()


def test_gate_bad_input_is_one_line(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    spec = write_spec()
    assert "no setup to gate" in one_line_error(["gate", "record", str(spec)])
    pinned = write_spec("pinned.toml", gate={"setup": {"method": "ngram-mod", "draft_max": 8}})
    missing = tmp_path / "nope.json"
    assert "gate baseline not found" in one_line_error(["gate", "check", str(missing), str(pinned)])
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert "not a gate baseline" in one_line_error(["gate", "check", str(garbage), str(pinned)])
    other = tmp_path / "other.json"
    other.write_text('{"some": "json"}')
    assert "not an autotune gate baseline" in one_line_error(
        ["gate", "check", str(other), str(pinned)])
    assert "--binary-a needs --ab" in one_line_error(
        ["gate", "check", str(other), str(pinned), "--binary-a", sys.executable])
    bad_setup = write_spec("bad.toml", gate={"setup": {"method": "warp-drive"}})
    assert "gate.setup: not a setup" in one_line_error(["gate", "record", str(bad_setup)])
    assert "--out" in one_line_error(["gate", "record", str(pinned), "--out",
                                      str(tmp_path / "no" / "such" / "b.json")])


def test_verify_and_show_of_a_study_that_does_not_exist_name_the_ones_that_do(
        write_spec: Callable[..., Path], tmp_path: Path) -> None:
    from autotune.store import repository as repo
    from autotune.store.session import open_store

    db = tmp_path / "results.db"
    store = open_store(str(db))
    repo.create_study(store, name="kept", server_kind="llama-cpp", strategy="random", seed=0,
                      trials_budget=1, spec={})
    spec = write_spec()
    line = one_line_error(["verify", str(spec), "--name", "nope"])
    assert "no study 'nope'" in line and "studies there: kept" in line
    line = one_line_error(["verify", str(spec), "--name", "kept"])
    assert "no recommendation" in line and "--resume" in line
    for flag in ("--study", "--name"):  # tune and verify say --name; show takes both
        line = one_line_error(["show", "--store", str(db), flag, "nope"])
        assert "no study 'nope'" in line and "kept" in line


def test_a_missing_server_binary_is_refused_before_the_study_exists(
        write_spec: Callable[..., Path], tmp_path: Path) -> None:
    """Once, the two failed baseline launches left a study row, and the rerun with the path
    fixed was refused with 'already exists; continue it with --resume'."""
    spec = write_spec(server={"binary": str(tmp_path / "no-such-server")},
                      gate={"setup": {"method": "ngram-mod", "draft_max": 4}})
    result = runner.invoke(app, ["tune", str(spec)])
    line = one_line_error(["tune", str(spec)])
    assert "server binary not found" in line and "set server.binary" in line
    # Refused before anything is written or announced: no database, no study header.
    assert not (tmp_path / "results.db").exists()
    assert "study " not in result.stdout, result.stdout
    assert "server binary not found" in one_line_error(["check", str(spec)])  # as tune would
    line = one_line_error(["gate", "record", str(spec), "--out", str(tmp_path / "b.json")])
    assert "server binary not found" in line
    assert not (tmp_path / "results.db").exists()  # it used to hold an empty record study

"""Behaviour against the real llama-server with the real Gemma 3 270M model."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from autotune.backends import LaunchSettings, get_backend
from autotune.cli import app
from autotune.errors import LaunchError
from autotune.launcher import start_server, wait_healthy
from autotune.space import SpecConfig
from tests.conftest import server_processes

pytestmark = pytest.mark.server
runner = CliRunner()


def run_cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code: int, stderr: str, expected: str) -> None:
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("autotune: error: ")
    assert expected in lines[0]
    assert "Traceback" not in stderr


def test_launch_measure_stop(real_binary: str, real_model: str, tmp_path: Path,
                             free_port: int) -> None:
    backend = get_backend("llama.cpp")
    settings = LaunchSettings(real_binary, real_model, "127.0.0.1", free_port, 1024, 1, 2)
    argv = backend.launch_argv(settings, SpecConfig("ngram-mod", 4))
    server = start_server(argv, base_url=f"http://127.0.0.1:{free_port}",
                          log_path=tmp_path / "server.log")
    try:
        seconds = wait_healthy(server, health_path="/health", timeout_s=60,
                               error_line=backend.startup_error)
        assert seconds < 60
        assert httpx.get(f"http://127.0.0.1:{free_port}/health").json()["status"] == "ok"
    finally:
        server.stop()
    assert server.popen.poll() is not None
    assert not any(p.pid == server.pid for p in server_processes())
    assert (tmp_path / "server.log").stat().st_size > 0


def test_failed_start_quotes_the_servers_error_line(real_binary: str, real_model: str,
                                                    tmp_path: Path, free_port: int) -> None:
    backend = get_backend("llama.cpp")
    settings = LaunchSettings(real_binary, real_model, "127.0.0.1", free_port, 1024, 1,
                              extra_args=("--cache-type-v", "q8_0", "--flash-attn", "off"))
    server = start_server(backend.launch_argv(settings, SpecConfig()),
                          base_url=f"http://127.0.0.1:{free_port}", log_path=tmp_path / "s.log")
    with pytest.raises(LaunchError) as info:
        wait_healthy(server, health_path="/health", timeout_s=60, error_line=backend.startup_error)
    server.stop()
    assert "quantized V cache requires flash_attn" in str(info.value)


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"server": {"model": "/nonexistent/model.gguf"}}, "model file not found: /nonexistent"),
        ({"space": {"methods": ["none", "draft-simple"], "drafters": ["/missing/d.gguf"]}},
         "drafter file not found: /missing/d.gguf"),
        ({"space": {"cache_type_k": ["q3_0"]}}, "unknown KV cache type 'q3_0'"),
        ({"space": {"draft_max": {"low": -1, "high": 4}}}, "space.draft_max.low"),
        ({"search": {"strategy": "anneal", "trials": 2}}, "strategy 'anneal' is not registered"),
    ],
)
def test_bad_input_gets_one_clear_line(write_spec: Callable[..., Path], sections: dict,
                                       expected: str) -> None:
    code, _, stderr = run_cli("tune", str(write_spec(**sections)))
    assert_one_line_error(code, stderr, expected)


@pytest.mark.parametrize(("content", "expected"), [
    ("", "has no prompts"),
    ('{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n', "line 2: not valid JSON"),
])
def test_bad_workload_gets_one_clear_line(write_spec: Callable[..., Path], tmp_path: Path,
                                          content: str, expected: str) -> None:
    workload = tmp_path / "bad.jsonl"
    workload.write_text(content)
    code, _, stderr = run_cli("tune", str(write_spec(workload={"files": [str(workload)]})))
    assert_one_line_error(code, stderr, expected)


def test_port_already_taken(write_spec: Callable[..., Path], real_binary: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, stderr = run_cli("tune", str(write_spec(server={"port": port})))
    assert_one_line_error(code, stderr, f"port {port} on 127.0.0.1 is already in use")


def test_server_that_exits_at_start(write_spec: Callable[..., Path], real_binary: str) -> None:
    spec = write_spec(server={"extra_args": ["--draft-max", "3"]})
    code, _, stderr = run_cli("tune", str(spec))
    assert_one_line_error(code, stderr, "server exited at start with code")
    assert "draft" in stderr.lower()  # the server's own line, naming the flag
    assert not server_processes()


def test_study_end_to_end(write_spec: Callable[..., Path], tmp_path: Path, free_port: int,
                          real_binary: str) -> None:
    spec = write_spec(server={"port": free_port})
    out = tmp_path / "rec.json"
    code, stdout, stderr = run_cli("tune", str(spec), "--json", str(out))
    assert code == 0, stderr
    assert "launch command:" in stdout and "per workload class" in stdout
    recommendation = json.loads(out.read_text())
    assert recommendation["baseline_tokens_per_second"] > 0

    db = sqlite3.connect(tmp_path / "results.db")
    states = db.execute("select state from autotune_trials where phase='search'").fetchall()
    assert len(states) == 3 and {s for (s,) in states} <= {"complete", "infeasible"}
    measured = db.execute("select count(*) from autotune_samples where warmup=0").fetchone()[0]
    assert measured >= 3 * 2
    finish = db.execute("select count(*) from autotune_trials where phase='finish'").fetchone()[0]
    assert finish == 4  # one finalist + the baseline, two rounds, one launch each

    # The printed command, run as printed, starts a server that answers /health.
    argv = shlex.split(recommendation["command_shell"])
    assert argv[argv.index("--port") + 1] == str(free_port)
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{free_port}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("the recommended command did not start a healthy server")
    finally:
        server.terminate()
        server.wait(timeout=10)

    code, stdout, _ = run_cli("verify", str(spec), "--rounds", "2")
    assert "re-measured winner:" in stdout and code in (0, 1, 3)
    code, stdout, _ = run_cli("show", "--store", str(tmp_path / "results.db"))
    assert code == 0 and "recommended:" in stdout


def finished_search_trials(db_path: Path) -> int:
    if not db_path.exists():
        return 0
    try:
        with sqlite3.connect(db_path) as db:
            return int(db.execute(
                "select count(*) from autotune_trials where phase='search' "
                "and state in ('complete','infeasible','failed')").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_sigkill_then_resume(write_spec: Callable[..., Path], tmp_path: Path,
                             real_binary: str) -> None:
    spec = write_spec(search={"strategy": "tpe", "trials": 5}, finish={"finalists": 0},
                      space={"methods": ["none", "ngram-mod"], "draft_max": {"low": 1, "high": 8},
                             "cache_type_k": ["f16"], "cache_type_v": ["f16"]})
    db_path = tmp_path / "results.db"
    command = [sys.executable, "-m", "autotune.cli", "tune", str(spec)]
    tuner = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while finished_search_trials(db_path) < 2 and time.monotonic() < deadline:
        assert tuner.poll() is None, tuner.stderr.read() if tuner.stderr else ""
        time.sleep(0.2)
    time.sleep(1.0)  # land inside the next trial
    os.kill(tuner.pid, signal.SIGKILL)
    tuner.wait()
    # The kernel tells the server's supervisor, which TERMs its group (KILL after 3 s).
    deadline = time.monotonic() + 15
    while server_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not server_processes(), "a llama-server outlived the killed tuner"
    before = finished_search_trials(db_path)
    assert 2 <= before < 5

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming: " in resumed.stdout
    with sqlite3.connect(db_path) as db:
        rows = db.execute("select number, state, params from autotune_trials "
                          "where phase='search' order by number").fetchall()
    finished = [r for r in rows if r[1] in ("complete", "infeasible", "failed")]
    assert len(finished) == 5  # the budget adds up: nothing lost, nothing repeated
    assert len({r[2] for r in finished}) == 5
    assert all(r[1] in ("complete", "infeasible", "failed", "interrupted") for r in rows)
    assert not server_processes()

"""The decision on the real llama-server: knobs that reach the server, a baseline that survives
a failed start, a finalist retried once, and outside load that does not decide the outcome."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest
from typer.testing import CliRunner

from autotune.backends import LaunchSettings, get_backend
from autotune.cli import app
from autotune.launcher import free_port as launcher_free_port
from autotune.launcher import start_server, wait_healthy
from autotune.space import SpecConfig
from tests.conftest import TEST_MARK, server_processes

pytestmark = pytest.mark.server
runner = CliRunner()
FAULT_SERVER = Path(__file__).with_name("fault_injecting_server.py")
REPEAT = ("Repeat this text exactly three times, one copy per line: the quick brown fox jumps "
          "over the lazy dog near the river bank at dawn.")


def metrics_counters(base_url: str) -> dict[str, float]:
    text = httpx.get(base_url + "/metrics").text
    wanted = ("drafts", "draft_tokens", "accepted_tokens")
    values = {}
    for line in text.splitlines():
        for name in wanted:
            if line.startswith(f"llamacpp:spec_decode_num_{name}_total "):
                values[name] = float(line.split()[-1])
    return values


def drafted_per_draft(binary: str, model: str, config: SpecConfig, port: int,
                      tmp_path: Path) -> float:
    """Start ``config`` for real, send one repetitive request, return drafted tokens per draft
    from the server's own counters."""
    settings = LaunchSettings(binary=binary, model=model, host="127.0.0.1", port=port,
                              ctx_size=1024, parallel=1, threads=2)
    argv = get_backend("llama.cpp").launch_argv(settings, config)
    base_url = f"http://127.0.0.1:{port}"
    server = start_server(argv, base_url=base_url, log_path=tmp_path / f"{port}.log")
    try:
        wait_healthy(server, health_path="/health", timeout_s=60,
                     error_line=get_backend("llama.cpp").startup_error)
        httpx.post(base_url + "/v1/chat/completions", timeout=120, json={
            "messages": [{"role": "user", "content": REPEAT}], "max_tokens": 96,
            "temperature": 0})
        counters = metrics_counters(base_url)
    finally:
        server.stop()
    assert counters.get("drafts", 0) > 0, f"{config.describe()} never drafted"
    return counters["draft_tokens"] / counters["drafts"]


@pytest.mark.parametrize("method", ["ngram-mod", "ngram-map-k", "ngram-map-k4v", "draft-simple"])
def test_each_methods_draft_length_reaches_the_server(method: str, real_binary: str,
                                                      real_model: str, real_drafter: str,
                                                      tmp_path: Path, free_port: int) -> None:
    drafter = real_drafter if method == "draft-simple" else None
    p_min = 0.0 if drafter else None
    short = drafted_per_draft(real_binary, real_model, SpecConfig(method, 2, p_min, drafter),
                              free_port, tmp_path)
    # a port checked free, not free_port + 1 (another process held that once: "exiting due
    # to HTTP server error")
    long = drafted_per_draft(real_binary, real_model, SpecConfig(method, 8, p_min, drafter),
                             launcher_free_port(), tmp_path)
    assert short <= 2.0 + 1e-9
    assert long > short + 1.0  # the knob moved what the server reports


def test_p_min_reaches_the_server(real_binary: str, real_model: str, real_drafter: str,
                                  tmp_path: Path, free_port: int) -> None:
    # A drafter stops drafting at the first token it is less sure of than p-min.
    eager = drafted_per_draft(real_binary, real_model,
                              SpecConfig("draft-simple", 8, 0.0, real_drafter), free_port, tmp_path)
    picky = drafted_per_draft(real_binary, real_model,
                              SpecConfig("draft-simple", 8, 0.95, real_drafter),
                              launcher_free_port(), tmp_path)
    assert picky < eager


def test_n_min_reaches_the_server(real_binary: str, real_model: str, real_drafter: str,
                                  tmp_path: Path, free_port: int) -> None:
    # With a high p-min some drafts stop early; n-min drops the ones shorter than itself,
    # so every draft that reaches the verifier is at least that long.
    loose = drafted_per_draft(real_binary, real_model,
                              SpecConfig("draft-simple", 8, 0.9, real_drafter, draft_min=0),
                              free_port, tmp_path)
    floor = drafted_per_draft(real_binary, real_model,
                              SpecConfig("draft-simple", 8, 0.9, real_drafter, draft_min=6),
                              launcher_free_port(), tmp_path)
    assert floor >= 6.0 - 1e-9
    assert floor > loose  # the knob moved what the server reports


def test_the_drafters_cache_type_reaches_the_server(real_binary: str, real_model: str,
                                                    real_drafter: str, tmp_path: Path,
                                                    free_port: int) -> None:
    config = SpecConfig("draft-simple", 4, 0.0, real_drafter, flash_attn="on",
                        draft_cache_type="q8_0")
    # -lv 4: the server logs each context's cache types only at this verbosity
    settings = LaunchSettings(binary=real_binary, model=real_model, host="127.0.0.1",
                              port=free_port, ctx_size=1024, parallel=1, threads=2,
                              extra_args=("-lv", "4"))
    argv = get_backend("llama.cpp").launch_argv(settings, config)
    log = tmp_path / "draft-kv.log"
    server = start_server(argv, base_url=f"http://127.0.0.1:{free_port}", log_path=log)
    try:
        wait_healthy(server, health_path="/health", timeout_s=60,
                     error_line=get_backend("llama.cpp").startup_error)
    finally:
        server.stop()
    caches = [line for line in log.read_text(errors="replace").splitlines()
              if "llama_kv_cache" in line and " K (" in line]
    # the verifier's cache stays f16, the drafter's is q8_0: the server says so per context
    assert any("K (f16)" in line for line in caches), caches
    assert any("K (q8_0)" in line and "V (q8_0)" in line for line in caches), caches


def fault_spec(write_spec: Callable[..., Path], tmp_path: Path, real_binary: str,
               monkeypatch: pytest.MonkeyPatch, fail: str, die: str = "", workers: str = "",
               **sections: dict) -> Path:
    binary = tmp_path / "fault-injecting-llama-server"
    shutil.copy(FAULT_SERVER, binary)
    binary.chmod(0o755)
    monkeypatch.setenv("AUTOTUNE_FAULT_REAL", real_binary)
    monkeypatch.setenv("AUTOTUNE_FAULT_STATE", str(tmp_path / "faults"))
    monkeypatch.setenv("AUTOTUNE_FAULT_FAIL", fail)
    monkeypatch.setenv("AUTOTUNE_FAULT_DIE", die)
    monkeypatch.setenv("AUTOTUNE_FAULT_WORKERS", workers)
    return write_spec(server={"binary": str(binary)}, **sections)


def test_baseline_that_fails_its_first_start_is_measured_again(
        write_spec: Callable[..., Path], tmp_path: Path, real_binary: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    spec = fault_spec(write_spec, tmp_path, real_binary, monkeypatch, "baseline:1")
    out = tmp_path / "rec.json"
    result = runner.invoke(app, ["tune", str(spec), "--json", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "trying it once more" in result.stdout
    recommendation = json.loads(out.read_text())
    assert recommendation["baseline_tokens_per_second"] > 0
    assert "no interleaved re-measurement" not in recommendation["explanation"]
    with sqlite3.connect(tmp_path / "results.db") as db:
        states = [s for (s,) in db.execute(
            "select state from autotune_trials where phase='search' and params like "
            "'%\"method\": \"none\"%' order by number")]
    assert states[0] == "failed" and states[1] in ("complete", "infeasible")
    assert not server_processes()


def test_a_finalist_that_fails_a_round_is_launched_once_more(
        write_spec: Callable[..., Path], tmp_path: Path, real_binary: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Search: drafting starts 1 and 2; the finish's first drafting launch is start 3.
    spec = fault_spec(write_spec, tmp_path, real_binary, monkeypatch, "drafting:3")
    result = runner.invoke(app, ["tune", str(spec)])
    assert result.exit_code == 0, result.stderr
    assert "launching it once more" in result.stdout
    assert "dropped" not in result.stdout
    with sqlite3.connect(tmp_path / "results.db") as db:
        rows = db.execute("select state, round from autotune_trials "
                          "where phase='finish'").fetchall()
    assert ("failed", 0) in rows
    assert sum(state != "failed" for state, _ in rows) == 4  # 2 setups x 2 rounds, all measured


def test_a_server_that_dies_while_measured_is_stored_as_failed_with_its_reason(
        write_spec: Callable[..., Path], tmp_path: Path, real_binary: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    mixed = Path(__file__).resolve().parents[1] / "examples" / "workloads" / "mixed.jsonl"
    spec = fault_spec(write_spec, tmp_path, real_binary, monkeypatch, fail="", die="drafting:1",
                      workload={"files": [str(mixed)], "requests": 6, "warmup_requests": 1},
                      finish={"finalists": 0})
    result = runner.invoke(app, ["tune", str(spec)])
    assert result.exit_code == 0, result.stderr
    with sqlite3.connect(tmp_path / "results.db") as db:
        state, reason = db.execute(
            "select state, failure_reason from autotune_trials where phase='search' and "
            "params like '%ngram-mod%' order by number").fetchone()
    assert state == "failed"
    assert "exited with code" in reason and "injected crash" in reason


@contextmanager
def cpu_hog(seconds: float) -> Iterator[None]:
    """A bounded CPU hog this test starts and stops itself: one busy process per core, each
    ending on its own after ``seconds`` even if the test dies."""
    loop = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"
    procs = [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(os.cpu_count() or 2)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)


def finish_trials(db_path: Path) -> int:
    """Finish trials started so far (a row is written before its server launches)."""
    try:
        with sqlite3.connect(db_path) as db:
            return int(db.execute("select count(*) from autotune_trials where phase='finish'")
                       .fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def first_finish_number(db_path: Path) -> int:
    with sqlite3.connect(db_path) as db:
        return int(db.execute("select min(number) from autotune_trials where phase='finish'")
                   .fetchone()[0])


def finish_started(db_path: Path) -> bool:
    return finish_trials(db_path) > 0


def test_outside_load_does_not_decide_the_outcome(write_spec: Callable[..., Path],
                                                  tmp_path: Path, real_binary: str) -> None:
    sections = dict(
        space={"methods": ["none", "ngram-mod"], "draft_max": {"low": 8, "high": 8},
               "cache_type_k": ["f16"], "cache_type_v": ["f16"]},
        workload={"files": [str(Path(__file__).parents[1] / "examples/workloads/mixed.jsonl")],
                  "requests": 3, "warmup_requests": 1},
        search={"strategy": "grid", "trials": 2},
        finish={"finalists": 1, "rounds": 4, "max_rounds": 6, "requests_per_round": 3,
                "remeasure_rounds": 4},
    )
    # The tuner runs as its own process, as users run it: the hog is not one of its children.
    def tune(name: str, *, hog_in_finish: bool = False) -> tuple[int, str, str]:
        spec = write_spec(f"{name}.toml", store={"path": str(tmp_path / f"{name}.db")},
                          **sections)
        tuner = subprocess.Popen([sys.executable, "-m", "autotune.cli", "tune", str(spec),
                                  "--json", str(tmp_path / f"{name}.json")],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if hog_in_finish:  # the search is disturbed by our own noise anyway; hit the finish
            deadline = time.monotonic() + 300
            while not finish_started(tmp_path / f"{name}.db") and time.monotonic() < deadline:
                time.sleep(0.5)
            # The hog slows everything it meets (start-up 4 s -> 28-45 s, a request 1 s ->
            # 20 s), so a fixed stretch of load can end before the measured requests begin:
            # it stays until the first finish launch has answered its warm-up and one
            # measured request (two "total time" lines in its log), or the next launch began.
            db = tmp_path / f"{name}.db"
            logs = tmp_path / f"{name}.db.logs"
            with cpu_hog(150.0):
                deadline = time.monotonic() + 150
                while finish_trials(db) < 2 and time.monotonic() < deadline:
                    first = next(logs.glob(f"*/trial-{first_finish_number(db):03d}.log"), None)
                    if first and first.read_text(errors="replace").count("total time") >= 2:
                        break
                    time.sleep(0.5)
        stdout, stderr = tuner.communicate(timeout=600)
        return tuner.returncode, stdout, stderr

    code, quiet_out, stderr = tune("quiet")
    assert code == 0, stderr
    code, noisy_out, stderr = tune("noisy", hog_in_finish=True)
    assert code == 0, stderr
    quiet_rec = json.loads((tmp_path / "quiet.json").read_text())
    noisy_rec = json.loads((tmp_path / "noisy.json").read_text())
    same = noisy_rec["label"] == quiet_rec["label"]
    undecided = "too noisy to decide" in noisy_rec["explanation"] and noisy_rec["noise"]
    assert same or undecided, (quiet_out, noisy_out)
    assert "disturbed" in noisy_out  # the hog was seen and its rounds measured again
    assert not server_processes()


def test_when_nothing_meets_the_limits_it_says_so(write_spec: Callable[..., Path],
                                                  tmp_path: Path) -> None:
    spec = write_spec(limits={"ttft_p95_ms": 1})
    out = tmp_path / "rec.json"
    result = runner.invoke(app, ["tune", str(spec), "--json", str(out)])
    assert result.exit_code == 0, result.stderr
    recommendation = json.loads(out.read_text())
    assert recommendation["verdict"] == "none-feasible"
    assert "no measured setup met the limits" in recommendation["explanation"]
    assert "ttft_p95_ms" in recommendation["explanation"]  # names the limit it breaks
    assert "least-bad" in result.stdout


def test_sigterm_in_the_finish_stops_cleanly_and_says_so(write_spec: Callable[..., Path],
                                                         tmp_path: Path) -> None:
    spec = write_spec(finish={"finalists": 1, "rounds": 6, "max_rounds": 6,
                              "requests_per_round": 2})
    tuner = subprocess.Popen([sys.executable, "-m", "autotune.cli", "tune", str(spec)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not finish_started(tmp_path / "results.db") and time.monotonic() < deadline:
        assert tuner.poll() is None
        time.sleep(0.3)
    time.sleep(1.0)
    tuner.terminate()
    _, stderr = tuner.communicate(timeout=60)
    assert tuner.returncode == 143
    assert "interrupted; finished trials are stored, continue with --resume" in stderr
    assert "Traceback" not in stderr
    assert not server_processes()
    with sqlite3.connect(tmp_path / "results.db") as db:
        states = {s for (s,) in db.execute("select state from autotune_trials")}
    assert "running" not in states  # the trial in flight is marked, nothing half-written


def test_a_second_tuner_on_a_live_study_is_refused_and_the_first_finishes_intact(
        write_spec: Callable[..., Path], tmp_path: Path) -> None:
    spec = write_spec(search={"strategy": "grid", "trials": 4})
    command = [sys.executable, "-m", "autotune.cli", "tune", str(spec)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert first.poll() is None, first.communicate()[1]
        try:
            with sqlite3.connect(tmp_path / "results.db") as db:
                if db.execute("select count(*) from autotune_trials").fetchone()[0] >= 1:
                    break
        except sqlite3.OperationalError:
            pass
        time.sleep(0.2)
    second = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=120)
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pid {first.pid}" in lines[0] and "is being tuned" in lines[0]
    _, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr
    with sqlite3.connect(tmp_path / "results.db") as db:
        states = [s for (s,) in db.execute("select state from autotune_trials")]
    assert "interrupted" not in states and "running" not in states
    assert not server_processes()


@pytest.mark.parametrize("host", ["::1", "localhost"])
def test_ipv6_and_host_names_reach_the_server(write_spec: Callable[..., Path], tmp_path: Path,
                                              host: str) -> None:
    spec = write_spec(server={"host": host}, search={"strategy": "grid", "trials": 2},
                      finish={"finalists": 0})
    out = tmp_path / "rec.json"
    result = runner.invoke(app, ["tune", str(spec), "--json", str(out)])
    assert result.exit_code == 0, result.stderr
    with sqlite3.connect(tmp_path / "results.db") as db:
        states = [s for (s,) in db.execute("select state from autotune_trials")]
    assert states and all(s == "complete" for s in states), states
    assert f"--host {host}" in json.loads(out.read_text())["command_shell"]


def test_a_host_that_does_not_resolve_is_one_line(write_spec: Callable[..., Path]) -> None:
    spec = write_spec(server={"host": "no-such-host.invalid"})
    result = runner.invoke(app, ["tune", str(spec)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "does not resolve" in result.stderr


def marked_workers() -> list[psutil.Process]:
    """Worker processes of multi-process test servers that this test started."""
    mark = os.environ.get(TEST_MARK)
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if "fault-injecting-worker" not in (proc.info.get("cmdline") or []):
            continue
        try:
            if proc.environ().get(TEST_MARK) == mark:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_no_worker_of_a_multi_process_server_outlives_a_killed_tuner(
        write_spec: Callable[..., Path], tmp_path: Path, real_binary: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    spec = fault_spec(write_spec, tmp_path, real_binary, monkeypatch, fail="", workers="2")
    tuner = subprocess.Popen([sys.executable, "-m", "autotune.cli", "tune", str(spec)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(marked_workers()) < 2 and time.monotonic() < deadline:
        assert tuner.poll() is None
        time.sleep(0.2)
    assert len(marked_workers()) >= 2
    os.kill(tuner.pid, signal.SIGKILL)
    tuner.wait()
    deadline = time.monotonic() + 30
    while (marked_workers() or server_processes()) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not marked_workers(), "a worker of the server outlived the killed tuner"
    assert not server_processes(), "a llama-server outlived the killed tuner"

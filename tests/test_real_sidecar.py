"""The sidecar against the real llama-server, scraped by a real Prometheus (Debian's package):
live figures through Prometheus' HTTP API, every PromQL expression of the example Grafana
dashboard, a canary retune on POST /retune, real drift from a restart with lower synthetic
acceptance, and SIGTERM in the middle of a retune.

One long test, because each step needs the state the previous one built (a published study
gives the step-cost model the advice needs); it states in its messages which step failed."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from autotune.backends import get_backend
from autotune.launcher import ServerProcess, free_port, start_server, wait_healthy
from autotune.store import repository as repo
from autotune.store.models import TrialState
from autotune.store.session import open_store
from tests.conftest import marked_processes, server_processes

pytestmark = pytest.mark.server
DASHBOARD = Path(__file__).resolve().parents[1] / "examples" / "sidecar" / "grafana-dashboard.json"
HIGH = "0.98,0.96,0.94,0.92,0.9,0.88,0.86,0.84"  # synthetic unconditional acceptance
LOW = "0.5,0.2,0.05,0.02,0.01,0.01,0.01,0.01"
# Windows from the restart to the alarm. A window closes when it carries min_window_tokens,
# one 1-s scrape or several on a slower build, so the bound is counted in windows, not seconds.
DRIFT_WITHIN = 64
REFERENCE = 16
PROMPTS = [
    "Repeat this text exactly three times, one copy per line: the quick brown fox jumps over "
    "the lazy dog near the river bank at dawn.",
    "Rename x to y and return the code:\ndef f(x):\n    return x + x * x - x\n",
]


def start_production(binary: str, model: str, port: int, rates: str, log: Path) -> ServerProcess:
    argv = [binary, "-m", model, "--host", "127.0.0.1", "--port", str(port), "-c", "2048",
            "-np", "1", "-t", "2", "--metrics", "--spec-type", "ngram-mod",
            "--spec-ngram-mod-n-max", "8", "--spec-ngram-mod-n-min", "6",
            "--spec-synth-rates", rates]
    server = start_server(argv, base_url=f"http://127.0.0.1:{port}", log_path=log)
    wait_healthy(server, health_path="/health", timeout_s=60,
                 error_line=get_backend("llama.cpp").startup_error)
    return server


def llama_pid(server: ServerProcess) -> int:
    children = psutil.Process(server.pid).children(recursive=True)
    return next(p.pid for p in children if p.name() == "llama-server")


@contextlib.contextmanager
def traffic(base_url: str) -> Iterator[threading.Event]:
    """Requests one after another, as a steady production stream, while the yielded event
    is set. On these 2 cores a busy production server starves the canary (llama.cpp's
    threads spin), and the canary study rightly reports its rounds as disturbed: traffic
    pauses while a retune measures."""
    stop = threading.Event()
    flowing = threading.Event()
    flowing.set()

    def send() -> None:
        with httpx.Client(timeout=60) as client:
            turn = 0
            while not stop.is_set():
                if not flowing.wait(timeout=0.5):
                    continue
                with contextlib.suppress(httpx.HTTPError):
                    client.post(base_url + "/completion", json={
                        "prompt": PROMPTS[turn % len(PROMPTS)], "n_predict": 96,
                        "temperature": 0, "cache_prompt": False})
                turn += 1

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        yield flowing
    finally:
        stop.set()
        thread.join(timeout=90)


@contextlib.contextmanager
def prometheus(tmp_path: Path, targets: dict[str, str]) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the real Prometheus is required (Debian: apt-get install prometheus; the "
                    "README's test command installs it)")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    jobs = "".join(f"  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
                   for job, target in targets.items())
    config.write_text("global:\n  scrape_interval: 1s\nscrape_configs:\n" + jobs)
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        until(lambda: _ready(base), 60, "Prometheus did not become ready")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _ready(base: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(base + "/-/ready", timeout=2).status_code == 200
    return False


def last_window(log: str) -> int:
    """The number of the sidecar's latest logged live window (0 before the first)."""
    numbers = re.findall(r" window (\d+): ", log)
    return int(numbers[-1]) if numbers else 0


def until(check: Callable[[], Any], timeout_s: float, message: str, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    pytest.fail(message)


def query(base: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(base + "/api/v1/query", params={"query": expr}, timeout=10).json()
    assert response["status"] == "success", (expr, response)
    return list(response["data"]["result"])


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def test_sidecar_exports_advises_catches_drift_retunes_and_stops_cleanly(
        real_binary: str, real_model: str, write_spec: Callable[..., Path],
        tmp_path: Path) -> None:
    live_port, listen_port = free_port(), free_port()
    live_url = f"http://127.0.0.1:{live_port}"
    sidecar_url = f"http://127.0.0.1:{listen_port}"
    prompts = tmp_path / "repetitive.jsonl"  # the canary's workload: text n-grams can draft
    prompts.write_text("".join(json.dumps({"class": "code" if "def" in p else "chat",
                                           "max_tokens": 64, "messages": [
                                               {"role": "user", "content": p}]}) + "\n"
                               for p in PROMPTS))
    spec = write_spec(
        space={"methods": ["none", "ngram-mod"], "draft_max": {"low": 4, "high": 16, "step": 12}},
        search={"strategy": "grid", "trials": 3},
        workload={"files": [str(prompts)], "quality_prompts": 0},
        sidecar={"interval_s": 1.0, "reference_windows": REFERENCE, "min_window_tokens": 16})
    production = start_production(real_binary, real_model, live_port, HIGH,
                                  tmp_path / "live-high.log")
    sidecar_log = (tmp_path / "sidecar.log").open("wb")
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "autotune", "sidecar", str(spec), "--server", live_url,
         "--listen", f"127.0.0.1:{listen_port}", "--name", "prod"],
        stdout=sidecar_log, stderr=subprocess.STDOUT, cwd=tmp_path)

    def log_text() -> str:
        return (tmp_path / "sidecar.log").read_text()

    def figure(name: str, **labels: str) -> float | None:
        with contextlib.suppress(httpx.HTTPError):
            text = httpx.get(sidecar_url + "/metrics", timeout=5).text
            for line in text.splitlines():
                if line.startswith(name + ("{" if labels else " ")) and all(
                        f'{k}="{v}"' in line for k, v in labels.items()):
                    return float(line.split()[-1])
        return None

    try:
        with traffic(live_url) as flowing, prometheus(tmp_path, {"sidecar": f"127.0.0.1:{listen_port}",
                                                      "llama": f"127.0.0.1:{live_port}"}) as prom:
            # 1. POST /retune: a bounded study on a canary; production is left alone.
            pid_before = llama_pid(production)
            until(lambda: _ready_sidecar(sidecar_url), 60, "the sidecar did not answer")
            until(lambda: figure("autotune_live_draft_acceptance_ratio") is not None, 60,
                  f"no live window with drafts:\n{log_text()}")
            flowing.clear()
            answer = httpx.post(sidecar_url + "/retune", timeout=10)
            assert answer.status_code == 202, answer.text
            until(lambda: httpx.get(sidecar_url + "/recommendation").status_code == 200, 420,
                  f"no recommendation after the retune:\n{log_text()}")
            flowing.set()
            published = httpx.get(sidecar_url + "/recommendation").json()
            assert published["command"][0].endswith("llama-server"), published
            assert llama_pid(production) == pid_before, "the retune touched production"
            assert figure("autotune_retune_running") == 0.0

            # 2. Real Prometheus scrapes the sidecar: live acceptance and tokens/s by its API.
            until(lambda: figure("autotune_advice_best_draft_max") is not None, 120,
                  f"no draft-max advice:\n{log_text()}")
            until(lambda: query(prom, "autotune_live_draft_acceptance_ratio"), 60,
                  "Prometheus has no live acceptance")
            until(lambda: query(prom, "autotune_live_decode_tokens_per_second"), 60,
                  "Prometheus has no live tokens/s")
            # The window right after the retune can hold a handful of drafts (7 of 16 accepted
            # was seen once); the synthetic rates put a full window near 0.9.
            def live_acceptance() -> float:
                return float(query(prom, "autotune_live_draft_acceptance_ratio")[0]["value"][1])

            seen: list[float] = []

            def plausible() -> bool:
                seen.append(live_acceptance())
                return 0.5 < seen[-1] <= 1.0

            if not any(plausible() or time.sleep(1.0) for _ in range(60)):
                pytest.fail(f"live acceptance in Prometheus stayed outside 0.5..1: {seen}")
            # ... and every expression of the Grafana dashboard returns data.
            for expr in dashboard_exprs():
                until(lambda expr=expr: query(prom, expr), 90, f"no data for {expr!r}")

            # 3. An unchanged server raises no alarm once "normal" is learned.
            until(lambda: figure("autotune_drift_threshold",
                                 signal="acceptance") is not None, 120,
                  f"the drift reference was never learned:\n{log_text()}")
            time.sleep(2 * 8)  # two more blocks of windows
            assert "DRIFT" not in log_text(), log_text()
            best_high = figure("autotune_advice_best_draft_max")
            assert best_high is not None
            gain_high = figure("autotune_advice_expected_gain_ratio", quantile="0.5")

            # 4. Real drift: production restarts with lower synthetic acceptance.
            production.stop()
            production = start_production(real_binary, real_model, live_port, LOW,
                                          tmp_path / "live-low.log")
            window_at_restart = last_window(log_text())
            until(lambda: figure("autotune_drift_state", signal="acceptance") == -1.0
                  or last_window(log_text()) > window_at_restart + DRIFT_WITHIN, 900,
                  f"no window for 900 s after the restart:\n{log_text()}", every=2.0)
            alarm = re.search(r"DRIFT: acceptance moved down \(window (\d+)\)", log_text())
            assert alarm, f"no drift alarm within {DRIFT_WITHIN} windows:\n{log_text()}"
            assert int(alarm.group(1)) - window_at_restart <= DRIFT_WITHIN, log_text()
            def advised_shorter() -> bool:  # 0 (no drafting) is an answer, not a missing one
                advised = figure("autotune_advice_best_draft_max")
                if advised is None:
                    return False
                if best_high > 0:
                    return advised < best_high
                # The canary's step costs already advised no drafting at high acceptance (a
                # noisy retune can measure that), so nothing shorter exists: the predicted gain
                # of dropping the live draft-max must grow instead.
                gain = figure("autotune_advice_expected_gain_ratio", quantile="0.5")
                return (advised == 0 and gain is not None and gain_high is not None
                        and gain > gain_high)

            until(advised_shorter, 60,
                  f"the advice stayed at draft-max {best_high} after acceptance fell")

            # 5. SIGTERM while a retune's canary runs: no canary left, no half-written trial.
            assert httpx.post(sidecar_url + "/retune", timeout=10).status_code == 202
            until(lambda: _canaries(sidecar), 120, "the second retune started no canary")
            canaries = _canaries(sidecar)
            sidecar.send_signal(signal.SIGTERM)
            assert sidecar.wait(timeout=90) == 0, log_text()
            gone, alive = psutil.wait_procs(canaries, timeout=30)
            assert not alive, f"canaries left: {alive}"
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
        sidecar_log.close()
        production.stop()
    store = open_store(str(tmp_path / "results.db"))
    for study in repo.list_studies(store):
        states = {t.state for t in repo.list_trials(store, study.id)}
        assert TrialState.RUNNING not in states, (study.name, states)
    assert "sidecar stopped" in log_text()
    assert not server_processes()
    assert not [p for p in marked_processes(_mark()) if "autotune" in " ".join(p.cmdline())]


def _mark() -> str:
    import os

    from tests.conftest import TEST_MARK

    return os.environ[TEST_MARK]


def _ready_sidecar(base: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(base + "/healthz", timeout=2).status_code == 200
    return False


def _canaries(sidecar: subprocess.Popen[bytes]) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return [p for p in psutil.Process(sidecar.pid).children(recursive=True)
                if p.name() == "llama-server"]
    return []

"""The sidecar's parts without a server: advice maths, the drift watch fed scrapes, the
exporter's families and routes, the apply command, and the command's bad input."""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from autotune.backends import SpecCounters
from autotune.cli import app
from autotune.errors import SpecError
from autotune.live import Scrape
from autotune.sidecar.advice import (
    StepCost,
    advise,
    conditional_rates,
    fit_step_cost,
    predict,
    step_point,
)
from autotune.sidecar.exporter import Routes, SidecarCollector, SidecarSnapshot, serve
from autotune.sidecar.loop import Target
from autotune.sidecar.retune import apply_argv
from autotune.sidecar.watch import Watch

COST = StepCost(base_seconds=0.020, per_draft_token_seconds=0.006, points=3)


def counts(drafts: float, rate: float, positions: int) -> list[float]:
    """Accepted-per-position counts of drafts whose every token is accepted with ``rate``."""
    return [drafts * rate ** (i + 1) for i in range(positions)]


def test_step_cost_is_recovered_from_measured_setups() -> None:
    # decode speed of setups on the line 20 ms + 6 ms per drafted token
    points = []
    for length, acceptance in ((0, None), (2, 0.8), (4, 0.7), (8, 0.5)):
        seconds = 0.020 + 0.006 * length
        tokens = 1 + (acceptance or 0) * length
        point = step_point(tokens / seconds, acceptance, length or None)
        assert point is not None
        points.append(point)
    cost = fit_step_cost(points)
    assert cost is not None
    assert math.isclose(cost.base_seconds, 0.020, rel_tol=1e-6)
    assert math.isclose(cost.per_draft_token_seconds, 0.006, rel_tol=1e-6)
    assert fit_step_cost(points[:1]) is None  # one draft length cannot give a slope


def test_high_acceptance_advises_longer_drafts_and_low_acceptance_shorter() -> None:
    high = advise(1000, counts(1000, 0.95, 4), 4000, 4, COST)
    low = advise(1000, counts(1000, 0.25, 4), 4000, 4, COST)
    assert high is not None and low is not None
    assert high.best_draft_max > 4  # extrapolated beyond the observed positions
    assert low.best_draft_max < 4
    assert low.expected_gain > 0 and low.probability_better > 0.9
    assert low.gain_low <= low.expected_gain <= low.gain_high


@given(st.floats(0.05, 0.99), st.integers(1, 8), st.floats(0.001, 0.05))
def test_predicted_speed_is_finite_positive_and_no_drafting_is_the_base(
        rate: float, draft_max: int, per_token: float) -> None:
    cost = StepCost(0.02, per_token, 2)
    conditional = conditional_rates(100.0, counts(100.0, rate, draft_max))
    speed = predict(conditional, cost, 1.0, draft_max)
    assert math.isfinite(speed) and speed > 0
    assert math.isclose(predict(conditional, cost, 1.0, 0), 50.0)
    # more acceptance never predicts slower
    better = conditional_rates(100.0, counts(100.0, min(rate + 0.01, 1.0), draft_max))
    assert predict(better, cost, 1.0, draft_max) >= speed - 1e-9


def page(generated: float, seconds: float, drafted: float, accepted: float,
         drafts: float) -> SpecCounters:
    per_position = (accepted * 0.6, accepted * 0.4)
    return SpecCounters(drafts=drafts, draft_tokens=drafted, accepted_tokens=accepted,
                        generated_tokens=generated, decode_seconds=seconds,
                        accepted_per_position=per_position, present=True)


def stream(watch: Watch, speeds: list[float], acceptance: float, start: float = 0.0,
           counters: SpecCounters | None = None) -> tuple[list[str], SpecCounters, float]:
    """Feed one-second windows of 100 tokens each at the given decode speeds."""
    alarms = []
    now = start
    current = counters or SpecCounters(present=True)
    for speed in speeds:
        now += 1.0
        current = current.plus(page(100, 100 / speed, 100, 100 * acceptance, 25))
        alarms += [f"{a.signal}:{a.direction}" for a in watch.feed(Scrape(now, current))]
    return alarms, current, now


def test_a_stable_stream_stays_quiet_and_a_drop_is_caught_within_three_blocks() -> None:
    watch = Watch(reference_windows=24, min_window_tokens=16, cost=COST)
    rng = np.random.default_rng(3)
    stable = list(50 * np.exp(rng.normal(0, 0.05, 200)))
    alarms, counters, now = stream(watch, stable, 0.8)
    assert alarms == []
    assert watch.advice is not None and watch.advice.current_draft_max == 4  # 100 drafted / 25
    dropped = list(35 * np.exp(rng.normal(0, 0.05, 40)))
    alarms, _, _ = stream(watch, dropped, 0.8, now, counters)
    assert alarms and alarms[0] == "decode_tokens_per_second:down"
    first = watch.drift["decode_tokens_per_second"].alarm
    assert first is not None and first.window - 200 <= 24  # three blocks of eight


def test_windows_under_our_own_canary_are_not_judged() -> None:
    watch = Watch(reference_windows=8, min_window_tokens=16)
    _, counters, now = stream(watch, [50.0] * 20, 0.8)
    current = counters
    for _ in range(40):
        now += 1.0
        current = current.plus(page(100, 100 / 20.0, 100, 80, 25))
        assert watch.feed(Scrape(now, current), judge=False) == []


def families(registry: CollectorRegistry) -> dict[str, str]:
    from prometheus_client import generate_latest

    text = generate_latest(registry).decode()
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def test_exported_names_follow_prometheus_conventions() -> None:
    watch = Watch(reference_windows=8, min_window_tokens=16, cost=COST)
    stream(watch, [50.0] * 12, 0.8)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SidecarCollector(lambda: SidecarSnapshot(
        scrapes=12, up=True, live=watch.latest, advice=watch.advice, retunes={"drift": 1})))
    found = families(registry)
    assert all(name.startswith("autotune_") for name in found)
    assert {"autotune_live_draft_acceptance_ratio", "autotune_live_decode_tokens_per_second",
            "autotune_advice_best_draft_max", "autotune_live_position_acceptance_ratio",
            "autotune_retunes", "autotune_scrapes"} <= set(found)
    assert found["autotune_retunes"] == "counter" and found["autotune_scrapes"] == "counter"


def test_routes_answer_and_bind_to_loopback_by_default() -> None:
    requested = []
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SidecarCollector(lambda: SidecarSnapshot()))

    def retune() -> tuple[bool, str]:
        requested.append(1)
        return len(requested) == 1, "ok" if len(requested) == 1 else "already running"

    server = serve(registry, "127.0.0.1", 0, Routes(
        health=lambda: (False, {"status": "live server unreachable"}),
        recommendation=lambda: {"command": ["llama-server", "-m", "m.gguf"]}, retune=retune))
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        base = f"http://127.0.0.1:{port}"
        assert "autotune_live_up 0.0" in httpx.get(base + "/metrics").text
        assert httpx.get(base + "/healthz").status_code == 503
        assert httpx.get(base + "/recommendation").json()["command"][0] == "llama-server"
        assert httpx.post(base + "/retune").status_code == 202
        assert httpx.post(base + "/retune").status_code == 409
        assert httpx.get(base + "/nothing").status_code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_apply_expands_the_launch_into_separate_arguments() -> None:
    command = ["llama-server", "-m", "a model; rm -rf /", "--port", "8080"]
    argv = apply_argv(["/usr/bin/deploy", "--restart", "{argv}", "--done"], command)
    assert argv == ["/usr/bin/deploy", "--restart", *command, "--done"]


@pytest.mark.parametrize("url", ["ftp://host:1", "http://:80", "http://host:notaport"])
def test_a_bad_live_server_url_is_one_line(url: str) -> None:
    with pytest.raises(SpecError, match="--server http://127.0.0.1:8080"):
        Target.parse(url)


def test_the_command_refuses_bad_input_in_one_line(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["sidecar"])
    assert result.exit_code == 2 and "pass --server" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    result = runner.invoke(app, ["sidecar", "--server", "http://127.0.0.1:1", "--listen", "x"])
    assert result.exit_code == 2 and "--listen 'x' is not HOST:PORT" in result.stderr


def test_tune_exports_its_progress_from_the_database(tmp_path: Path) -> None:
    from autotune.cli import _progress_export
    from autotune.objective import Evaluation
    from autotune.space import SpecConfig
    from autotune.store import repository as repo
    from autotune.store.models import TrialState
    from autotune.store.session import open_store

    store = open_store(str(tmp_path / "r.db"))
    study = repo.create_study(store, name="s", server_kind="llama.cpp", strategy="grid", seed=0,
                              trials_budget=3, spec={})
    done, _ = repo.start_trial(store, study.id, phase="search", config=SpecConfig("ngram-mod", 4),
                               launch_argv=["srv"])
    repo.finish_trial(store, done, state=TrialState.COMPLETE, evaluation=Evaluation(
        objective=40.0, feasible=True, violated=[], levels=[]))
    repo.start_trial(store, study.id, phase="search", config=SpecConfig(), launch_argv=["srv"])
    repo.set_study_state(store, study.id, "running", {
        "label": "ngram-mod n=4", "verdict": "ahead", "speedup": 1.4,
        "command_shell": "llama-server --spec-type ngram-mod"})
    with _progress_export(store, "s", 0) as port:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    values = {(f.name, tuple(sorted(s.labels.items()))): s.value
              for f in text_string_to_metric_families(text) for s in f.samples}
    assert values[("autotune_study_trials", (("state", "complete"), ("study", "s")))] == 1
    assert values[("autotune_study_trials", (("state", "running"), ("study", "s")))] == 1
    assert values[("autotune_study_best_tokens_per_second", (("study", "s"),))] == 40.0
    assert values[("autotune_study_speedup_ratio", (("study", "s"),))] == 1.4
    assert ("autotune_recommendation_info", (("command", "llama-server --spec-type ngram-mod"),
                                        ("label", "ngram-mod n=4"), ("study", "s"),
                                        ("verdict", "ahead"))) in values


def test_sidecar_examples_load_and_name_the_real_command() -> None:
    import configparser

    import yaml

    from autotune.config import load_spec

    folder = Path(__file__).resolve().parents[1] / "examples" / "sidecar"
    spec = load_spec(folder / "sidecar.toml")
    assert spec.sidecar.retune_on_drift and spec.server.port == 0
    pod = yaml.safe_load((folder / "kubernetes-pod.yaml").read_text())
    sidecar = next(c for c in pod["spec"]["containers"] if c["name"] == "autotune-sidecar")
    assert sidecar["args"][1:4] == ["-m", "autotune", "sidecar"]
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/healthz"
    scrape = yaml.safe_load((folder / "prometheus.yml").read_text())
    assert {job["job_name"] for job in scrape["scrape_configs"]} == {"autotune-sidecar",
                                                                      "llama-server"}
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read_string((folder / "autotune-sidecar.service").read_text())
    assert " -m autotune sidecar " in unit["Service"]["ExecStart"]
    dashboard = json.loads((folder / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert any("llamacpp:spec_decode_num_accepted_tokens_per_pos_total" in e for e in exprs)
    assert any(e.startswith("autotune_advice_best_draft_max") for e in exprs)


def test_apply_runs_the_program_with_the_launch_as_arguments(tmp_path: Path) -> None:
    import sys

    from autotune.sidecar.retune import run_apply

    out = tmp_path / "argv.json"
    program = f"import json, sys; open({str(out)!r}, 'w').write(json.dumps(sys.argv[1:]))"
    lines: list[str] = []
    command = ["llama-server", "-m", "my model.gguf", "--port", "8080"]
    code = run_apply([sys.executable, "-c", program, "{argv}"],
                     {"command": command, "command_shell": "llama-server ..."}, lines.append)
    assert code == 0 and json.loads(out.read_text()) == command
    assert any("apply: exit 0" in line for line in lines)
    assert run_apply(["/nonexistent/deploy"], {"command": []}, lines.append) is None


def test_gauge_only_servers_give_acceptance_as_it_stands_and_no_advice() -> None:
    from autotune.backends import get_backend

    backend = get_backend("sglang")
    page = ("# TYPE sglang:generation_tokens_total counter\n"
            "sglang:generation_tokens_total {tokens}\n"
            "# TYPE sglang:spec_accept_length gauge\nsglang:spec_accept_length {length}\n")
    watch = Watch(reference_windows=8, min_window_tokens=16, cost=COST)
    watch.feed(Scrape(0.0, backend.parse_metrics(page.format(tokens=1000, length=3.5))))
    watch.feed(Scrape(1.0, backend.parse_metrics(page.format(tokens=1200, length=2.5))))
    assert watch.latest is not None and not watch.latest.reset
    assert watch.latest.generated_tokens_per_second == 200.0
    assert watch.latest.mean_accepted_length == 1.5  # the gauge's level, not a difference
    assert watch.advice is None


def test_scrape_failures_are_logged_once_when_down_and_once_when_back(
        write_spec: Callable[..., Path], tmp_path: Path) -> None:
    from autotune.config import load_spec
    from autotune.sidecar.loop import DOWN_AFTER, Sidecar
    from autotune.store.session import open_store

    spec_path = write_spec(server={"model": "embedded:gemma3-270m", "port": 0})
    lines: list[str] = []
    store = open_store(str(tmp_path / "sidecar.db"))
    sidecar = Sidecar(load_spec(spec_path), spec_path=spec_path,
                      target=Target.parse("http://127.0.0.1:9"), store=store,
                      store_location=str(tmp_path / "sidecar.db"), name="t",
                      log_dir=tmp_path / "logs", echo=lines.append)
    answers = iter([503] * (DOWN_AFTER + 2) + [200])
    # FAULT-INJECTING transport: the live server's /metrics fails, then answers (empty).
    sidecar.client = httpx.Client(transport=httpx.MockTransport(
        lambda request: httpx.Response(next(answers), text="")))
    for _ in range(DOWN_AFTER + 3):
        sidecar.scrape_once()
    assert len(lines) == 3, lines
    assert "failed" in lines[0] and "/healthz answers 503" in lines[1]
    assert f"works again after {DOWN_AFTER + 2} failed scrapes" in lines[2]


def test_a_stalled_loop_dumps_every_stack_to_stderr() -> None:
    """The watchdog the sidecar's loop re-arms each step: if a step never comes back, stderr
    (the sidecar's log) says where every thread waits."""
    import subprocess
    import sys

    code = ("import time\nfrom autotune.sidecar.loop import _watchdog\n"
            "def stuck_in_a_step():\n    time.sleep(3)\n"
            "_watchdog(0.5)\nstuck_in_a_step()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "Timeout" in done.stderr and "stuck_in_a_step" in done.stderr, done.stderr


def test_a_missing_canary_binary_is_said_at_start(write_spec: Any, tmp_path: Path) -> None:
    """Watching needs no server binary; a retune does, hours later: say it at once."""
    spec = write_spec(server={"binary": str(tmp_path / "no-such-server")})
    with socket.socket() as taken:  # the sidecar then stops at its listen address, exit 2
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["sidecar", str(spec), "--server",
                                          "http://127.0.0.1:1", "--listen", f"127.0.0.1:{port}"])
    assert result.exit_code == 2, result.stderr
    assert ("sidecar: warning: retunes will fail: server binary not found: "
            f"{tmp_path / 'no-such-server'}") in result.stderr

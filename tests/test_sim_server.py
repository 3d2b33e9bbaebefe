"""SIMULATION served over HTTP (autotune.sim.server): llama-server's flags, endpoints, timings
and /metrics, and the whole controller tuning it. These tests check the plumbing; nothing here
is evidence about a real server."""

from __future__ import annotations

import json
import re
import shutil
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import tomli_w
from typer.testing import CliRunner

from autotune.backends import LaunchSettings, get_backend
from autotune.cli import app
from autotune.errors import LaunchError
from autotune.launcher import start_server, wait_healthy
from autotune.space import SpecConfig

runner = CliRunner()
PRESET = "dc-gpu-31b-mtp"
SPEEDUP = "200"  # launch in 0.45 s, generate at 200x the simulated 21 tok/s


def sim_binary() -> str:
    found = shutil.which("autotune-sim-server") or str(
        Path(sys.executable).with_name("autotune-sim-server"))
    assert Path(found).is_file(), "autotune-sim-server is installed with the package"
    return found


def launch(tmp_path: Path, port: int, config: SpecConfig):  # type: ignore[no-untyped-def]
    backend = get_backend("llama.cpp")
    settings = LaunchSettings(sim_binary(), "gemma-4-31b.gguf", "127.0.0.1", port, 4096, 1,
                              extra_args=("--sim-preset", PRESET, "--sim-speedup", SPEEDUP))
    server = start_server(backend.launch_argv(settings, config),
                          base_url=f"http://127.0.0.1:{port}", log_path=tmp_path / "sim.log")
    return backend, server


def test_speaks_llama_servers_endpoints_and_counters(tmp_path: Path, free_port: int) -> None:
    backend, server = launch(tmp_path, free_port,
                             SpecConfig("draft-mtp", 4, 0.0, "mtp-q8_0.gguf"))
    base = f"http://127.0.0.1:{free_port}"
    try:
        wait_healthy(server, health_path="/health", timeout_s=30,
                     error_line=backend.startup_error)
        assert httpx.get(base + "/props").json()["simulation"] is True
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 300,
                "stream": True, "stream_options": {"include_usage": True}}
        final: dict = {}
        with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=30) as r:
            for line in r.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    chunk = json.loads(line.removeprefix("data: "))
                    final = chunk if "timings" in chunk else final
        timings = backend.parse_timings(final)
        assert timings is not None and timings.predicted_tokens == 300
        assert timings.draft_tokens and 0 < (timings.draft_accepted or 0) <= timings.draft_tokens
        counters = backend.parse_metrics(httpx.get(base + "/metrics").text)
        assert counters.present and counters.generated_tokens == 300
        r = counters.per_position_acceptance()
        # The preset's first-position acceptance is 0.89; later positions accept less.
        assert 0.75 < r[0] <= 1.0 and len(r) <= 4 and r == sorted(r, reverse=True)
    finally:
        server.stop()


def test_refuses_what_llama_server_refuses(tmp_path: Path, free_port: int) -> None:
    backend, server = launch(tmp_path, free_port, SpecConfig("draft-mtp", 3, 0.5, "nope.gguf"))
    with pytest.raises(LaunchError, match="failed to load draft model"):
        wait_healthy(server, health_path="/health", timeout_s=30, error_line=backend.startup_error)
    server.stop()


def sim_spec(write_spec: Callable[..., Path], tmp_path: Path, port: int) -> Path:
    # Long enough replies that HTTP overhead stays small next to the simulated pace.
    prompts = tmp_path / "sim.jsonl"
    prompts.write_text("".join(json.dumps({"class": c, "max_tokens": 160, "messages": [
        {"role": "user", "content": text}]}) + "\n" for c, text in
        (("code", "def f(x): return x"), ("chat", "Name three colours."))))
    return write_spec(
        server={"binary": "simulated:cpu-only", "model": "gemma-3-270m.gguf", "port": port,
                "extra_args": ["--sim-speedup", "20"]},
        space={"methods": ["none", "draft-simple", "ngram-mod"],
               "draft_max": {"low": 1, "high": 6}, "p_min": {"low": 0.0, "high": 0.6, "step": 0.3},
               "drafters": ["draft-q8_0.gguf", "draft-q4_0.gguf"],
               "cache_type_k": ["f16", "q8_0"], "cache_type_v": ["f16"]},
        workload={"files": [str(prompts)], "requests": 2, "warmup_requests": 1},
        search={"strategy": "spec-model", "trials": 12},
        finish={"finalists": 1, "rounds": 4, "max_rounds": 8, "requests_per_round": 2},
    )


def test_controller_tunes_the_simulation_and_labels_it(write_spec: Callable[..., Path],
                                                       tmp_path: Path, free_port: int) -> None:
    spec = sim_spec(write_spec, tmp_path, free_port)
    out = tmp_path / "rec.json"
    result = runner.invoke(app, ["tune", str(spec), "--json", str(out)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("SIMULATION")
    recommendation = json.loads(out.read_text())
    assert recommendation["simulation"].startswith("SIMULATION")
    # On this preset n-gram lookup is about 1.6x no drafting and drafters lose.
    assert recommendation["params"]["method"] == "ngram-mod", result.stdout
    assert "autotune-sim-server" in recommendation["command_shell"]
    # A 1.6x lead is shown at the first look, so the finish stops there, unless outside load
    # disturbed rounds past their re-measurements: their readings are then left out and the
    # finish measures on, as it should on a busy machine (the output says which).
    rounds = [int(n) for n in re.findall(r"finish round (\d+)/8", result.stdout)]
    assert max(rounds) == 4 or "disturbed and no re-measurement left" in result.stdout, \
        result.stdout


def test_finish_measures_on_while_a_lead_is_unproven(write_spec: Callable[..., Path],
                                                    tmp_path: Path, free_port: int) -> None:
    # At alpha 1e-6 two paired rounds cannot show a winner (the t critical value at one degree
    # of freedom is about 300,000; at 0.001 two nearly equal round ratios could still pass), so
    # the 1.6x n-gram lead earns the next look.
    spec = sim_spec(write_spec, tmp_path, free_port)
    data = tomllib.loads(spec.read_text())
    data["finish"].update(rounds=2, max_rounds=4, alpha=1e-6)
    spec.write_text(tomli_w.dumps(data))
    result = runner.invoke(app, ["tune", str(spec)])
    assert result.exit_code == 0, result.stderr
    assert "not settled after 2 rounds; measuring up to 4" in result.stdout
    assert "finish round 4/4" in result.stdout


def test_unknown_preset_is_one_clear_line(write_spec: Callable[..., Path], free_port: int) -> None:
    spec = write_spec(server={"binary": "simulated:tpu-pod", "model": "m.gguf"})
    result = runner.invoke(app, ["tune", str(spec)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip()] and "no simulator preset 'tpu-pod'" in result.stderr


def test_the_simulated_example_spec_is_valid() -> None:
    from autotune.config import load_spec
    from autotune.embedded import resolve_files, simulated_preset

    path = Path(__file__).resolve().parents[1] / "examples" / "simulated-dc-gpu.toml"
    spec = resolve_files(load_spec(path))
    assert simulated_preset(spec) == PRESET
    assert Path(spec.server.binary).name == "autotune-sim-server"
    assert spec.server.extra_args[:2] == ["--sim-preset", PRESET]


def test_one_recommendation_per_concurrency_level(write_spec: Callable[..., Path],
                                                  tmp_path: Path, free_port: int) -> None:
    spec = sim_spec(write_spec, tmp_path, free_port)
    data = tomllib.loads(spec.read_text())
    data["server"]["parallel"] = 2
    data["workload"]["concurrency"] = [1, 2]
    data["search"]["trials"] = 6
    data["finish"].update(rounds=4, max_rounds=4)
    spec.write_text(tomli_w.dumps(data))
    out = tmp_path / "rec.json"
    result = runner.invoke(app, ["tune", str(spec), "--json", str(out)])
    assert result.exit_code == 0, result.stderr
    recommendation = json.loads(out.read_text())
    assert [entry["concurrency"] for entry in recommendation["by_concurrency"]] == [2]
    assert "at concurrency 2:" in recommendation["explanation"]

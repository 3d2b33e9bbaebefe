"""Every launch form of a recommendation (`autotune show --format NAME`), and the two that
run here, the shell command and the LLAMA_ARG_* environment file, start the real server."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from autotune.backends import LaunchSettings, get_backend
from autotune.cli import app
from autotune.launch_forms import FORMS, env_form, render
from autotune.launcher import free_port, start_server, wait_healthy
from autotune.space import SpecConfig
from autotune.store import repository
from autotune.store.session import open_store
from tests.test_real_decision import REPEAT, metrics_counters

runner = CliRunner()
SETUP = SpecConfig("ngram-mod", 8, flash_attn="on")


def recommendation(binary: str, model: str, port: int) -> dict[str, Any]:
    settings = LaunchSettings(binary, model, "127.0.0.1", port, 1024, 1, threads=2)
    return {"study": "forms", "server_kind": "llama.cpp", "params": SETUP.to_params(),
            "command": get_backend("llama.cpp").launch_argv(settings, SETUP)}


def stored(tmp_path: Path, rec: dict[str, Any]) -> Path:
    db = tmp_path / "results.db"
    store = open_store(str(db))
    study = repository.create_study(store, name="forms", server_kind="llama.cpp",
                                    strategy="grid", seed=0, trials_budget=1, spec={})
    repository.set_study_state(store, study.id, "finished", rec)
    return db


def test_every_form_renders_through_show(tmp_path: Path) -> None:
    rec = recommendation("/opt/llama/llama-server", "/models/gemma.gguf", 8080)
    db = stored(tmp_path, rec)
    shown = {}
    for form in FORMS:
        if form == "env":
            continue  # needs the build's --help; tested against the real binary below
        result = runner.invoke(app, ["show", "--store", str(db), "--format", form])
        assert result.exit_code == 0, (form, result.stdout, result.stderr)
        shown[form] = result.stdout
    assert shlex.split(shown["shell"]) == rec["command"]
    docker = shlex.split(shown["docker"])
    assert docker[:5] == ["docker", "run", "--rm", "-p", "127.0.0.1:8080:8080"]
    assert "/models:/models/0:ro" in docker and "/models/0/gemma.gguf" in docker
    swap = yaml.safe_load(shown["llama-swap"])
    cmd = swap["models"]["autotune-forms"]["cmd"]
    assert "--port ${PORT}" in cmd and "--spec-type ngram-mod" in cmd
    assert "[Service]\nExecStart=\nExecStart=/opt/llama/llama-server " in shown["systemd"]
    pod = yaml.safe_load(shown["kubernetes"])
    container = pod["containers"][0]
    assert container["image"].startswith("ghcr.io/ggml-org/llama.cpp")
    assert container["args"][container["args"].index("--host") + 1] == "0.0.0.0"
    assert pod["volumes"][0]["hostPath"]["path"] == "/models"
    config = json.loads(shown["json"])
    assert config["spec-type"] == "ngram-mod" and config["flash-attn"] == "on"
    bad = runner.invoke(app, ["show", "--store", str(db), "--format", "helm"])
    assert bad.exit_code == 2 and "not a launch form" in bad.stderr


def test_vllm_forms_keep_the_speculative_config_structured() -> None:
    settings = LaunchSettings("vllm", "Qwen/Qwen3-8B", "127.0.0.1", 8000, 4096, 8)
    argv = get_backend("vllm").launch_argv(settings, SpecConfig("ngram-simple", 4))
    rec = {"study": "v", "server_kind": "vllm", "command": argv}
    config = json.loads(render("json", rec))
    assert config["speculative-config"]["num_speculative_tokens"] == 4
    assert config["model"] == "Qwen/Qwen3-8B" and "_positional" not in config
    docker = shlex.split(render("docker", rec))
    assert docker[docker.index("--entrypoint") + 1] == "vllm" and "serve" in docker


@pytest.mark.server
@pytest.mark.parametrize("form", ["shell", "env"])
def test_shell_and_env_forms_start_the_real_server(form: str, real_binary: str,
                                                   real_model: str, tmp_path: Path) -> None:
    port = free_port()
    rec = recommendation(real_binary, real_model, port)
    environment = dict(os.environ)
    if form == "shell":
        argv = shlex.split(render("shell", rec))
    else:
        text = render("env", rec)
        env_file = tmp_path / "autotune.env"
        env_file.write_text(text + "\n")
        assignments, argv = env_form(rec["command"], subprocess.run(
            [real_binary, "--help"], capture_output=True, text=True, check=False).stdout)
        names = {name for name, _ in assignments}
        assert {"LLAMA_ARG_MODEL", "LLAMA_ARG_PORT", "LLAMA_ARG_FLASH_ATTN"} <= names
        # a flag with no variable stays on the command
        assert "--model" not in argv and "--spec-ngram-mod-n-max" in argv
        for line in env_file.read_text().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.partition("=")
                environment[name] = shlex.split(value)[0]
    base_url = f"http://127.0.0.1:{port}"
    server = start_server(argv, base_url=base_url, log_path=tmp_path / "server.log",
                          env=environment)
    try:
        wait_healthy(server, health_path="/health", timeout_s=60,
                     error_line=get_backend("llama.cpp").startup_error)
        httpx.post(base_url + "/v1/chat/completions", timeout=120, json={
            "messages": [{"role": "user", "content": REPEAT}], "max_tokens": 96,
            "temperature": 0})
        # n-gram drafting reached the server (model and port did: it answered)
        assert metrics_counters(base_url).get("drafts", 0) > 0
    finally:
        server.stop()


def _config_file_argv(config: dict[str, object]) -> list[str]:
    """What vLLM's and SGLang's ``--config FILE.yaml`` turn a mapping into (their documented
    loader: ``true`` is a bare flag, a mapping is passed as JSON, anything else as text)."""
    argv: list[str] = []
    for key, value in config.items():
        if value is True:
            argv.append(f"--{key}")
        else:
            argv += [f"--{key}", json.dumps(value) if isinstance(value, dict) else str(value)]
    return argv


@pytest.mark.parametrize("kind", ["vllm", "sglang"])
def test_the_json_form_is_a_config_file_the_server_reads_back_as_the_same_launch(
        kind: str) -> None:
    """Once the vLLM form held ``"_positional": ["serve", MODEL]`` and the SGLang one
    ``"m": "sglang.launch_server"``: keys those servers' --config refuses."""
    settings = LaunchSettings(kind, "Qwen/Qwen3-8B", "127.0.0.1", 8000, 4096, 8)
    argv = get_backend(kind).launch_argv(settings, SpecConfig("ngram-simple", 4))
    config = yaml.safe_load(render("json", {"study": "v", "server_kind": kind, "command": argv}))
    rebuilt = _config_file_argv(config)
    if kind == "vllm":  # vllm serve --config FILE: the model key is the positional model
        expected = ["--model", argv[2], *argv[3:]]
    else:  # python -m sglang.launch_server --config FILE
        expected = argv[3:]
    assert [json.loads(w) if w.startswith("{") else w for w in rebuilt] == [
        json.loads(w) if w.startswith("{") else w for w in expected]


def test_gpu_forms_give_the_container_its_gpus_and_a_hub_model_its_cache() -> None:
    """A GPU server's docker and Kubernetes forms used to start a container that saw no GPU."""
    settings = LaunchSettings("vllm", "Qwen/Qwen3-8B", "127.0.0.1", 8000, 4096, 8,
                              extra_args=("--tensor-parallel-size", "2"))
    argv = get_backend("vllm").launch_argv(settings, SpecConfig("ngram-simple", 4))
    rec = {"study": "v", "server_kind": "vllm", "command": argv}
    docker = shlex.split(render("docker", rec))
    assert {"--gpus=all", "--ipc=host"} <= set(docker)
    assert docker[docker.index("-e") + 1] == "HF_TOKEN"  # its value is never written
    assert "$HOME/.cache/huggingface:/root/.cache/huggingface" in docker
    pod = yaml.safe_load(render("kubernetes", rec))["containers"][0]
    assert pod["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert {"name": "shm", "mountPath": "/dev/shm"} in pod["volumeMounts"]

    settings = LaunchSettings("llama.cpp", "/models/m.gguf", "127.0.0.1", 8080, 4096, 1,
                              gpu_layers=99)
    argv = get_backend("llama.cpp").launch_argv(settings, SpecConfig("ngram-mod", 8))
    rec = {"study": "g", "server_kind": "llama.cpp", "command": argv}
    docker = shlex.split(render("docker", rec))
    assert "--gpus=all" in docker and "ghcr.io/ggml-org/llama.cpp:server-cuda" in docker
    pod = yaml.safe_load(render("kubernetes", rec))["containers"][0]
    assert pod["image"].endswith(":server-cuda") and pod["resources"]["limits"]


def test_the_systemd_form_names_the_program_by_its_absolute_path() -> None:
    """systemd does not search the user's PATH: ``ExecStart=vllm`` fails where vllm lives in a
    virtual environment."""
    rec = {"study": "s", "server_kind": "sglang",
           "command": ["python3", "-m", "sglang.launch_server", "--port", "30000"]}
    line = render("systemd", rec).splitlines()[-1]
    assert line.startswith(f"ExecStart={shutil.which('python3')} -m sglang.launch_server")

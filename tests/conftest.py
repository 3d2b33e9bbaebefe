"""Shared fixtures. Server tests use the real llama-server and the real Gemma 3 270M model
(the ``[server]`` extra); they fail, never skip, when it is missing, so CI cannot go green
without them."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import tomli_w


TEST_MARK = "AUTOTUNE_TEST_RUN"


def marked_processes(mark: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get(TEST_MARK) == mark:
                found.append(proc)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


@pytest.fixture(autouse=True)
def mark_started_processes(monkeypatch: pytest.MonkeyPatch,
                           request: pytest.FixtureRequest) -> Iterator[None]:
    """Every process a test starts inherits a mark naming the test, so leftover checks look
    only at what this test started: the machine is shared, and another program's llama-server
    is none of our business. After the test, whatever it left running (a tuner of a failed
    assertion, say) is killed, so one failure cannot slow every later test."""
    mark = f"{os.getpid()}:{request.node.nodeid}"
    monkeypatch.setenv(TEST_MARK, mark)
    yield
    leftovers = marked_processes(mark)
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(leftovers, timeout=10)


def server_processes() -> list[psutil.Process]:
    """llama-server processes this test started (by the inherited mark), alive or zombie."""
    mark = os.environ.get(TEST_MARK)
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if not cmd or Path(cmd[0]).name != "llama-server":
            continue
        try:
            if proc.environ().get(TEST_MARK) == mark:
                found.append(proc)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


@pytest.fixture(scope="session")
def real_binary() -> str:
    try:
        from autotune.embedded import server_binary

        return server_binary()
    except Exception as error:  # noqa: BLE001 - report any reason the server is unavailable
        pytest.fail(f"the real llama-server is required: {error}")


@pytest.fixture(scope="session")
def real_model() -> str:
    from autotune.embedded import embedded_model

    return embedded_model()


@pytest.fixture(scope="session")
def real_drafter(real_binary: str) -> str:
    from autotune.embedded import embedded_drafter

    return embedded_drafter("Q4_0")


@pytest.fixture
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SMALL_PROMPTS = [
    {"class": "code", "max_tokens": 24, "messages": [{"role": "user", "content":
        "Rename x to y and return the code:\ndef f(x):\n    return x + x\n"}]},
    {"class": "chat", "max_tokens": 24, "messages": [{"role": "user", "content":
        "Name three colours."}]},
]


@pytest.fixture
def small_workload(tmp_path: Path) -> Path:
    path = tmp_path / "small.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in SMALL_PROMPTS))
    return path


@pytest.fixture
def write_spec(tmp_path: Path, small_workload: Path) -> Callable[..., Path]:
    """Write a small, fast spec; keyword sections override the defaults."""

    def write(name: str = "spec.toml", **sections: dict[str, Any]) -> Path:
        spec: dict[str, Any] = {
            "name": "test",
            "server": {"model": "embedded:gemma3-270m", "ctx_size": 1024, "threads": 2,
                       "startup_timeout_s": 60},
            "space": {"methods": ["none", "ngram-mod"], "draft_max": {"low": 2, "high": 4},
                      "cache_type_k": ["f16"], "cache_type_v": ["f16"]},
            "workload": {"files": [str(small_workload)], "requests": 2, "warmup_requests": 1},
            "search": {"strategy": "grid", "trials": 3},
            "finish": {"finalists": 1, "rounds": 2, "max_rounds": 2, "requests_per_round": 1},
            "store": {"path": str(tmp_path / "results.db")},
        }
        for section, values in sections.items():
            if isinstance(values, dict) and isinstance(spec.get(section), dict):
                spec[section] = {**spec[section], **values}
            else:
                spec[section] = values
        path = tmp_path / name
        path.write_text(tomli_w.dumps(spec))
        return path

    return write

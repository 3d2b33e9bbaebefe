"""The real ik_llama.cpp fork (built once from PyPI's ik-llama-cpp-python 0.1.5 sdist, see
autotune/ik_build.py) with the real Gemma 3 270M model: its old flag grammar read from --help,
a small study with no drafting, n-gram drafting and a drafter, draft-max, n-min and p-min
tried without restarts, and its own --spec-autotune measured as one more finalist."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from autotune.backends import LaunchSettings, get_backend
from autotune.backends.ik_llama import flag_syntax
from autotune.launcher import start_server, wait_healthy
from autotune.space import SpecConfig
from autotune.cli import app
from autotune.store import repository as repo
from autotune.store.session import open_store
from tests.conftest import server_processes

pytestmark = pytest.mark.server


@pytest.fixture(scope="session")
def ik_binary() -> str:
    from autotune.ik_build import build

    try:
        return str(build())
    except Exception as error:  # noqa: BLE001 - any reason the fork cannot be built
        pytest.fail(f"the real ik_llama.cpp build is required: {error}")


def test_the_build_speaks_the_old_grammar(ik_binary: str) -> None:
    assert flag_syntax(ik_binary) == "old"


def test_per_request_n_min_reaches_the_fork(ik_binary: str, real_model: str, real_drafter: str,
                                            tmp_path: Path, free_port: int) -> None:
    # The study trusts speculative.n_min to follow n_max on a kept server; this shows it does:
    # at p-min 0.9 some drafts stop short, and n-min 6 drops those shorter than 6 tokens.
    backend = get_backend("ik_llama.cpp")
    settings = LaunchSettings(binary=ik_binary, model=real_model, host="127.0.0.1",
                              port=free_port, ctx_size=1024, parallel=1, threads=2)
    argv = backend.launch_argv(settings, SpecConfig("draft-simple", 8, 0.0, real_drafter))
    base_url = f"http://127.0.0.1:{free_port}"
    log = tmp_path / "ik.log"
    server = start_server(argv, base_url=base_url, log_path=log)
    drafted = {}
    try:
        wait_healthy(server, health_path="/health", timeout_s=60, error_line=backend.startup_error)
        for n_min in (0, 6):
            before = len(backend.log_acceptance(log.read_text().splitlines()))
            httpx.post(base_url + "/completion", timeout=120, json={
                "prompt": "Repeat this text exactly three times: the quick brown fox jumps over "
                          "the lazy dog near the river bank at dawn.",
                "n_predict": 96, "temperature": 0, "cache_prompt": False,
                "speculative.n_max": 8, "speculative.p_min": 0.9, "speculative.n_min": n_min,
            }).raise_for_status()
            deadline = time.monotonic() + 5
            while len(backend.log_acceptance(log.read_text().splitlines())) == before:
                assert time.monotonic() < deadline, "the server logged no acceptance line"
                time.sleep(0.1)
            drafted[n_min] = backend.log_acceptance(log.read_text().splitlines())[-1][1]
    finally:
        server.stop()
    assert drafted[6] < drafted[0], drafted  # the knob moved what the server reports


def test_a_small_study_on_the_fork_keeps_servers_and_measures_its_tuner(
        ik_binary: str, real_drafter: str, write_spec: Callable[..., Path],
        tmp_path: Path) -> None:
    spec = write_spec(
        server={"kind": "ik_llama.cpp", "binary": ik_binary},
        space={"methods": ["none", "ngram-mod", "draft-simple"], "drafters": [real_drafter],
               "draft_max": {"low": 2, "high": 4, "step": 2},
               "p_min": {"low": 0.0, "high": 0.5, "step": 0.5},
               "draft_min": {"low": 0, "high": 2, "step": 2}},
        search={"strategy": "grid", "trials": 11},
        workload={"quality_prompts": 0})
    result = CliRunner().invoke(app, ["tune", str(spec)])
    out = result.stdout
    assert result.exit_code == 0, (out, result.stderr)
    assert "per-request draft parameters reach this server" in out, out
    assert "trials ran on a kept server" in out, out
    assert "+server-autotune" in out, out  # the server's own tuner, measured as a finalist
    store = open_store(str(tmp_path / "results.db"))
    study = repo.list_studies(store)[-1]
    trials = repo.list_trials(store, study.id)
    drafting = [t for t in trials if t.config.method == "draft-simple" and t.summary]
    # acceptance comes from the server's log lines (no counters, no timings in this build)
    assert drafting and all(t.summary[0]["acceptance"] is not None for t in drafting)
    launched = {t.launch_seconds for t in drafting if t.phase == "search"}
    assert 0.0 in launched  # some drafter trials reused a running server
    # n-min is searched too, in the kept server's requests
    assert {t.config.draft_min for t in drafting if t.phase == "search"} == {0, 2}
    assert not server_processes()

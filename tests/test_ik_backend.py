"""ik_llama.cpp without a server: both flag grammars, the grammar check of the new one, the
server's own tuner as a finish contender, the lines its log speaks in, and the kept server."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from autotune.backends import get_backend
from autotune.backends.base import LaunchSettings
from autotune.backends.ik_llama import (
    NEW_GRAMMAR,
    IkLlamaBackend,
    autotune_reuse,
    log_counters,
    syntax_of,
)
from autotune.controller import Tuner
from autotune.reuse import LaunchPool
from autotune.space import BASELINE, SpecConfig

SETUPS = [
    SpecConfig("draft-simple", 4, 0.5, "/m/d.gguf"),
    SpecConfig("draft-simple", 6, 0.3, "/m/d.gguf", draft_min=2, draft_cache_type="q8_0"),
    SpecConfig("draft-mtp", 3, 0.0, "/m/mtp.gguf"),
    SpecConfig("ngram-mod", 12),
    SpecConfig("ngram-simple", 6),
    SpecConfig("ngram-map-k4v", 8),
]


@pytest.mark.parametrize("config", SETUPS, ids=lambda c: c.method)
def test_new_grammar_renders_one_spec_type_per_setup(config: SpecConfig) -> None:
    argv = IkLlamaBackend().config_argv(config, "new")
    values = [argv[i + 1] for i, word in enumerate(argv) if word == "--spec-type"]
    assert len(values) == 1 and NEW_GRAMMAR.match(values[0]), values
    assert f"n_max={config.draft_max}" in values[0]
    assert not any(w.startswith("--draft") or w == "-mtp" for w in argv)  # rejected there
    if config.draft_min is not None:
        assert f"n_min={config.draft_min}" in values[0]
    if config.draft_cache_type is not None:
        assert argv[argv.index("-ctvd") + 1] == config.draft_cache_type


@pytest.mark.parametrize("config", SETUPS, ids=lambda c: c.method)
def test_old_grammar_always_passes_the_length_and_p_min(config: SpecConfig) -> None:
    argv = IkLlamaBackend().config_argv(config, "old")
    assert argv[argv.index("--draft-max") + 1] == str(config.draft_max)
    if config.p_min is not None:
        assert argv[argv.index("--draft-p-min") + 1] == f"{config.p_min:g}"
    if config.draft_min is not None:
        assert argv[argv.index("--draft-min") + 1] == str(config.draft_min)
    assert not any(":" in w for w in argv if not w.startswith("/"))


def test_the_help_text_decides_the_grammar() -> None:
    assert syntax_of("  --draft-max, --draft, --draft-n N  number of tokens to draft") == "old"
    assert syntax_of("  --spec-type TYPE[:key=value,...]  e.g. draft:n_max=4,p_min=0.5") == "new"


def test_the_server_tuner_is_a_flag_and_a_finish_contender() -> None:
    from autotune.study import choose_finalists

    tuned = SpecConfig("draft-simple", 4, 0.5, "/m/d.gguf", server_tuned=True)
    assert "--spec-autotune" in IkLlamaBackend().config_argv(tuned, "old")
    assert "+server-autotune" in tuned.describe()
    assert "server_tuned" not in SETUPS[0].to_params()  # fixed setups keep their keys
    assert SpecConfig.from_params(tuned.to_params()) == tuned
    assert tuned.simplicity() > SETUPS[0].simplicity()  # a tie goes to the fixed setup
    with pytest.raises(ValueError, match="server_tuned needs a method that drafts"):
        SpecConfig(server_tuned=True)
    assert choose_finalists([], None, 2, server_tuner=True) == [BASELINE]  # nothing drafted


def test_no_drafting_keeps_the_server_tuner_off() -> None:
    settings = LaunchSettings(binary="/nonexistent/llama-server", model="m.gguf",
                              host="127.0.0.1", port=8080, ctx_size=1024, parallel=1,
                              extra_args=("--spec-autotune",))
    assert "--spec-autotune" not in get_backend("ik_llama.cpp").launch_argv(settings, BASELINE)


def test_log_lines_give_acceptance_and_the_tuners_choice() -> None:
    lines = [
        "slot print_timing: id  0 | task 3 | draft acceptance rate = 0.95000 (   76 accepted /"
        "    80 generated)",
        "unrelated line",
        "slot print_timing: id  0 | task 5 | draft acceptance rate = 0.50000 (    4 accepted /"
        "     8 generated)",
        "Autotune reuse: --draft-max 8 --draft-p-min 0.30 ",
        "Autotune reuse: --draft-max 12 --draft-p-min 0.19 --draft-min 6 ",
    ]
    assert log_counters(lines) == [(76, 80), (4, 8)]
    assert IkLlamaBackend().log_acceptance(lines) == [(76, 80), (4, 8)]
    assert get_backend("llama.cpp").log_acceptance(lines) == []  # it has counters
    assert autotune_reuse(lines) == "--draft-max 12 --draft-p-min 0.19 --draft-min 6"
    assert IkLlamaBackend().tuner_choice(lines) == autotune_reuse(lines)


def test_logged_acceptance_goes_to_the_measured_requests_of_each_level() -> None:
    from autotune.objective import with_logged_acceptance
    from autotune.measurements import LevelResult, RequestSample

    def level(concurrency: int, warmups: int, measured: int) -> LevelResult:
        samples = [RequestSample(i, "code", concurrency, i < warmups, 0.0, 1.0)
                   for i in range(warmups + measured)]
        return LevelResult(concurrency, tuple(samples), 1.0)

    levels = [level(1, 1, 2), level(2, 1, 2)]
    lines = [(1, 10), (8, 10), (6, 10), (0, 10), (10, 10), (5, 10)]  # w, m, m, w, m, m
    first, second = with_logged_acceptance(lines, levels)
    assert (first.counters.accepted_tokens, first.counters.draft_tokens) == (14.0, 20.0)
    assert (second.counters.accepted_tokens, second.counters.draft_tokens) == (15.0, 20.0)
    assert with_logged_acceptance([], levels) == levels


@dataclass(frozen=True)
class _KeptServer:
    """Stands in for a launched server: the pool only reads these two."""
    name: str
    launch_seconds: float = 2.0

    def death(self) -> str | None:
        return None


def _servers(started: list[str], stopped: list[str]
             ) -> Callable[[str], contextlib.AbstractContextManager[_KeptServer]]:
    def server(name: str) -> contextlib.AbstractContextManager[_KeptServer]:
        @contextlib.contextmanager
        def run() -> Iterator[_KeptServer]:
            started.append(name)
            try:
                yield _KeptServer(name)
            finally:
                stopped.append(name)
        return run()
    return server


def test_a_kept_server_is_reused_per_launch_key_and_dropped_after_a_failure() -> None:
    started: list[str] = []
    stopped: list[str] = []
    server = _servers(started, stopped)

    pool = LaunchPool()
    for key in ("a", "a", "a", "b"):
        with pool.use([key], lambda key=key: server(key)) as launched:
            assert launched.name == key
    assert started == ["a", "b"] and stopped == ["a"] and pool.reused == 2
    assert pool.saved_seconds() == 4.0
    with pytest.raises(RuntimeError), pool.use(["b"], lambda: server("b")):
        raise RuntimeError("a failed trial")
    assert stopped == ["a", "b"] and pool.key is None  # the next trial starts clean
    pool.close()


def test_a_setup_outside_the_pool_stops_the_kept_server_before_its_own_launch() -> None:
    """Both would bind the study's port: the kept one must be gone when the next starts."""
    started: list[str] = []
    stopped: list[str] = []
    server = _servers(started, stopped)
    tuner = Tuner.__new__(Tuner)  # _server's unpooled path reads only the pool and running
    tuner.pool = LaunchPool()
    seen_at_start: list[list[str]] = []

    def running(config: SpecConfig, trial_id: int, number: int
                ) -> contextlib.AbstractContextManager[_KeptServer]:
        seen_at_start.append(list(stopped))
        return server(config.method)

    tuner.running = running  # type: ignore[method-assign]
    with tuner.pool.use(["draft-simple"], lambda: server("draft-simple")):
        pass
    assert tuner.pool.key is not None and stopped == []  # kept between trials
    with tuner._server(SpecConfig("ngram-mod", 12), 2, 2, pooled=False):
        pass
    assert seen_at_start == [["draft-simple"]] and tuner.pool.key is None
    assert started == ["draft-simple", "ngram-mod"] and stopped == ["draft-simple", "ngram-mod"]


def test_the_old_build_leaves_no_trace_log_in_the_working_folder() -> None:
    backend = IkLlamaBackend()
    settings = LaunchSettings("/nonexistent/llama-server", "m.gguf", "127.0.0.1", 8080, 1024, 1)
    assert "--log-disable" in backend.launch_argv(settings, BASELINE)
    own = LaunchSettings("/nonexistent/llama-server", "m.gguf", "127.0.0.1", 8080, 1024, 1,
                         extra_args=("--log-file", "/tmp/mine"))
    assert "--log-disable" not in backend.launch_argv(own, BASELINE)

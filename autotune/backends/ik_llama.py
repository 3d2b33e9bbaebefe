"""The ik_llama.cpp fork, run for real from PyPI's ``ik-llama-cpp-python`` sdist
(``autotune build-ik``; ``autotune/ik_build.py``).

Two flag grammars exist and a build accepts only one, so the build's own ``--help`` decides:

- old (the 0.1.5 sdist): ``-md FILE --draft-max N --draft-min N --draft-p-min P``, n-gram
  kinds through ``--spec-type NAME`` when no drafter is given, ``-mtp`` for MTP heads;
- new (PR #1908, June 2026): repeated ``--spec-type TYPE[:key=value,...]`` with types such as
  ``draft``, ``mtp``, ``ngram-mod`` and keys ``n_max``, ``n_min``, ``p_min``; the old flags
  then fail with a hint.

This build's ``/metrics`` has no speculative counters; acceptance comes from the per-request
``timings`` where present and otherwise from the line the server logs per request,
``draft acceptance rate = 0.95 (   76 accepted /    80 generated)``. The server honours
``speculative.n_max``, ``speculative.n_min`` and ``speculative.p_min`` in a request body.
"""

from __future__ import annotations

import functools
import re
import subprocess
from collections.abc import Sequence
from dataclasses import replace

from autotune.backends.base import LaunchSettings
from autotune.backends.llama_cpp import LlamaCppBackend
from autotune.space import SpecConfig, drafts, uses_drafter

# Our method names -> the fork's type names (new grammar) and --spec-type values (old).
NEW_TYPES = {"draft-simple": "draft", "draft-mtp": "mtp", "draft-dflash": "dflash",
             "draft-dspark": "dspark", "ngram-simple": "ngram-simple",
             "ngram-map-k": "ngram-map-k", "ngram-map-k4v": "ngram-map-k4v",
             "ngram-mod": "ngram-mod", "ngram-cache": "ngram-cache"}
NEW_GRAMMAR = re.compile(
    r"^(none|draft|dflash|dspark|mtp|ngram-cache|ngram-simple|ngram-map-k|ngram-map-k4v|"
    r"ngram-mod|suffix)(:(n_max|n_min|p_min|heads)=[0-9.]+(,(n_max|n_min|p_min|heads)=[0-9.]+)*)?$")
_ACCEPTANCE_LINE = re.compile(r"draft acceptance rate = [0-9.]+ \(\s*(\d+) accepted /\s*(\d+) "
                              r"generated\)")
AUTOTUNE_LINE = re.compile(r"Autotune reuse: (.*\S)")


@functools.lru_cache(maxsize=16)
def flag_syntax(binary: str) -> str:
    """``"old"`` or ``"new"``, from the build's ``--help``; a binary that cannot be asked
    (not built yet, rendering only) is taken as the sdist's old grammar."""
    try:
        done = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "old"
    return syntax_of(done.stdout + done.stderr)


def syntax_of(help_text: str) -> str:
    return "old" if re.search(r"--draft-max\b", help_text) else "new"


def log_counters(lines: Sequence[str]) -> list[tuple[int, int]]:
    """(accepted, drafted) per request, from the server's per-request log lines."""
    found = []
    for line in lines:
        match = _ACCEPTANCE_LINE.search(line)
        if match:
            found.append((int(match.group(1)), int(match.group(2))))
    return found


def autotune_reuse(lines: Sequence[str]) -> str | None:
    """The flags ``--spec-autotune`` says it would keep (its last ``Autotune reuse:`` line)."""
    last = None
    for line in lines:
        match = AUTOTUNE_LINE.search(line)
        if match:
            last = match.group(1)
    return last


class IkLlamaBackend(LlamaCppBackend):
    name = "ik_llama.cpp"
    methods: tuple[str, ...] = ("none", "draft-simple", "draft-mtp", "ngram-simple",
                                "ngram-map-k", "ngram-map-k4v", "ngram-mod")
    kv_flags: tuple[str, str, str] = ("-ctk", "-ctv", "-fa")
    draft_gpu_flags: tuple[str, ...] = ("-ngld", "--gpu-layers-draft", "--n-gpu-layers-draft")
    has_server_tuner = True  # --spec-autotune
    draft_min_flag = "--draft-min"

    def config_argv(self, config: SpecConfig, syntax: str = "old") -> list[str]:
        argv = self.cache_argv(config)
        if not drafts(config.method):
            return argv
        if config.server_tuned:
            argv.append("--spec-autotune")
        if uses_drafter(config.method) and config.method != "draft-mtp":
            assert config.drafter is not None
            argv += ["-md", config.drafter]
        if syntax == "new":
            keys = [f"n_max={config.draft_max}"]
            if config.draft_min is not None:
                keys.append(f"n_min={config.draft_min}")
            if config.p_min is not None:
                keys.append(f"p_min={config.p_min:g}")
            return argv + self.drafter_argv(replace(config, draft_min=None)) + [
                "--spec-type", f"{NEW_TYPES[config.method]}:{','.join(keys)}"]
        if config.method == "draft-mtp":
            argv.append("-mtp")
        elif not uses_drafter(config.method):
            argv += ["--spec-type", config.method]
        argv += ["--draft-max", str(config.draft_max)]
        if config.p_min is not None:  # always explicit: the default moved between builds
            argv += ["--draft-p-min", f"{config.p_min:g}"]
        return argv + self.drafter_argv(config)

    def launch_argv(self, launch: LaunchSettings, config: SpecConfig) -> list[str]:
        extra = list(launch.extra_args)
        if not drafts(config.method):
            extra = [word for word in extra if word != "--spec-autotune"]
        syntax = flag_syntax(launch.binary)
        return (self.common_argv(launch) + self.config_argv(config, syntax)
                + self.draft_offload_argv(launch, config, extra) + self.log_argv(syntax, extra)
                + extra)

    @staticmethod
    def log_argv(syntax: str, extra: Sequence[str]) -> list[str]:
        """The old-grammar build writes a trace log, ``llama.log``, into whatever folder it
        was started from (the user's, or a checkout); ``--log-disable`` stops only that file
        there, its console log (which carries acceptance) stays. Newer builds are left alone:
        the flag's meaning there is not verified."""
        if syntax != "old" or any(word.startswith("--log-") for word in extra):
            return []
        return ["--log-disable"]

    def log_acceptance(self, log_lines: Sequence[str]) -> list[tuple[int, int]]:
        return log_counters(log_lines)

    def tuner_choice(self, log_lines: Sequence[str]) -> str | None:
        return autotune_reuse(log_lines)

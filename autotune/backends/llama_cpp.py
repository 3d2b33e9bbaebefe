"""Mainline llama.cpp ``llama-server``: flags and outputs verified against build 11434
(see ``shared/reference/llama-server.md``); every draft parameter is a launch flag.

Each drafting method reads its own length flag: ``--spec-draft-n-max`` reaches only the
drafter methods, and every n-gram method ignores it (``ngram-mod`` reads
``--spec-ngram-mod-n-max/-n-min``, the map methods their ``-size-m``). Rendering one flag for
all made every "ngram-mod n=..." launch the same server (n-max 64). Flags equal to the server's
own defaults (f16 KV cache, flash attention auto) are left out, so the baseline is the server
exactly as it starts without us.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from autotune.backends.base import (
    LaunchSettings,
    ServerTimings,
    ServerWithoutLogFeatures,
    SpecCounters,
    counters_from,
    first_error_line,
    sum_samples,
)
from autotune.space import (
    DEFAULT_FLASH_ATTN,
    DEFAULT_KV,
    KV_TYPES,
    METHODS,
    SpecConfig,
    drafts,
    uses_drafter,
)

_METRIC_NAMES = {
    "llamacpp:spec_decode_num_drafts_total": "drafts",
    "llamacpp:spec_decode_num_draft_tokens_total": "draft_tokens",
    "llamacpp:spec_decode_num_accepted_tokens_total": "accepted_tokens",
    "llamacpp:spec_decode_num_accepted_tokens_per_pos_total": "per_position",
    "llamacpp:tokens_predicted_total": "generated_tokens",
    "llamacpp:tokens_predicted_seconds_total": "decode_seconds",
}
# The flag that sets the draft length, per n-gram method (drafter methods: --spec-draft-n-max).
NGRAM_LENGTH_FLAGS = {
    "ngram-mod": "--spec-ngram-mod-n-max",
    "ngram-simple": "--spec-ngram-simple-size-m",
    "ngram-map-k": "--spec-ngram-map-k-size-m",
    "ngram-map-k4v": "--spec-ngram-map-k4v-size-m",
}
# ngram-cache drafts a fixed 8 tokens from lookup-cache files: no length knob to search.
# EAGLE-1 and suffix decoding are other servers' methods.
SEARCHABLE_METHODS = tuple(m for m in METHODS if m not in ("ngram-cache", "draft-eagle", "suffix"))
# ngram-mod drops a draft shorter than n-min; the server's own default keeps n-min at 3/4 of
# n-max (48 of 64), and so do we at every length we search.
NGRAM_MOD_MIN_SHARE = 0.75
# Words llama.cpp uses on the line that explains a failed start.
_ERROR_MARKERS = ("error", "failed", "invalid argument", "requires", "unknown", "abort")


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


# Flags the server refuses without a drafting setup ("synthetic acceptance requires an
# initialized speculative decoding context"): given in server.extra_args for the drafting
# setups, they are left off the launches that do not draft.
DRAFTING_ONLY_FLAGS = {"--spec-synth-rates": 1, "--spec-synth-len": 1}


def without_flags(argv: Sequence[str], flags: Mapping[str, int]) -> list[str]:
    """``argv`` without each of ``flags`` and the number of values it takes."""
    kept: list[str] = []
    skip = 0
    for word in argv:
        if skip:
            skip -= 1
        elif word.split("=", 1)[0] in flags:
            skip = 0 if "=" in word else flags[word]
        else:
            kept.append(word)
    return kept


class LlamaCppBackend(ServerWithoutLogFeatures):
    name = "llama.cpp"
    kv_types: tuple[str, ...] = KV_TYPES
    methods: tuple[str, ...] = SEARCHABLE_METHODS
    health_path = "/health"
    has_server_tuner = False
    kv_one_dtype = False
    flash_attn_knob = True
    p_min_knob = True
    # "quantized V cache requires flash_attn to be enabled", exit 1: the drafter's cache too.
    quantized_v_needs_flash_attn = True
    drafter_knobs: tuple[str, ...] = ("draft_min", "draft_cache_types")
    # --spec-draft-n-min; the drafter's KV types (-ctkd/-ctvd, short forms both builds take).
    draft_min_flag = "--spec-draft-n-min"
    # The body keys exist; this build compiles them out (`#if 0`). The probe says which.
    per_request_knobs = True
    chat_path = "/v1/chat/completions"
    completion_path: str | None = "/completion"

    def common_argv(self, launch: LaunchSettings) -> list[str]:
        argv = [
            launch.binary,
            "--model", launch.model,
            "--host", launch.host,
            "--port", str(launch.port),
            "--ctx-size", str(launch.ctx_size),
            "--parallel", str(launch.parallel),
            "--metrics",
        ]
        if launch.threads is not None:
            argv += ["--threads", str(launch.threads)]
        if launch.gpu_layers is not None:
            argv += ["--n-gpu-layers", str(launch.gpu_layers)]
        return argv

    # The fork keeps the short spellings; mainline's long ones are the same flags.
    kv_flags: tuple[str, str, str] = ("--cache-type-k", "--cache-type-v", "--flash-attn")

    def cache_argv(self, config: SpecConfig) -> list[str]:
        """KV cache and flash-attention flags, only where they differ from the server's own
        defaults."""
        argv: list[str] = []
        k_flag, v_flag, fa_flag = self.kv_flags
        if config.cache_type_k != DEFAULT_KV:
            argv += [k_flag, config.cache_type_k]
        if config.cache_type_v != DEFAULT_KV:
            argv += [v_flag, config.cache_type_v]
        if config.flash_attn != DEFAULT_FLASH_ATTN:
            argv += [fa_flag, config.flash_attn]
        return argv

    def config_argv(self, config: SpecConfig) -> list[str]:
        argv = self.cache_argv(config)
        if drafts(config.method):
            argv += ["--spec-type", config.method, *self.length_argv(config)]
        if uses_drafter(config.method):
            assert config.drafter is not None
            argv += ["--spec-draft-model", config.drafter]
            if config.p_min is not None:  # always, from a search: the default moved
                argv += ["--spec-draft-p-min", f"{config.p_min:g}"]
            argv += self.drafter_argv(config)
        return argv

    def drafter_argv(self, config: SpecConfig) -> list[str]:
        """The drafter's own knobs, where the setup sets them (else the server's default)."""
        argv: list[str] = []
        if config.draft_min is not None:
            argv += [self.draft_min_flag, str(config.draft_min)]
        if config.draft_cache_type is not None:
            argv += ["-ctkd", config.draft_cache_type, "-ctvd", config.draft_cache_type]
        return argv

    @staticmethod
    def length_argv(config: SpecConfig) -> list[str]:
        """The flags that make ``config.draft_max`` reach the server for its method."""
        n = int(config.draft_max or 0)
        if config.method == "ngram-mod":
            n_min = max(1, math.ceil(NGRAM_MOD_MIN_SHARE * n))
            return ["--spec-ngram-mod-n-max", str(n), "--spec-ngram-mod-n-min", str(n_min)]
        if config.method in NGRAM_LENGTH_FLAGS:
            return [NGRAM_LENGTH_FLAGS[config.method], str(n)]
        return ["--spec-draft-n-max", str(n)]

    # The drafter's own GPU offload: without it the drafter runs on the CPU while the
    # verifier sits on the GPU (llama.cpp #10664: 45 -> 104 tok/s once -ngld 99 was added).
    draft_gpu_flags: tuple[str, ...] = ("--spec-draft-ngl", "-ngld", "--gpu-layers-draft",
                                        "--n-gpu-layers-draft")

    def draft_offload_argv(self, launch: LaunchSettings, config: SpecConfig,
                           extra: Sequence[str]) -> list[str]:
        given = any(word.split("=", 1)[0] in self.draft_gpu_flags for word in extra)
        if launch.gpu_layers is None or not uses_drafter(config.method) or given:
            return []
        return [self.draft_gpu_flags[0], str(launch.gpu_layers)]

    def launch_argv(self, launch: LaunchSettings, config: SpecConfig) -> list[str]:
        extra = list(launch.extra_args)
        if not drafts(config.method):
            extra = without_flags(extra, DRAFTING_ONLY_FLAGS)
        return (self.common_argv(launch) + self.config_argv(config)
                + self.draft_offload_argv(launch, config, extra) + extra)

    def parse_timings(self, payload: Mapping[str, Any]) -> ServerTimings | None:
        timings = payload.get("timings")
        if not isinstance(timings, Mapping):
            return None
        return ServerTimings(
            prompt_tokens=_int(timings.get("prompt_n")),
            prompt_ms=_float(timings.get("prompt_ms")),
            predicted_tokens=_int(timings.get("predicted_n")),
            predicted_ms=_float(timings.get("predicted_ms")),
            predicted_per_second=_float(timings.get("predicted_per_second")),
            draft_tokens=_int(timings.get("draft_n")),
            draft_accepted=_int(timings.get("draft_n_accepted")),
        )

    def parse_metrics(self, text: str) -> SpecCounters:
        return counters_from(*sum_samples(text, _METRIC_NAMES))

    def startup_error(self, log_lines: Sequence[str]) -> str | None:
        return first_error_line(log_lines, _ERROR_MARKERS)

    def request_knobs(self, config: SpecConfig) -> dict[str, float | int]:
        if not drafts(config.method) or config.draft_max is None:
            return {}
        knobs: dict[str, float | int] = {"speculative.n_max": config.draft_max}
        if config.p_min is not None:
            knobs["speculative.p_min"] = config.p_min
        if config.draft_min is not None:
            knobs["speculative.n_min"] = config.draft_min
        return knobs

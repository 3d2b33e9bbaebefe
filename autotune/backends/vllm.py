"""vLLM's OpenAI server. Not run here (needs a GPU); flags and metric names follow vLLM's
documentation: ``--speculative-config`` JSON, ``--kv-cache-dtype``, and the
``vllm:spec_decode_*`` counters including ``..._per_pos_total{position=...}``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from autotune.backends.base import (
    LaunchSettings,
    ServerWithoutLogFeatures,
    ServerTimings,
    SpecCounters,
    counters_from,
    first_error_line,
    sum_samples,
    usage_timings,
)
from autotune.space import SpecConfig, drafts, kv_is_quantized, uses_drafter

_METRIC_NAMES = {
    "vllm:spec_decode_num_drafts_total": "drafts",
    "vllm:spec_decode_num_draft_tokens_total": "draft_tokens",
    "vllm:spec_decode_num_accepted_tokens_total": "accepted_tokens",
    "vllm:spec_decode_num_accepted_tokens_per_pos_total": "per_position",
    "vllm:generation_tokens_total": "generated_tokens",
    # Summed per-request decode time (a histogram's _sum): tokens over it is decode speed.
    "vllm:request_decode_time_seconds_sum": "decode_seconds",
}
_METHOD_NAMES = {
    "draft-simple": "draft_model",
    "draft-mtp": "mtp",
    "draft-eagle": "eagle",
    "draft-eagle3": "eagle3",
    "ngram-simple": "ngram",
    "suffix": "suffix",  # suffix decoding: model-free, num_speculative_tokens caps a draft
}


class VllmBackend(ServerWithoutLogFeatures):
    name = "vllm"
    # vLLM has one dtype for K and V: the spec's cache_type_k is used, V must match.
    kv_types: tuple[str, ...] = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2")
    methods: tuple[str, ...] = ("none", *_METHOD_NAMES)
    health_path = "/health"
    has_server_tuner = False
    kv_one_dtype = True
    flash_attn_knob = False
    p_min_knob = False
    quantized_v_needs_flash_attn = False
    # speculative-config "quantization" (draft weights) and "kv_cache_dtype" (the draft's
    # KV cache; it inherits the target's when left out).
    drafter_knobs: tuple[str, ...] = ("draft_cache_types", "draft_quantizations")
    per_request_knobs = False
    chat_path = "/v1/chat/completions"
    completion_path: str | None = None

    def launch_argv(self, launch: LaunchSettings, config: SpecConfig) -> list[str]:
        argv = [
            launch.binary, "serve", launch.model,
            "--host", launch.host,
            "--port", str(launch.port),
            "--max-model-len", str(launch.ctx_size),
            "--max-num-seqs", str(launch.parallel),
        ]
        if kv_is_quantized(config.cache_type_k):  # unquantized: the server's own default
            argv += ["--kv-cache-dtype", config.cache_type_k]
        if drafts(config.method):
            speculative: dict[str, Any] = {
                "method": _METHOD_NAMES[config.method],
                "num_speculative_tokens": config.draft_max,
            }
            if uses_drafter(config.method):
                speculative["model"] = config.drafter
                if config.draft_quantization is not None:
                    speculative["quantization"] = config.draft_quantization
                if config.draft_cache_type is not None:
                    speculative["kv_cache_dtype"] = config.draft_cache_type
            if config.method == "ngram-simple":
                speculative["prompt_lookup_max"] = 4
            argv += ["--speculative-config", json.dumps(speculative, sort_keys=True)]
        return argv + list(launch.extra_args)

    def parse_timings(self, payload: Mapping[str, Any]) -> ServerTimings | None:
        return usage_timings(payload)

    def parse_metrics(self, text: str) -> SpecCounters:
        return counters_from(*sum_samples(text, _METRIC_NAMES))

    def startup_error(self, log_lines: Sequence[str]) -> str | None:
        return first_error_line(log_lines, ("error", "exception", "valueerror", "out of memory"))

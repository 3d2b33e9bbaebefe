"""SGLang. Not run here (needs a GPU); flags follow SGLang's speculative-decoding docs
(``--speculative-algorithm``, ``--speculative-num-draft-tokens``...). SGLang exports gauges, not
per-position counters: ``sglang:spec_accept_length`` is mean tokens per verify step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from autotune.backends.base import (
    LaunchSettings,
    ServerWithoutLogFeatures,
    ServerTimings,
    SpecCounters,
    first_error_line,
    usage_timings,
)
from autotune.space import SpecConfig, drafts, kv_is_quantized, uses_drafter

_ALGORITHMS = {
    "draft-simple": "STANDALONE",
    "draft-eagle": "EAGLE",
    "draft-eagle3": "EAGLE3",
    "draft-mtp": "NEXTN",
    "ngram-simple": "NGRAM",
}


class SglangBackend(ServerWithoutLogFeatures):
    name = "sglang"
    kv_types: tuple[str, ...] = ("auto", "fp8_e4m3", "fp8_e5m2")
    methods: tuple[str, ...] = ("none", *_ALGORITHMS)
    health_path = "/health"
    has_server_tuner = False
    kv_one_dtype = True
    flash_attn_knob = False
    p_min_knob = False
    quantized_v_needs_flash_attn = False
    drafter_knobs: tuple[str, ...] = ("draft_quantizations",)
    per_request_knobs = False
    chat_path = "/v1/chat/completions"
    completion_path: str | None = None

    def launch_argv(self, launch: LaunchSettings, config: SpecConfig) -> list[str]:
        argv = [
            launch.binary, "-m", "sglang.launch_server",
            "--model-path", launch.model,
            "--host", launch.host,
            "--port", str(launch.port),
            "--context-length", str(launch.ctx_size),
            "--max-running-requests", str(launch.parallel),
        ]
        if kv_is_quantized(config.cache_type_k):  # unquantized: the server's own default
            argv += ["--kv-cache-dtype", config.cache_type_k]
        if drafts(config.method):
            assert config.draft_max is not None
            argv += [
                "--speculative-algorithm", _ALGORITHMS[config.method],
                "--speculative-num-steps", str(config.draft_max),
                "--speculative-eagle-topk", "1",
                "--speculative-num-draft-tokens", str(config.draft_max + 1),
            ]
        if uses_drafter(config.method):
            argv += ["--speculative-draft-model-path", str(config.drafter)]
            if config.draft_quantization is not None:
                argv += ["--speculative-draft-model-quantization", config.draft_quantization]
        return argv + ["--enable-metrics", *launch.extra_args]

    def parse_timings(self, payload: Mapping[str, Any]) -> ServerTimings | None:
        return usage_timings(payload)

    def parse_metrics(self, text: str) -> SpecCounters:
        generated = 0.0
        accept_length: float | None = None
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "sglang:generation_tokens_total":
                    generated += sample.value
                elif sample.name == "sglang:spec_accept_length":
                    accept_length = sample.value
        # A gauge of mean accepted length cannot be differenced into counters; report it as
        # accepted tokens per single draft so ratios stay meaningful.
        if accept_length is None:
            return SpecCounters(generated_tokens=generated)
        return SpecCounters(
            drafts=1.0, accepted_tokens=max(accept_length - 1.0, 0.0),
            generated_tokens=generated, present=True, levels=True,
        )

    def startup_error(self, log_lines: Sequence[str]) -> str | None:
        return first_error_line(log_lines, ("error", "exception", "out of memory"))

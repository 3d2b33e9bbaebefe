"""vLLM and SGLang from recorded fixtures (tests/fixtures/, written for this project from the
projects' documented formats; neither server runs here): every flag we render is one their
CLI documents, their /metrics pages parse into the right counters, and an OpenAI-style stream
gives tokens, TTFT and usage through the real prober code."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import pytest

from autotune.backends import LaunchSettings, get_backend
from autotune.measurements import RequestSample
from autotune.prober import send_one
from autotune.space import SpecConfig
from autotune.workload import Prompt

FIXTURES = Path(__file__).with_name("fixtures")
SETTINGS = LaunchSettings("srv", "org/model", "127.0.0.1", 8000, 4096, 8)


def documented_flags(kind: str) -> set[str]:
    text = (FIXTURES / f"{kind}-help.txt").read_text()
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text))


@pytest.mark.parametrize("kind", ["vllm", "sglang"])
def test_every_rendered_flag_is_documented(kind: str) -> None:
    backend = get_backend(kind)
    known = documented_flags(kind)
    for method in backend.methods:
        params = {"method": method, "draft_max": 3, "p_min": 0.0, "drafter": "org/drafter",
                  "cache_type_k": backend.kv_types[-1], "cache_type_v": "auto",
                  "flash_attn": "on"}
        # the drafter's own knobs, where this server has them
        if "draft_quantizations" in backend.drafter_knobs:
            params["draft_quantization"] = "fp8"
        if "draft_cache_types" in backend.drafter_knobs:
            params["draft_cache_type"] = backend.kv_types[-1]
        argv = backend.launch_argv(SETTINGS, SpecConfig.from_params(params))
        flags = {word for word in argv if word.startswith("--")}
        assert flags <= known, (method, flags - known)


def test_vllm_speculative_config_keys_are_documented_and_carry_the_drafter_knobs() -> None:
    text = (FIXTURES / "vllm-help.txt").read_text()
    known = set(re.search(r"speculative-config keys: (.*)", text).group(1).split())
    config = SpecConfig("draft-simple", 3, 0.0, "org/drafter", draft_cache_type="fp8",
                        draft_quantization="fp8")
    argv = get_backend("vllm").launch_argv(SETTINGS, config)
    rendered = json.loads(argv[argv.index("--speculative-config") + 1])
    assert set(rendered) <= known
    assert rendered["quantization"] == "fp8" and rendered["kv_cache_dtype"] == "fp8"
    plain = get_backend("vllm").launch_argv(SETTINGS, SpecConfig("draft-simple", 3, 0.0, "d"))
    assert "kv_cache_dtype" not in plain[plain.index("--speculative-config") + 1]


def test_sglang_quantizes_the_drafter_at_load() -> None:
    config = SpecConfig("draft-simple", 3, 0.0, "org/drafter", draft_quantization="fp8")
    argv = get_backend("sglang").launch_argv(SETTINGS, config)
    assert argv[argv.index("--speculative-draft-model-quantization") + 1] == "fp8"


def test_vllm_counters_sum_engines_and_positions_start_at_zero() -> None:
    counters = get_backend("vllm").parse_metrics((FIXTURES / "vllm-metrics.txt").read_text())
    assert counters.present and counters.drafts == 2300 and counters.draft_tokens == 6900
    assert counters.accepted_tokens == 4600 and counters.generated_tokens == 10000
    assert counters.decode_seconds == pytest.approx(100.0)
    assert counters.per_position_acceptance() == pytest.approx([1900 / 2300, 1550 / 2300,
                                                                1150 / 2300])


def test_sglang_gauges_are_a_level() -> None:
    counters = get_backend("sglang").parse_metrics((FIXTURES / "sglang-metrics.txt").read_text())
    assert counters.levels and counters.present
    assert counters.accepted_tokens / counters.drafts == pytest.approx(2.2)  # length 3.2 - 1
    assert counters.generated_tokens == 8000


@pytest.mark.parametrize("kind", ["vllm", "sglang"])
def test_a_recorded_stream_goes_through_the_prober(kind: str) -> None:
    body = (FIXTURES / "openai-stream.txt").read_bytes()

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/chat/completions"
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    prompt = Prompt(index=0, label="chat", max_tokens=16, temperature=0.0, weight=1.0,
                    messages=({"role": "user", "content": "colours?"},))

    async def send() -> RequestSample:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            return await send_one(client, get_backend(kind), "http://server", prompt,
                                  concurrency=1, warmup=False, window_start=0.0)

    sample = asyncio.run(send())
    assert sample.error is None and sample.generated_tokens == 5  # from usage, not chunks
    assert sample.prompt_tokens == 12 and sample.ttft_s is not None


def test_every_rendered_method_name_is_documented() -> None:
    vllm_text = (FIXTURES / "vllm-help.txt").read_text()
    vllm_methods = set(re.search(r"speculative-config methods: (.*)", vllm_text).group(1).split())
    sglang_text = (FIXTURES / "sglang-help.txt").read_text()
    sglang_methods = set(re.search(r"--speculative-algorithm \{(.*)\}", sglang_text)
                         .group(1).split(","))
    for kind, documented in (("vllm", vllm_methods), ("sglang", sglang_methods)):
        backend = get_backend(kind)
        assert {"draft-eagle", "draft-eagle3"} <= set(backend.methods)
        for method in backend.methods[1:]:
            config = SpecConfig.from_params({"method": method, "draft_max": 3, "p_min": 0.0,
                                             "drafter": "org/drafter"})
            argv = backend.launch_argv(SETTINGS, config)
            if kind == "vllm":
                name = json.loads(argv[argv.index("--speculative-config") + 1])["method"]
            else:
                name = argv[argv.index("--speculative-algorithm") + 1]
            assert name in documented, (kind, method, name)
    assert "suffix" in get_backend("vllm").methods

import json

import pytest

from autotune.backends import LaunchSettings, backend_names, get_backend
from autotune.space import SpecConfig

SETTINGS = LaunchSettings(binary="srv", model="m.gguf", host="127.0.0.1", port=9000,
                          ctx_size=2048, parallel=2, threads=4)
DRAFT = SpecConfig("draft-simple", 3, 0.6, "d.gguf", "q8_0", "q8_0", "on")

# Shaped like the real server's /metrics page (llama-server build 11434, --metrics).
LLAMA_METRICS = """\
# HELP llamacpp:tokens_predicted_total Number of generation tokens processed.
# TYPE llamacpp:tokens_predicted_total counter
llamacpp:tokens_predicted_total 60
# TYPE llamacpp:spec_decode_num_draft_tokens_total counter
llamacpp:spec_decode_num_draft_tokens_total 12
# TYPE llamacpp:spec_decode_num_accepted_tokens_total counter
llamacpp:spec_decode_num_accepted_tokens_total 9
# TYPE llamacpp:spec_decode_num_drafts_total counter
llamacpp:spec_decode_num_drafts_total 4
# TYPE llamacpp:spec_decode_num_accepted_tokens_per_pos_total counter
llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="0"} 4
llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="1"} 3
llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="2"} 2
llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="3"} 0
"""


def test_unknown_kind_names_the_available_ones() -> None:
    with pytest.raises(KeyError, match="available: llama.cpp, ik_llama.cpp, vllm, sglang"):
        get_backend("tgi")


def test_llama_cpp_flags() -> None:
    argv = get_backend("llama.cpp").launch_argv(SETTINGS, DRAFT)
    assert argv[0] == "srv"
    pairs = dict(zip(argv[1::2], argv[2::2], strict=False))
    joined = " ".join(argv)
    assert "--spec-type draft-simple" in joined and "--spec-draft-n-max 3" in joined
    assert "--spec-draft-model d.gguf" in joined and "--spec-draft-p-min 0.6" in joined
    assert "--cache-type-v q8_0" in joined and "--flash-attn on" in joined
    assert "--metrics" in argv and pairs.get("--host") == "127.0.0.1"
    # the removed spelling would make the server exit at start
    assert "--draft-max" not in argv


def test_baseline_renders_no_draft_flags() -> None:
    argv = get_backend("llama.cpp").launch_argv(SETTINGS, SpecConfig())
    assert not any(a.startswith("--spec") for a in argv)


def test_ik_llama_uses_the_forks_spelling() -> None:
    # the 0.1.5 sdist's grammar (a binary that cannot be asked is taken as that build)
    mtp = SpecConfig("draft-mtp", 2, 0.0, "mtp.gguf")
    joined = " ".join(get_backend("ik_llama.cpp").launch_argv(SETTINGS, mtp))
    assert "-mtp --draft-max 2 --draft-p-min 0" in joined and "-md" not in joined
    drafter = SpecConfig("draft-simple", 4, 0.5, "d.gguf")
    joined = " ".join(get_backend("ik_llama.cpp").launch_argv(SETTINGS, drafter))
    assert "-md d.gguf --draft-max 4 --draft-p-min 0.5" in joined


def test_vllm_speculative_config_is_json() -> None:
    config = SpecConfig("draft-mtp", 4, 0.0, "drafter", "fp8", "fp8", "on")
    argv = get_backend("vllm").launch_argv(SETTINGS, config)
    spec = json.loads(argv[argv.index("--speculative-config") + 1])
    assert spec == {"method": "mtp", "model": "drafter", "num_speculative_tokens": 4}
    assert argv[argv.index("--kv-cache-dtype") + 1] == "fp8"


def test_sglang_flags() -> None:
    config = SpecConfig("draft-eagle3", 3, 0.0, "eagle", "auto", "auto", "off")
    joined = " ".join(get_backend("sglang").launch_argv(SETTINGS, config))
    assert "--speculative-algorithm EAGLE3" in joined
    assert "--speculative-num-draft-tokens 4" in joined


def test_llama_metrics_per_position() -> None:
    counters = get_backend("llama.cpp").parse_metrics(LLAMA_METRICS)
    assert counters.present and counters.drafts == 4 and counters.accepted_tokens == 9
    assert counters.per_position_acceptance() == [1.0, 0.75, 0.5]


def test_metric_windows_subtract() -> None:
    backend = get_backend("llama.cpp")
    before = backend.parse_metrics(LLAMA_METRICS)
    after = backend.parse_metrics(LLAMA_METRICS.replace(" 12\n", " 20\n").replace(" 4\n", " 6\n", 1))
    window = after.minus(before)
    assert window.draft_tokens == 8
    assert before.plus(window).draft_tokens == 20


def test_vllm_metrics() -> None:
    text = (
        'vllm:spec_decode_num_drafts_total{model_name="m"} 10\n'
        'vllm:spec_decode_num_draft_tokens_total{model_name="m"} 40\n'
        'vllm:spec_decode_num_accepted_tokens_total{model_name="m"} 18\n'
        'vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name="m",position="0"} 8\n'
        'vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name="m",position="1"} 6\n'
    )
    counters = get_backend("vllm").parse_metrics(text)
    assert counters.per_position_acceptance() == [0.8, 0.6]


def test_llama_timings() -> None:
    payload = {"timings": {"prompt_n": 59, "predicted_n": 60, "predicted_ms": 1134.8,
                           "predicted_per_second": 51.99, "draft_n": 4, "draft_n_accepted": 3}}
    timings = get_backend("llama.cpp").parse_timings(payload)
    assert timings is not None and timings.draft_tokens == 4 and timings.draft_accepted == 3


def test_startup_error_line_is_the_servers_own() -> None:
    log = ["load_model: loading model\n",
           "llama_init_from_model: quantized V cache requires flash_attn to be enabled\n"]
    line = get_backend("llama.cpp").startup_error(log)
    assert line is not None and "quantized V cache requires flash_attn" in line


@pytest.mark.parametrize("kind", backend_names())
def test_every_backend_renders_every_method_it_lists(kind: str) -> None:
    backend = get_backend(kind)
    kv = backend.kv_types[0]
    for method in backend.methods:
        params = {"method": method, "draft_max": 2, "p_min": 0.5, "drafter": "d",
                  "cache_type_k": kv, "cache_type_v": kv}
        argv = backend.launch_argv(SETTINGS, SpecConfig.from_params(params))
        assert argv[0] == "srv" and all(isinstance(a, str) for a in argv)


def test_drafting_only_extra_flags_are_left_off_launches_that_do_not_draft() -> None:
    backend = get_backend("llama.cpp")
    launch = LaunchSettings("llama-server", "m.gguf", "127.0.0.1", 8080, 2048, 1,
                            extra_args=("--spec-synth-rates", "0.3,0.2", "--metrics-x",
                                        "--spec-synth-len=4"))
    plain = backend.launch_argv(launch, SpecConfig())
    assert "--spec-synth-rates" not in plain and "0.3,0.2" not in plain
    assert "--spec-synth-len=4" not in plain and "--metrics-x" in plain
    drafting = backend.launch_argv(launch, SpecConfig("ngram-mod", 8))
    assert drafting[-4:] == ["--spec-synth-rates", "0.3,0.2", "--metrics-x", "--spec-synth-len=4"]


def test_with_gpu_layers_the_drafter_is_offloaded_too() -> None:
    drafter = SpecConfig("draft-simple", 4, 0.5, "d.gguf")
    on_gpu = LaunchSettings("llama-server", "m.gguf", "127.0.0.1", 8080, 2048, 1, gpu_layers=99)
    argv = get_backend("llama.cpp").launch_argv(on_gpu, drafter)
    assert argv[argv.index("--spec-draft-ngl") + 1] == "99"
    assert "-ngld" in get_backend("ik_llama.cpp").launch_argv(on_gpu, drafter)
    # n-gram lookup has no drafter to offload; a user's own -ngld wins; no GPU, no flag.
    assert "--spec-draft-ngl" not in get_backend("llama.cpp").launch_argv(
        on_gpu, SpecConfig("ngram-mod", 8))
    own = LaunchSettings("llama-server", "m.gguf", "127.0.0.1", 8080, 2048, 1, gpu_layers=99,
                         extra_args=("-ngld", "20"))
    assert get_backend("llama.cpp").launch_argv(own, drafter).count("-ngld") == 1
    assert "--spec-draft-ngl" not in get_backend("llama.cpp").launch_argv(
        own, drafter)
    cpu = LaunchSettings("llama-server", "m.gguf", "127.0.0.1", 8080, 2048, 1)
    assert "--spec-draft-ngl" not in get_backend("llama.cpp").launch_argv(cpu, drafter)


def test_llama_cpp_renders_the_drafters_own_knobs_and_sends_n_min_per_request() -> None:
    backend = get_backend("llama.cpp")
    config = SpecConfig("draft-simple", 6, 0.5, "d.gguf", "f16", "f16", "on", draft_min=2,
                        draft_cache_type="q8_0")
    argv = backend.launch_argv(SETTINGS, config)
    assert argv[argv.index("--spec-draft-n-min") + 1] == "2"
    assert argv[argv.index("-ctkd") + 1] == "q8_0" and argv[argv.index("-ctvd") + 1] == "q8_0"
    assert backend.request_knobs(config)["speculative.n_min"] == 2
    plain = backend.launch_argv(SETTINGS, SpecConfig("draft-simple", 6, 0.5, "d.gguf"))
    assert "--spec-draft-n-min" not in plain and "-ctkd" not in plain  # the server's defaults

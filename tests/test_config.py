from pathlib import Path

import pytest

from autotune.config import parse_spec
from autotune.errors import SpecError


def parse(data: dict) -> object:
    return parse_spec(data, source="spec.toml", base_dir=Path("/specs"))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"space": {"cache_type_k": ["q9_9"]}}, "space.cache_type_k: unknown KV cache type 'q9_9'"),
        ({"space": {"draft_max": {"low": -1, "high": 4}}}, "space.draft_max.low"),
        ({"space": {"draft_max": {"low": 5, "high": 2}}}, "swap them"),
        ({"space": {"methods": ["draft-simple"]}}, "list drafter GGUF files in space.drafters"),
        ({"space": {"methods": ["warp-drive"]}}, "unknown method 'warp-drive'"),
        ({"sever": {}}, "sever: Extra inputs are not permitted; did you mean 'server'?"),
        ({"workload": {"concurrency": [4]}}, "set server.parallel = 4"),
        ({"server": {"kind": "vllm"}, "space": {"cache_type_k": ["q8_0"],
                                                "cache_type_v": ["auto"]}}, "for vllm"),
        ({"server": {"kind": "vllm"}, "space": {"cache_type_k": ["fp8"]}},
         "vllm has one KV cache dtype for K and V (--kv-cache-dtype)"),
        ({"server": {"kind": "sglang"}, "space": {"cache_type_k": ["auto"], "cache_type_v": [
            "auto"], "flash_attn": ["auto", "off"]}}, "sglang has no flash-attention flag"),
        ({"finish": {"rounds": 6, "max_rounds": 4}}, "set max_rounds >= rounds"),
        # each server kind declares its drafter knobs and its own flash-attention rule
        ({"server": {"kind": "sglang"}, "space": {
            "cache_type_k": ["auto"], "cache_type_v": ["auto"], "methods": ["draft-simple"],
            "drafters": ["org/d"], "draft_min": {"low": 0, "high": 2}}},
         "space.draft_min: sglang has no such drafter knob"),
        ({"space": {"methods": ["draft-simple"], "drafters": ["d.gguf"],
                    "draft_quantizations": ["fp8"]}},
         "space.draft_quantizations: llama.cpp has no such drafter knob"),
        ({"space": {"methods": ["ngram-mod"], "draft_min": {"low": 0, "high": 2}}},
         "apply to drafter methods only"),
        ({"space": {"methods": ["draft-simple"], "drafters": ["d.gguf"],
                    "draft_cache_types": ["q4_0"], "flash_attn": ["off"]}},
         "'q4_0' as a V cache needs flash attention on with llama.cpp"),
        ({"space": {"methods": ["draft-simple"], "drafters": ["d.gguf"],
                    "draft_cache_types": ["q9_9"]}}, "space.draft_cache_types: unknown KV"),
        ({"server": {"kind": "vllm"}, "space": {
            "cache_type_k": ["auto"], "cache_type_v": ["auto"], "methods": ["draft-simple"],
            "drafters": ["org/d"], "p_min": {"low": 0.0, "high": 0.5}}},
         "space.p_min: vllm has no p-min"),
    ],
)
def test_bad_specs_name_the_key_and_the_fix(data: dict, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        parse(data)
    message = str(info.value)
    assert message.startswith("spec.toml: ")
    assert expected in message
    assert "\n" not in message


def test_baseline_is_always_in_the_space() -> None:
    spec = parse({"space": {"methods": ["ngram-mod"]}})
    assert spec.space.methods[0] == "none"


def test_relative_paths_resolve_against_the_spec_folder() -> None:
    spec = parse({"server": {"model": "m.gguf"}, "workload": {"files": ["w.jsonl"]},
                  "store": {"path": "r.db"}})
    assert spec.server.model == "/specs/m.gguf"
    assert spec.workload.files == ["/specs/w.jsonl"]
    assert spec.store.path == "/specs/r.db"


@pytest.mark.parametrize("kind", ["vllm", "sglang"])
def test_hub_servers_keep_a_hugging_face_id_as_written(kind: str, tmp_path: Path) -> None:
    def load(model: str, drafter: str) -> object:
        return parse_spec({"server": {"kind": kind, "model": model}, "space": {
            "cache_type_k": ["auto"], "cache_type_v": ["auto"], "methods": ["draft-eagle3"],
            "drafters": [drafter]}}, source="spec.toml", base_dir=tmp_path)

    spec = load("Qwen/Qwen3-8B", "Tengyunw/qwen3_8b_eagle3")
    assert spec.server.model == "Qwen/Qwen3-8B"  # not <spec folder>/Qwen/Qwen3-8B
    assert spec.space.drafters == ["Tengyunw/qwen3_8b_eagle3"]
    (tmp_path / "models" / "q8b").mkdir(parents=True)  # a folder next to the spec is a path
    spec = load("models/q8b", "./heads/eagle")
    assert spec.server.model == str(tmp_path / "models" / "q8b")
    assert spec.space.drafters == [str(tmp_path / "heads" / "eagle")]
    llama = parse({"server": {"model": "Qwen/Qwen3-8B.gguf"}})  # llama-server takes files
    assert llama.server.model == "/specs/Qwen/Qwen3-8B.gguf"


def test_default_spec_is_valid() -> None:
    from autotune.config import load_spec
    from autotune.embedded import default_spec_path

    spec = load_spec(default_spec_path())
    assert spec.search.trials >= 12
    assert len(spec.space.to_space().grid()) > 100


def test_the_flash_attention_rule_is_the_servers() -> None:
    llama = parse({"space": {"cache_type_v": ["q8_0"]}})
    assert all(c.flash_attn == "on" for c in llama.search_space().grid())
    vllm = parse({"server": {"kind": "vllm"}, "space": {
        "cache_type_k": ["fp8"], "cache_type_v": ["auto"], "methods": ["draft-simple"],
        "drafters": ["org/d"], "draft_cache_types": ["fp8"], "draft_quantizations": ["fp8"]}})
    space = vllm.search_space()
    assert not space.quantized_v_needs_flash_attn
    # no p-min on vLLM: its setups carry none (once they were all labelled 'p=0')
    assert {c.p_min for c in space.grid() if c.drafter} == {None}
    assert not any(" p=" in c.describe() for c in space.grid())
    # nor must a pinned gate setup name one (it was refused: "not a setup ('p_min')")
    pinned = parse({"server": {"kind": "vllm"}, "space": {
        "cache_type_k": ["auto"], "cache_type_v": ["auto"]}, "gate": {
        "setup": {"method": "draft-eagle3", "draft_max": 3, "drafter": "org/head"}}})
    assert pinned.gate.setup is not None  # type: ignore[attr-defined]
    assert {c.draft_quantization for c in space.grid() if c.drafter} == {"fp8"}


@pytest.mark.parametrize("path", sorted(
    p for p in (Path(__file__).resolve().parents[1] / "examples").rglob("*.toml")))
def test_every_example_spec_is_valid(path: Path) -> None:
    from autotune.config import load_spec

    spec = load_spec(path)
    assert spec.search_space().grid()
    if spec.server.kind in ("vllm", "sglang"):  # Hugging Face ids, launched as written
        assert not spec.server.model.startswith(str(path.parent))


SPECS = sorted((Path(__file__).resolve().parents[1] / "examples").rglob("*.toml"))


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_no_two_setups_of_a_space_launch_the_same_server(path: Path) -> None:
    """The baseline too: vLLM and SGLang label their unquantized KV "auto", so their baseline
    is "none | kv auto/auto", not llama.cpp's f16 (once measured twice under two labels)."""
    from autotune.backends import LaunchSettings, get_backend
    from autotune.config import load_spec
    from autotune.space import is_baseline

    spec = load_spec(path)
    space = spec.search_space()
    backend = get_backend(spec.server.kind)
    settings = LaunchSettings(binary="server", model="model", host="127.0.0.1", port=8080,
                              ctx_size=2048, parallel=1)
    setups = list(dict.fromkeys([space.baseline, *space.grid()]))
    launches: dict[str, str] = {}
    for config in setups:
        argv = " ".join(backend.launch_argv(settings, config))
        assert argv not in launches, (config.describe(), launches.get(argv))
        launches[argv] = config.describe()
    assert is_baseline(space.baseline) and space.baseline in space.grid()


@pytest.mark.parametrize("kind", ["vllm", "sglang"])
def test_hub_servers_drafters_are_not_checked_as_gguf_files(kind: str, tmp_path: Path) -> None:
    from autotune.embedded import resolve_files

    spec = parse_spec({"server": {"kind": kind, "binary": "server", "model": "org/model"},
                       "space": {"cache_type_k": ["auto"], "cache_type_v": ["auto"],
                                 "methods": ["none", "draft-eagle3"],
                                 "drafters": ["org/eagle3-head"]}},
                      source="spec.toml", base_dir=tmp_path)
    resolved = resolve_files(spec)  # said "drafter file not found: org/eagle3-head"
    assert resolved.space.drafters == ["org/eagle3-head"]
    assert resolved.server.model == "org/model"

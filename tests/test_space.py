from hypothesis import given
from hypothesis import strategies as st

from autotune.space import (
    BASELINE,
    FloatRange,
    IntRange,
    SearchSpace,
    SpecConfig,
    kv_is_quantized,
    uses_drafter,
)

SPACE = SearchSpace(
    methods=("none", "draft-simple", "ngram-mod"),
    draft_max=IntRange(1, 4),
    p_min=FloatRange(0.0, 0.9, 0.3),
    drafters=("a.gguf", "b.gguf"),
    cache_type_k=("f16", "q8_0"),
    cache_type_v=("f16", "q8_0"),
    flash_attn=("off", "on"),
)


def test_grid_respects_conditions() -> None:
    grid = SPACE.grid()
    assert len(grid) == len(set(grid))
    for config in grid:
        if uses_drafter(config.method):
            assert config.drafter is not None and config.p_min is not None
        else:
            assert config.drafter is None and config.p_min is None
        if config.method == "none":
            assert config.draft_max is None
        if kv_is_quantized(config.cache_type_v):
            assert config.flash_attn == "on"
        assert SPACE.contains(config)


def test_grid_size_counts_conditional_branches() -> None:
    kv = 6  # (f16|q8_0 K) x (f16 V: fa off/on, q8_0 V: fa on)
    drafter_setups = 2 * 4 * 4  # drafters x draft_max x p_min
    assert len(SPACE.grid()) == (1 + 4 + drafter_setups) * kv


@given(st.sampled_from(SPACE.grid()))
def test_params_round_trip(config: SpecConfig) -> None:
    assert SpecConfig.from_params(config.to_params()) == config
    assert SpecConfig.from_params(config.to_params()).key == config.key


def test_quantized_v_forces_flash_attention_where_the_server_says_so() -> None:
    config = SpecConfig.from_params({"method": "none", "cache_type_v": "q8_0", "flash_attn": "off"})
    assert SPACE.settle(config).flash_attn == "on"  # llama.cpp's rule
    no_rule = SearchSpace(cache_type_v=("q8_0",), flash_attn=("off",),
                          quantized_v_needs_flash_attn=False)
    assert no_rule.settle(config) == config
    assert no_rule.contains(config) and not SPACE.contains(config)


DRAFTER_KNOBS = SearchSpace(
    methods=("none", "draft-simple"), draft_max=IntRange(1, 4, 3), p_min=FloatRange(0.0, 0.5, 0.5),
    drafters=("a.gguf",), draft_min=IntRange(0, 2, 2), draft_cache_types=(None, "q8_0"),
    flash_attn=("auto", "off"),
)


def test_draft_min_exists_only_up_to_draft_max() -> None:
    grid = DRAFTER_KNOBS.grid()
    drafting = [c for c in grid if c.method == "draft-simple"]
    assert {c.draft_min for c in drafting if c.draft_max == 1} == {0}
    assert {c.draft_min for c in drafting if c.draft_max == 4} == {0, 2}
    assert all(c.draft_min is None for c in grid if c.method == "none")
    assert all(DRAFTER_KNOBS.contains(c) for c in grid)


def test_a_quantized_drafter_cache_forces_flash_attention() -> None:
    grid = DRAFTER_KNOBS.grid()
    assert all(c.flash_attn == "on" for c in grid if c.draft_cache_type == "q8_0")
    assert {c.flash_attn for c in grid if c.draft_cache_type is None} == {"auto", "off"}


@given(st.sampled_from(DRAFTER_KNOBS.grid()))
def test_drafter_knobs_round_trip(config: SpecConfig) -> None:
    assert SpecConfig.from_params(config.to_params()) == config


def test_drafter_knobs_only_for_drafter_methods() -> None:
    import pytest

    with pytest.raises(ValueError, match="drafter methods"):
        SpecConfig("ngram-mod", 4, draft_min=2)
    with pytest.raises(ValueError, match="draft_min"):
        SpecConfig("draft-simple", 2, 0.5, "a.gguf", draft_min=3)
    # a fixed setup's key stays what it was before these knobs existed
    assert "draft_min" not in SpecConfig("draft-simple", 2, 0.5, "a.gguf").key


def test_simplicity_prefers_no_drafter_then_fewer_tokens() -> None:
    ngram2 = SpecConfig("ngram-mod", 2)
    ngram6 = SpecConfig("ngram-mod", 6)
    drafter = SpecConfig("draft-simple", 1, 0.5, "a.gguf")
    ranked = sorted([drafter, ngram6, BASELINE, ngram2], key=lambda c: c.simplicity())
    assert ranked == [BASELINE, ngram2, ngram6, drafter]


@given(st.sampled_from([*DRAFTER_KNOBS.grid(), *SPACE.grid(),
                        SpecConfig("draft-simple", 4, 0.5, "a.gguf", server_tuned=True)]))
def test_without_drafting_keeps_the_server_setup(config: SpecConfig) -> None:
    twin = config.without_drafting()
    assert twin.method == "none" and twin.to_params().keys() == {
        "method", "cache_type_k", "cache_type_v", "flash_attn"}
    assert (twin.cache_type_k, twin.cache_type_v, twin.flash_attn) == (
        config.cache_type_k, config.cache_type_v, config.flash_attn)

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


def test_quantized_v_forces_flash_attention() -> None:
    config = SpecConfig.from_params({"method": "none", "cache_type_v": "q8_0", "flash_attn": "off"})
    assert config.flash_attn == "on"


def test_simplicity_prefers_no_drafter_then_fewer_tokens() -> None:
    ngram2 = SpecConfig("ngram-mod", 2)
    ngram6 = SpecConfig("ngram-mod", 6)
    drafter = SpecConfig("draft-simple", 1, 0.5, "a.gguf")
    ranked = sorted([drafter, ngram6, BASELINE, ngram2], key=lambda c: c.simplicity())
    assert ranked == [BASELINE, ngram2, ngram6, drafter]

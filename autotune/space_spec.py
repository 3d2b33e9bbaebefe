"""The ``[space]`` table of a tune spec, and whether a server kind has what it asks for.

Each server kind declares its own knobs and rules on its backend (one KV dtype or two, a
flash-attention flag, whether a quantized V cache needs flash attention, which drafter knobs
exist); the checks here read those declarations instead of hard-coding one server's rules.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from autotune.backends.base import Backend
from autotune.space import (
    BASELINE,
    HUB_BASELINE,
    METHODS,
    FloatRange,
    IntRange,
    SearchSpace,
    kv_is_quantized,
    uses_drafter,
)


class SpecModel(BaseModel):
    """Every table of a spec: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _OrderedRange(SpecModel):
    """A low..high range; a reversed one is refused with the fix."""

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        low, high = getattr(self, "low"), getattr(self, "high")
        if high < low:
            raise ValueError(f"high ({high}) is below low ({low}); swap them")
        return self


class IntRangeSpec(_OrderedRange):
    low: Annotated[int, Field(ge=1)]
    high: Annotated[int, Field(ge=1)]
    step: Annotated[int, Field(ge=1)] = 1


class CountRangeSpec(IntRangeSpec):
    """A range that may start at 0 (draft-min 0: no minimum)."""

    low: Annotated[int, Field(ge=0)]
    high: Annotated[int, Field(ge=0)]


class FloatRangeSpec(_OrderedRange):
    low: Annotated[float, Field(ge=0.0, le=1.0)]
    high: Annotated[float, Field(ge=0.0, le=1.0)]
    step: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1


class SpaceSpec(SpecModel):
    methods: list[str] = ["none"]
    draft_max: IntRangeSpec = IntRangeSpec(low=1, high=8)
    p_min: FloatRangeSpec = FloatRangeSpec(low=0.0, high=0.9, step=0.1)
    drafters: list[str] = []
    cache_type_k: list[str] = ["f16"]
    cache_type_v: list[str] = ["f16"]
    # "auto" is the server's own choice (no flag); "on"/"off" force it.
    flash_attn: list[Literal["auto", "on", "off"]] = ["auto"]
    # The drafter's own knobs, for drafter methods on the servers that have them (the
    # backend says which). Left out: the server's default, no flag.
    draft_min: CountRangeSpec | None = None  # drop drafts shorter than this (-n-min)
    draft_cache_types: list[str] = []  # the drafter's KV cache (-ctkd/-ctvd; vLLM's draft dtype)
    draft_quantizations: list[str] = []  # drafter weights quantized at load (vLLM, SGLang)

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, values: list[str]) -> list[str]:
        for value in values:
            if value not in METHODS:
                raise ValueError(f"unknown method {value!r}; choose from {', '.join(METHODS)}")
        if "none" not in values:
            values = ["none", *values]  # the baseline is always measured
        return values

    @model_validator(mode="after")
    def _drafters_when_needed(self) -> SpaceSpec:
        if any(uses_drafter(m) for m in self.methods) and not self.drafters:
            raise ValueError(
                "methods include a drafter method but drafters is empty; "
                "list drafter GGUF files in space.drafters"
            )
        return self

    def to_space(self, backend: Backend | None = None) -> SearchSpace:
        """The search space under ``backend``'s rules (``None``: llama.cpp's). A server with
        no p-min gets one value of the range, which ``settle`` then drops from every setup."""
        p_min_knob = backend is None or backend.p_min_knob
        p_high = self.p_min.high if p_min_knob else self.p_min.low
        baseline = HUB_BASELINE if backend is not None and backend.kv_one_dtype else BASELINE
        return SearchSpace(
            methods=tuple(self.methods),
            draft_max=IntRange(self.draft_max.low, self.draft_max.high, self.draft_max.step),
            p_min=FloatRange(self.p_min.low, p_high, self.p_min.step),
            drafters=tuple(self.drafters),
            cache_type_k=tuple(self.cache_type_k),
            cache_type_v=tuple(self.cache_type_v),
            flash_attn=tuple(self.flash_attn),
            draft_min=(IntRange(self.draft_min.low, self.draft_min.high, self.draft_min.step)
                       if self.draft_min is not None else None),
            draft_cache_types=tuple(self.draft_cache_types) or (None,),
            draft_quantizations=tuple(self.draft_quantizations) or (None,),
            quantized_v_needs_flash_attn=(backend is None
                                          or backend.quantized_v_needs_flash_attn),
            p_min_knob=p_min_knob,
            baseline=baseline,
        )


def check_space_fits(space: SpaceSpec, backend: Backend) -> None:
    """Raise ``ValueError`` (one line: the key, what is wrong, the fix) where ``space`` asks
    for something this server kind does not have."""
    if backend.kv_one_dtype and list(space.cache_type_v) != ["auto"]:
        raise ValueError(
            f"space.cache_type_v: {backend.name} has one KV cache dtype for K and V "
            "(--kv-cache-dtype); list the dtypes in space.cache_type_k and set "
            "cache_type_v = [\"auto\"]")
    if not backend.flash_attn_knob and list(space.flash_attn) != ["auto"]:
        raise ValueError(f"space.flash_attn: {backend.name} has no flash-attention flag; "
                         "leave space.flash_attn out")
    if not backend.p_min_knob and "p_min" in space.model_fields_set and (
            space.p_min.high > space.p_min.low):
        raise ValueError(f"space.p_min: {backend.name} has no p-min (a draft always runs to "
                         "draft-max); leave space.p_min out")
    _flash_attention_for_quantized_v(space, backend)
    _drafter_knobs_exist(space, backend)
    for key in ("cache_type_k", "cache_type_v"):
        values: list[str] = getattr(space, key)
        if not values:
            raise ValueError(f"space.{key} is empty; give at least one KV cache type")
        for value in values:
            if value not in backend.kv_types:
                raise ValueError(
                    f"space.{key}: unknown KV cache type {value!r} for {backend.name}; "
                    f"choose from {', '.join(backend.kv_types)}"
                )
    for method in space.methods:
        if method not in backend.methods:
            raise ValueError(
                f"space.methods: {method!r} is not available on {backend.name}; "
                f"choose from {', '.join(backend.methods)}"
            )


def _flash_attention_for_quantized_v(space: SpaceSpec, backend: Backend) -> None:
    # Only a searched axis may be pruned: a pinned flash_attn that excludes "on" conflicts
    # with a quantized V cache where the server refuses to start without it, and silently
    # turning it on would measure something the user did not ask for.
    if not backend.quantized_v_needs_flash_attn:
        return
    quantized = [v for v in (*space.cache_type_v, *space.draft_cache_types)
                 if kv_is_quantized(v)]
    pinned = "flash_attn" in space.model_fields_set and len(space.flash_attn) == 1
    if quantized and pinned and space.flash_attn != ["on"]:
        raise ValueError(
            f"{quantized[0]!r} as a V cache needs flash attention on with {backend.name}, "
            f"but space.flash_attn is pinned to {space.flash_attn}; add \"on\" to "
            "space.flash_attn or use an unquantized cache")


def _drafter_knobs_exist(space: SpaceSpec, backend: Backend) -> None:
    asked = {"draft_min": space.draft_min is not None,
             "draft_cache_types": bool(space.draft_cache_types),
             "draft_quantizations": bool(space.draft_quantizations)}
    for key, wanted in asked.items():
        if wanted and key not in backend.drafter_knobs:
            have = ", ".join(f"space.{k}" for k in backend.drafter_knobs) or "none"
            raise ValueError(f"space.{key}: {backend.name} has no such drafter knob "
                             f"(it has: {have}); leave space.{key} out")
    if any(asked.values()) and not any(uses_drafter(m) for m in space.methods):
        raise ValueError("space.draft_min/draft_cache_types/draft_quantizations apply to "
                         "drafter methods only; add one (e.g. \"draft-simple\") to "
                         "space.methods or leave them out")
    for value in space.draft_cache_types:
        if value not in backend.kv_types:
            raise ValueError(f"space.draft_cache_types: unknown KV cache type {value!r} for "
                             f"{backend.name}; choose from {', '.join(backend.kv_types)}")
    if space.draft_min is not None and space.draft_min.low > space.draft_max.high:
        raise ValueError(f"space.draft_min starts at {space.draft_min.low}, above "
                         f"space.draft_max.high ({space.draft_max.high}); lower it")

"""The search space: what a speculative-decoding setup is, and which setups exist.

A setup is a ``SpecConfig``. Conditions are real conditions: ``p_min``, ``drafter`` and the
drafter's own knobs (``draft_min``, ``draft_cache_type``, ``draft_quantization``) exist only for
drafter-based methods, ``draft_max`` only where something drafts. Rules of one server kind are
the space's, set from its backend: llama.cpp refuses a quantized V cache without flash
attention, so its spaces force flash attention on there; vLLM and SGLang have no such rule.

The defaults are the server's own (f16 KV cache, flash attention ``auto``): the baseline is no
drafting exactly as the server starts without our flags, never a setup we crippled by forcing a
flag off (on a CUDA llama-server ``--flash-attn off`` stalled every first token by 1.5 s).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

NO_DRAFT = "none"
# llama.cpp's names; each backend lists the ones its server has. draft-eagle (EAGLE-1) and
# suffix (suffix decoding, model-free) exist on vLLM (and suffix on newer ik builds) only.
DRAFTER_METHODS = ("draft-simple", "draft-mtp", "draft-eagle3", "draft-dflash", "draft-dspark",
                   "draft-eagle")
NGRAM_METHODS = ("ngram-simple", "ngram-map-k", "ngram-map-k4v", "ngram-mod", "ngram-cache",
                 "suffix")
METHODS = (NO_DRAFT, *DRAFTER_METHODS, *NGRAM_METHODS)
# KV cache types mainline llama.cpp accepts for -ctk/-ctv.
KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
# "auto" is vLLM/SGLang for "the model dtype".
UNQUANTIZED_KV = ("f32", "f16", "bf16", "auto")
DEFAULT_KV = "f16"
FLASH_ATTN = ("auto", "on", "off")
DEFAULT_FLASH_ATTN = "auto"  # the server decides, as it does when no flag is given
# How much a KV cache type loses against f16: greedy outputs change with quantized caches
# (shared/reference/llama-server.md), and fewer bits lose more.
_KV_LOSS = {"f32": 0, "f16": 0, "bf16": 0, "auto": 0, "q8_0": 1, "fp8": 1, "fp8_e4m3": 1,
            "fp8_e5m2": 1, "q5_0": 2, "q5_1": 2, "q4_0": 3, "q4_1": 3, "iq4_nl": 3}


def uses_drafter(method: str) -> bool:
    return method in DRAFTER_METHODS


def drafts(method: str) -> bool:
    return method != NO_DRAFT


def kv_is_quantized(cache_type: str) -> bool:
    return cache_type not in UNQUANTIZED_KV


def kv_loss(cache_type: str) -> int:
    """0 for a lossless cache, then higher for fewer bits."""
    return _KV_LOSS.get(cache_type, 3)


@dataclass(frozen=True, order=True)
class SpecConfig:
    """One candidate setup. Fields that do not apply to ``method`` are ``None``."""

    method: str = NO_DRAFT
    draft_max: int | None = None
    p_min: float | None = None
    drafter: str | None = None
    cache_type_k: str = DEFAULT_KV
    cache_type_v: str = DEFAULT_KV
    flash_attn: str = DEFAULT_FLASH_ATTN
    # The server adapts its own draft parameters at run time, starting from these
    # (ik_llama.cpp's --spec-autotune): a contender in the finish, never searched.
    server_tuned: bool = False
    # The drafter's own knobs; None leaves the server's default (no flag). Last, so that
    # positional construction of the fields above keeps working.
    draft_min: int | None = None  # a draft shorter than this is dropped, not verified
    draft_cache_type: str | None = None  # the drafter's KV cache type (K and V)
    draft_quantization: str | None = None  # drafter weights quantized at load (vLLM, SGLang)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown speculative method {self.method!r}")
        if drafts(self.method) != (self.draft_max is not None):
            raise ValueError(f"draft_max must be set exactly when a method drafts ({self})")
        if uses_drafter(self.method) != (self.drafter is not None):
            raise ValueError(f"drafter must be set exactly for drafter methods ({self})")
        if self.p_min is not None and not uses_drafter(self.method):
            raise ValueError(f"p_min exists only for drafter methods ({self})")
        if self.flash_attn not in FLASH_ATTN:
            raise ValueError(f"flash_attn must be one of {', '.join(FLASH_ATTN)}")
        extras = (self.draft_min, self.draft_cache_type, self.draft_quantization)
        if not uses_drafter(self.method) and any(e is not None for e in extras):
            raise ValueError(f"draft_min, draft_cache_type and draft_quantization exist only "
                             f"for drafter methods ({self})")
        if self.draft_min is not None and not 0 <= self.draft_min <= (self.draft_max or 0):
            raise ValueError(f"draft_min must lie in 0..draft_max ({self})")
        if self.server_tuned and not drafts(self.method):
            raise ValueError("server_tuned needs a method that drafts")

    @cached_property  # frozen: computed once, looked up thousands of times by strategies
    def key(self) -> str:
        """A stable identity, used to spot repeated setups."""
        return "|".join(f"{k}={v}" for k, v in sorted(self.to_params().items()))

    def to_params(self) -> dict[str, Any]:
        """Only the parameters that exist for this setup."""
        params: dict[str, Any] = {"method": self.method}
        if self.draft_max is not None:
            params["draft_max"] = self.draft_max
        if self.p_min is not None:
            params["p_min"] = self.p_min
        if self.drafter is not None:
            params["drafter"] = self.drafter
        params["cache_type_k"] = self.cache_type_k
        params["cache_type_v"] = self.cache_type_v
        params["flash_attn"] = self.flash_attn
        if self.server_tuned:  # absent otherwise: keys of fixed setups stay as they were
            params["server_tuned"] = True
        for name in ("draft_min", "draft_cache_type", "draft_quantization"):  # likewise
            if getattr(self, name) is not None:
                params[name] = getattr(self, name)
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> SpecConfig:
        """The setup ``params`` stand for; parameters that do not apply to the method are
        dropped, and a ``draft_min`` beyond ``draft_max`` is taken as ``draft_max``."""
        method = str(params.get("method", NO_DRAFT))
        draft_max = int(params["draft_max"]) if drafts(method) else None
        drafter = uses_drafter(method)

        def extra(name: str) -> str | None:
            value = params.get(name)
            return str(value) if drafter and value is not None else None

        draft_min = params.get("draft_min")
        return cls(
            method=method,
            draft_max=draft_max,
            p_min=(round(float(params["p_min"]), 6)
                   if drafter and params.get("p_min") is not None else None),
            drafter=str(params["drafter"]) if drafter else None,
            cache_type_k=str(params.get("cache_type_k", DEFAULT_KV)),
            cache_type_v=str(params.get("cache_type_v", DEFAULT_KV)),
            flash_attn=str(params.get("flash_attn", DEFAULT_FLASH_ATTN)),
            server_tuned=bool(params.get("server_tuned", False)) and drafts(method),
            draft_min=(min(int(draft_min), draft_max or 0)
                       if drafter and draft_min is not None else None),
            draft_cache_type=extra("draft_cache_type"),
            draft_quantization=extra("draft_quantization"),
        )

    def without_drafting(self) -> SpecConfig:
        """The same server setup (KV cache, flash attention) with no drafting at all."""
        return SpecConfig(cache_type_k=self.cache_type_k, cache_type_v=self.cache_type_v,
                          flash_attn=self.flash_attn)

    def describe(self) -> str:
        """A short human label, e.g. ``draft-simple n=3 p=0.6 q4_0.gguf | kv q8_0/q8_0 fa``."""
        parts = [self.method]
        if self.draft_max is not None:
            parts.append(f"n={self.draft_max}")
        if self.p_min is not None:
            parts.append(f"p={self.p_min:g}")
        if self.draft_min is not None:
            parts.append(f"min={self.draft_min}")
        if self.drafter is not None:
            parts.append(os.path.basename(self.drafter))
        if self.draft_quantization is not None:
            parts.append(f"as {self.draft_quantization}")
        if self.draft_cache_type is not None:
            parts.append(f"draft-kv {self.draft_cache_type}")
        if self.server_tuned:
            parts.append("+server-autotune")
        kv = f"kv {self.cache_type_k}/{self.cache_type_v}"
        if self.flash_attn != DEFAULT_FLASH_ATTN:
            kv += f" fa-{self.flash_attn}"
        return " ".join(parts) + " | " + kv

    def simplicity(self, drafter_bytes: Mapping[str, int] | None = None) -> tuple[float, ...]:
        """Sort key: smaller is cheaper and safer to deploy. Among setups shown equivalent in
        speed we deploy the one that costs and risks least: a lossless KV cache before a lossy
        one (fewer bits lose more; outputs change), then no drafter before a drafter (memory, a
        second model to keep in step), a fixed setup before a server that retunes itself, fewer
        draft tokens, a smaller drafter file, no drafting
        at all, the server's own flash-attention choice, and a higher p-min last. The
        drafter's own cache and weight quantization change only drafts, never outputs, so
        they rank after the verifier's KV loss: the server's default before a chosen one."""
        size = (drafter_bytes or {}).get(self.drafter or "", 0)
        drafter_knobs = sum(value is not None for value in (
            self.draft_min, self.draft_cache_type, self.draft_quantization))
        return (
            float(kv_loss(self.cache_type_k) + kv_loss(self.cache_type_v)),
            float(uses_drafter(self.method)),
            float(self.server_tuned),  # a moving part: a fixed setup first when they tie
            float(self.draft_max or 0),
            float(size),
            float(drafts(self.method)),
            float(self.flash_attn != DEFAULT_FLASH_ATTN),
            float(drafter_knobs),
            -(self.p_min or 0.0),
        )


BASELINE = SpecConfig()
# vLLM and SGLang have no f16 KV type: their unquantized default is "auto" (the model dtype).
HUB_BASELINE = SpecConfig(cache_type_k="auto", cache_type_v="auto")


def is_baseline(config: SpecConfig) -> bool:
    """No drafting at the server's own defaults (no KV or flash-attention flag): llama.cpp's
    f16 cache, or vLLM's and SGLang's "auto"; one server launch, whichever label it has."""
    return config in (BASELINE, HUB_BASELINE)


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    step: int = 1

    def values(self) -> list[int]:
        return list(range(self.low, self.high + 1, self.step))


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    step: float = 0.1

    def values(self) -> list[float]:
        count = int(round((self.high - self.low) / self.step)) + 1
        return [round(self.low + i * self.step, 6) for i in range(count)]


@dataclass(frozen=True)
class SearchSpace:
    methods: tuple[str, ...] = (NO_DRAFT,)
    draft_max: IntRange = IntRange(1, 8)
    p_min: FloatRange = FloatRange(0.0, 0.9, 0.1)
    drafters: tuple[str, ...] = ()
    cache_type_k: tuple[str, ...] = (DEFAULT_KV,)
    cache_type_v: tuple[str, ...] = (DEFAULT_KV,)
    flash_attn: tuple[str, ...] = (DEFAULT_FLASH_ATTN,)
    # No drafting at the server's defaults, as this server kind labels its unquantized KV.
    baseline: SpecConfig = BASELINE
    # The drafter's own knobs; None in a tuple (and a None range) is the server's default.
    draft_min: IntRange | None = None
    draft_cache_types: tuple[str | None, ...] = (None,)
    draft_quantizations: tuple[str | None, ...] = (None,)
    # llama.cpp's rule (a quantized V cache, the verifier's or the drafter's, refuses to start
    # without flash attention); the backend says whether its server has it.
    quantized_v_needs_flash_attn: bool = True
    # Whether drafting stops below a drafter confidence (llama.cpp); vLLM and SGLang have no
    # such knob, so their setups carry none (and are not labelled with one).
    p_min_knob: bool = True

    def settle(self, config: SpecConfig) -> SpecConfig:
        """``config`` as this server kind can start it: flash attention on where a quantized
        V cache needs it, and no p-min where the server has none."""
        if not self.p_min_knob and config.p_min is not None:
            config = replace(config, p_min=None)
        if self.needs_flash_attn(config.cache_type_v, config.draft_cache_type):
            return replace(config, flash_attn="on")
        return config

    def needs_flash_attn(self, cache_type_v: str, draft_cache_type: str | None = None) -> bool:
        return self.quantized_v_needs_flash_attn and (
            kv_is_quantized(cache_type_v)
            or (draft_cache_type is not None and kv_is_quantized(draft_cache_type)))

    def kv_choices(self) -> Iterator[tuple[str, str, str]]:
        """Valid (K, V, flash-attn) combinations. The server's default comes first where the
        space has it, so a strategy that fixes one KV plane while it models drafting fixes
        the one users start from."""
        seen: set[tuple[str, str, str]] = set()
        combos = list(itertools.product(self.cache_type_k, self.cache_type_v, self.flash_attn))
        default = (self.baseline.cache_type_k, self.baseline.cache_type_v, DEFAULT_FLASH_ATTN)
        combos.sort(key=lambda c: c != default)
        for k, v, fa in combos:
            combo = (k, v, "on" if self.needs_flash_attn(v) else fa)
            if combo not in seen:
                seen.add(combo)
                yield combo

    def draft_min_values(self, draft_max: int) -> list[int | None]:
        """The draft-min values that exist at ``draft_max`` ([None] when not searched)."""
        if self.draft_min is None:
            return [None]
        return [n for n in self.draft_min.values() if n <= draft_max] or [None]

    def drafter_extras(self) -> list[tuple[str | None, str | None]]:
        """(draft_cache_type, draft_quantization) pairs searched for drafter setups."""
        return list(itertools.product(self.draft_cache_types, self.draft_quantizations))

    def draft_choices(self) -> Iterator[SpecConfig]:
        """Every drafting setting (the KV setting left at the server's default)."""
        for method in self.methods:
            if not drafts(method):
                yield SpecConfig(method)
            elif not uses_drafter(method):
                for n in self.draft_max.values():
                    yield SpecConfig(method, n)
            else:
                for drafter, n, p, (cache, quant) in itertools.product(
                    self.drafters, self.draft_max.values(), self.p_min.values(),
                    self.drafter_extras(),
                ):
                    for n_min in self.draft_min_values(n):
                        yield SpecConfig(method, n, p, drafter, draft_min=n_min,
                                         draft_cache_type=cache, draft_quantization=quant)

    def grid(self) -> list[SpecConfig]:
        """Every valid setup, in a stable order, without repeats."""
        found = (
            self.settle(replace(drafting, cache_type_k=k, cache_type_v=v, flash_attn=fa))
            for drafting in self.draft_choices()
            for (k, v, fa) in self.kv_choices()
        )
        return list(dict.fromkeys(found))

    def contains(self, config: SpecConfig) -> bool:
        if config.method not in self.methods:
            return False
        if config.draft_max is not None and config.draft_max not in self.draft_max.values():
            return False
        if config.p_min is not None and config.p_min not in self.p_min.values():
            return False
        if config.drafter is not None and config.drafter not in self.drafters:
            return False
        if uses_drafter(config.method) and (
            config.draft_min not in self.draft_min_values(config.draft_max or 0)
            or (config.draft_cache_type, config.draft_quantization) not in self.drafter_extras()
        ):
            return False
        forced = self.needs_flash_attn(config.cache_type_v, config.draft_cache_type)
        return any(
            (k, v, "on" if forced else fa) == (config.cache_type_k, config.cache_type_v,
                                               config.flash_attn)
            for k, v, fa in self.kv_choices())

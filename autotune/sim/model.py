"""SIMULATION: a physically grounded model of a speculative-decoding server's throughput.

Never evidence about a real server. It exists to benchmark search strategies on GPU-scale
landscapes this project cannot run. Formulas (see shared/reference/spec-decoding-model.md):

- per step the drafter proposes up to n tokens; it stops early when its confidence q_i for the
  next token falls below p_min (llama.cpp's --draft-p-min);
- confidences are Beta-distributed with mean a_i, the conditional acceptance of position i,
  and calibrated (P(accept | q) = q, as EAGLE-2 reports), so with threshold p:
      P(position i drafted)  = prod_{j<=i} P(q_j >= p)   (the low-confidence token is dropped)
      P(position i accepted) = prod_{j<=i} E[q_j ; q_j >= p]
  and E[tokens per step] = 1 + sum_i P(position i accepted)  (Leviathan et al. 2211.17192);
- step time = E[drafter passes] * D + V(1 + E[drafted]), with V(n) = V1 * (1 + s * (n - 1))
  and a kernel cliff above 8 tokens (llama.cpp PR #5625: V(9)/V(1) = 3.88 on CUDA), plus for
  MoE a jump j paid whenever more than one token is verified (vllm-mlx #699: the 2nd token
  costs 0.59 of a step, later ones ~0.29, as each new token routes to more experts); the
  drafter also pays for the token whose low confidence stops the draft, so
  E[passes] = sum_{i<=n} prod_{j<i} P(q_j >= p) (1 when p_min stops at the first token);
- concurrency c raises the verifier's per-token slope (compute-bound batches), which erodes
  the gain (vLLM blog 2024-10-17: 1.5x at QPS 1, a slowdown at high QPS).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from autotune.space import SpecConfig, drafts, uses_drafter
from strategies.acceptance import (
    drafter_passes,
    expected_step,
    position_terms,
    unconditional_acceptance,
)


@dataclass(frozen=True)
class DrafterModel:
    """One drafter file: its per-token cost relative to a verifier step and an acceptance
    multiplier from its quantization."""

    cost_ratio: float  # D / V1
    acceptance_scale: float = 1.0


@dataclass(frozen=True)
class Landscape:
    """A preset. ``acceptance`` is the conditional acceptance a_i of positions 1..8 for a
    full-precision drafter; ``ngram_acceptance`` the same for n-gram lookup."""

    name: str
    description: str
    baseline_tokens_per_second: float
    verifier_slope: float  # s in V(n) = V1 (1 + s (n-1) + j [n > 1])
    acceptance: tuple[float, ...]
    drafters: dict[str, DrafterModel]
    ngram_acceptance: tuple[float, ...] = (0.3, 0.25, 0.2, 0.15, 0.1, 0.08, 0.06, 0.05)
    ngram_cost_ratio: float = 0.01
    kv_speed: dict[str, float] = field(default_factory=lambda: {"f16": 1.0, "q8_0": 1.0})
    flash_attn_speed: float = 1.0  # multiplier when flash attention is on
    verifier_jump: float = 0.0  # j above
    cliff_above: int = 8
    cliff_factor: float = 2.2
    concurrency: int = 1
    concurrency_slope: float = 0.0  # added to s per extra concurrent request
    launch_seconds: float = 30.0
    noise: float = 0.04  # lognormal sigma of one full-effort reading
    citations: tuple[str, ...] = ()
    # Stress landscapes that break what model-based strategies assume:
    kv_slope: dict[str, float] = field(default_factory=dict)  # verifier slope per KV cache
    confidence_bias: float = 1.0  # the drafter reports bias * its true confidence
    drafter_fails_above: int | None = None  # longer drafter setups fail to start (memory)


def fails_to_start(landscape: Landscape, config: SpecConfig) -> bool:
    limit = landscape.drafter_fails_above
    return (limit is not None and uses_drafter(config.method)
            and (config.draft_max or 0) > limit)


def verifier_time(landscape: Landscape, tokens: float, batched: float | None = None,
                  kv_extra_slope: float = 0.0) -> float:
    """V(n)/V1 for a batch of ``tokens`` tokens verified in one pass (an expectation when
    fractional); ``batched`` is the chance that the pass verifies more than one token, which
    pays the jump (default: whether ``tokens`` > 1)."""
    slope = landscape.verifier_slope + landscape.concurrency_slope * (landscape.concurrency - 1)
    slope += kv_extra_slope
    if batched is None:
        batched = float(tokens > 1.0)
    time = 1.0 + slope * (tokens - 1.0) + landscape.verifier_jump * batched
    if tokens > landscape.cliff_above + 1:
        time *= landscape.cliff_factor
    return time


def drafting_profile(landscape: Landscape, config: SpecConfig) -> tuple[np.ndarray, float, float]:
    """(conditional acceptance a_1..a_8, effective p_min, drafter cost per token / V1) of a
    drafting ``config``: a drafter's quantization scales acceptance; n-gram lookup has no
    confidence threshold."""
    if uses_drafter(config.method):
        drafter = landscape.drafters[str(config.drafter)]
        # An overconfident drafter passes the threshold p when its true confidence is p / bias.
        return (np.asarray(landscape.acceptance) * drafter.acceptance_scale,
                (config.p_min or 0.0) / landscape.confidence_bias, drafter.cost_ratio)
    return np.asarray(landscape.ngram_acceptance), 0.0, landscape.ngram_cost_ratio


def true_tokens_per_second(landscape: Landscape, config: SpecConfig) -> float:
    """The noiseless throughput of ``config`` on ``landscape``."""
    kv = landscape.kv_speed.get(config.cache_type_k, 1.0) * landscape.kv_speed.get(
        config.cache_type_v, 1.0)
    fa = landscape.flash_attn_speed if config.flash_attn in ("on", "auto") else 1.0
    base = landscape.baseline_tokens_per_second * kv * fa
    if not drafts(config.method):
        return base
    assert config.draft_max is not None
    acceptance, p_min, cost = drafting_profile(landscape, config)
    drafted, emitted = expected_step(acceptance, config.draft_max, p_min, config.draft_min or 0)
    passes = drafter_passes(acceptance, config.draft_max, p_min)
    any_drafted = float(position_terms(acceptance[:1], p_min)[0][0])
    extra = landscape.kv_slope.get(config.cache_type_k, 0.0) + landscape.kv_slope.get(
        config.cache_type_v, 0.0)
    step = passes * cost + verifier_time(landscape, 1.0 + drafted, any_drafted, extra)
    return base * emitted / step


@dataclass(frozen=True)
class SimReading:
    tokens_per_second: float
    per_position_acceptance: tuple[float, ...]
    acceptance: float | None
    seconds: float  # simulated wall-clock: launch + measuring


# Values keep their landscape alive, so an id() in a key is never reused by another object.
_EXACT: dict[tuple[int, SpecConfig], tuple[Landscape, float, np.ndarray, float | None]] = {}


def _exact(landscape: Landscape, config: SpecConfig) -> tuple[float, np.ndarray, float | None]:
    """(true tokens/s, per-position acceptance r_i, accepted/drafted), cached: a benchmark asks
    for the same setups thousands of times and SciPy's Beta tails dominate its run time."""
    key = (id(landscape), config)
    if key not in _EXACT:
        r, ratio = np.zeros(0), None
        if drafts(config.method) and config.draft_max:
            a, p_min, _ = drafting_profile(landscape, config)
            r = unconditional_acceptance(a, config.draft_max, p_min, config.draft_min or 0)
            drafted, emitted = expected_step(a, config.draft_max, p_min, config.draft_min or 0)
            ratio = (emitted - 1.0) / drafted if drafted > 1e-9 else None
        _EXACT[key] = (landscape, true_tokens_per_second(landscape, config), r, ratio)
    return _EXACT[key][1:]


def simulate_launch(
    landscape: Landscape, config: SpecConfig, rng: np.random.Generator, *, effort: float = 1.0,
    measure_seconds: float = 60.0,
) -> SimReading:
    """One noisy launch-and-measure of ``config``; noise shrinks with more requests."""
    truth, r, acceptance = _exact(landscape, config)
    sigma = landscape.noise / np.sqrt(max(effort, 1e-3))
    reading = truth * float(np.exp(rng.normal(0.0, sigma)))
    per_position: tuple[float, ...] = ()
    if r.size:
        noisy = np.clip(r * np.exp(rng.normal(0.0, sigma / 2, size=r.size)), 0.0, 1.0)
        per_position = tuple(float(x) for x in noisy)
    return SimReading(reading, per_position, acceptance,
                      landscape.launch_seconds + measure_seconds * effort)

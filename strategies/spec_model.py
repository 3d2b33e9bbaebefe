"""Model-based search that uses what speculative decoding obeys.

1. no drafting (the baseline) and, per drafting family (method x drafter file x the drafter's
   cache and weight quantization where searched), one launch at the longest draft (half-way
   down where that fails to start; nothing from the failed length up is predicted): its
   per-position acceptance r_1..r_k predicts E[tokens per step] for every shorter draft-max
   without launching them;
2. one more launch per family at a short draft fits the step time (alpha + beta * tokens),
   with beta split into the verifier's cost per drafted token (an n-gram family's slope) and
   the drafter's cost per pass, so tokens/s can be predicted for every (draft-max, p-min);
3. the best predictions and each family's own best are measured; then every KV cache /
   flash-attention setting on the leader, with longer measurements;
4. the remaining launches go to the combinations of the best drafting settings and KV settings
   with the highest upper confidence bound under a log-additive model (drafting + K + V +
   flash-attention effects, fitted over every launch), measured with more requests each, so one
   lucky reading does not win and a 2% KV effect is estimated from all launches, not one.
   Throughput moves smoothly with draft length, so the model ties settings one draft-max
   apart by a prior (a random walk along draft-max): a setting read once, unluckily, borrows
   strength from its measured neighbours instead of being written off.
Families whose server reports no per-position counters fall back to a geometric acceptance
fitted to the overall acceptance ratio.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import replace

import numpy as np

from autotune.space import SearchSpace, SpecConfig, drafts, uses_drafter
from strategies._common import Ledger
from strategies.acceptance import (
    conditional_from_unconditional,
    fit_step_time,
    predict_tokens_per_second,
)
from strategies.base import Ask, Observation
from strategies.factor_model import FactorFit, fit_factors

# A drafting family: method, drafter file, the drafter's cache type and weight quantization.
Family = tuple[str, str | None, str | None, str | None]
FAMILY_TOP = 4  # predicted setups measured after the model is fitted
KV_EFFORT = 3.0  # the KV screen measures longer: its effects are a few per cent
CONFIRM_TOP = 3  # drafting settings whose KV combinations are re-measured
CONFIRM_EFFORT = 3.0  # a re-measurement sends this many times the usual requests
UCB_WIDTH = 2.0  # standard errors of optimism when choosing what to re-measure
LCB_WIDTH = 0.5  # standard errors of caution when recommending
# Prior readings' worth that settings one draft-max apart perform alike: their log difference
# has a prior standard deviation of a reading's noise / sqrt(3), about 3% at 5% noise.
NEIGHBOUR_WEIGHT = 3.0


class SpecModelStrategy:
    name = "spec-model"

    def __init__(self, space: SearchSpace, *, seed: int = 0, budget: int = 40) -> None:
        self._space = space
        self._ledger = Ledger()
        self._kv = next(iter(space.kv_choices()))
        self._budget = budget
        self._plan: Iterator[SpecConfig] | None = None

    # -- setups ------------------------------------------------------------------------
    def _config(self, family: Family, n: int | None, p: float | None,
                draft_min: int | None = None) -> SpecConfig:
        method, drafter, cache, quant = family
        k, v, fa = self._kv
        return self._space.settle(SpecConfig(
            method, n, p, drafter, k, v, fa, draft_min=draft_min, draft_cache_type=cache,
            draft_quantization=quant))

    def _families(self) -> list[Family]:
        families: list[Family] = []
        for method in self._space.methods:
            if uses_drafter(method):
                families += [(method, d, cache, quant) for d in self._space.drafters
                             for cache, quant in self._space.drafter_extras()]
            elif drafts(method):
                families.append((method, None, None, None))
        return families

    def _probe(self, family: Family, n: int) -> SpecConfig:
        """The family at draft-max ``n``, lowest p-min and n-min: nothing cut short, so the
        per-position acceptance it reports holds for every position."""
        drafter = family[1]
        p = self._space.p_min.values()[0] if drafter else None
        n_min = self._space.draft_min_values(n)[0] if drafter else None
        return self._config(family, n, p, n_min)

    # -- the model -----------------------------------------------------------------------
    def _baseline_step(self) -> float | None:
        values = [self._ledger.value(k) for k, c in self._ledger.configs.items()
                  if c.method == "none" and (c.cache_type_k, c.cache_type_v, c.flash_attn) == self._kv]
        valid = [v for v in values if v]
        return 1.0 / float(np.mean(valid)) if valid else None

    def _predictions(self) -> dict[SpecConfig, float]:
        fits: dict[Family, tuple[np.ndarray, float, float]] = {}
        n_values = self._space.draft_max.values()
        caps: dict[Family, int] = {}
        for family in self._families():
            reach, cap = self._reach(family)
            if reach is None:
                continue
            caps[family] = cap
            longest = self._ledger.by_key[self._probe(family, reach).key]
            conditional = self._conditional(longest[0], reach, n_values[-1])
            points = []
            for n in dict.fromkeys((reach, n_values[min(1, len(n_values) - 1)])):
                rows = self._ledger.by_key.get(self._probe(family, n).key, [])
                value = self._ledger.value(self._probe(family, n).key) if rows else None
                if value:
                    emitted = 1.0 + float(np.sum(np.cumprod(conditional[:n])))
                    points.append((float(n), emitted / value))
            base = self._baseline_step()
            if base is not None:
                points.append((0.0, base))
            if points:
                fits[family] = (conditional, *fit_step_time(points))
        # An n-gram lookup costs next to nothing, so its slope is the verifier's alone; the
        # rest of a drafter family's slope is its drafter's cost per pass. Without one, split.
        ngram = [beta for family, (_, _, beta) in fits.items() if family[1] is None]
        predicted: dict[SpecConfig, float] = {}
        for family, (conditional, alpha, beta) in fits.items():
            drafter = family[1]
            if drafter is None:
                verifier_beta, drafter_beta = beta, 0.0
            else:
                verifier_beta = min(float(np.median(ngram)), beta) if ngram else beta / 2
                drafter_beta = beta - verifier_beta
            p_values = self._space.p_min.values() if drafter else [None]
            lengths = [n for n in n_values if n < caps[family]]
            for n, p in itertools.product(lengths, p_values):
                for n_min in self._space.draft_min_values(n) if drafter else [None]:
                    config = self._config(family, n, p, n_min)
                    predicted[config] = predict_tokens_per_second(
                        conditional, n, p or 0.0, alpha, verifier_beta, drafter_beta,
                        n_min or 0)
        return predicted

    def _reach(self, family: Family) -> tuple[int | None, int]:
        """(the longest probed draft-max that started, the shortest that failed to start or
        one past the space): a launch that failed at one length is taken to fail at longer
        ones too (a drafter's context that does not fit), so nothing there is predicted."""
        n_values = self._space.draft_max.values()
        started, cap = None, n_values[-1] + 1
        for n in n_values:
            rows = self._ledger.by_key.get(self._probe(family, n).key, [])
            if rows and all(o.failed for o in rows):
                cap = min(cap, n)
            elif rows and n < cap:
                started = n
        return started, cap

    @staticmethod
    def _conditional(observation: Observation, n: int, width: int) -> np.ndarray:
        """Conditional acceptance at positions 1..``width`` from a probe at draft-max ``n``;
        positions it did not draft are taken as half the last one it did."""
        if observation.per_position_acceptance:
            r = list(observation.per_position_acceptance[:n])
            r += [r[-1] * 0.5 if r else 0.0] * (width - len(r))
            return conditional_from_unconditional(r)
        ratio = observation.acceptance or 0.0
        # Geometric alpha whose full-drafting ratio alpha(1-alpha^n)/((1-alpha)n) matches.
        grid = np.linspace(0.01, 0.99, 99)
        ratios = grid * (1 - grid ** n) / ((1 - grid) * n)
        alpha = float(grid[int(np.argmin(np.abs(ratios - ratio)))])
        return np.full(width, alpha)

    # -- the plan --------------------------------------------------------------------------
    def _stages(self) -> Iterator[list[SpecConfig]]:
        n_values = self._space.draft_max.values()
        yield [self._config(("none", None, None, None), None, None)]
        yield [self._probe(f, n_values[-1]) for f in self._families()]
        # A family whose longest draft failed to start is probed again half-way down: its
        # acceptance must come from a launch that ran.
        middle = n_values[len(n_values) // 2]
        yield [self._probe(f, middle) for f in self._families() if self._reach(f)[0] is None]
        yield [self._probe(f, n_values[min(1, len(n_values) - 1)]) for f in self._families()]
        predicted = self._predictions()
        ranked = sorted(predicted, key=lambda c: -predicted[c])
        # Every family's own best too: two unlucky probes must not rule a drafter out.
        family_best = {_family(c): c for c in reversed(ranked)}
        yield [*ranked[:FAMILY_TOP], *family_best.values()]
        leader = self.recommend()
        if leader is not None:
            yield [_with_kv(self._space, leader, kv) for kv in self._space.kv_choices()]

    def ask(self) -> Ask | None:
        if self._plan is None:
            self._plan = itertools.chain.from_iterable(self._lazy_stages())
        for config in self._plan:
            if self._space.contains(config) and not self._ledger.seen(config):
                kv_stage = config.cache_type_k != self._kv[0] or config.cache_type_v != self._kv[1] \
                    or config.flash_attn != self._kv[2]
                return Ask(config, effort=KV_EFFORT if kv_stage else 1.0)
        return self._confirm()

    def _lazy_stages(self) -> Iterator[list[SpecConfig]]:
        # Each stage is computed only when the previous one is measured.
        stages = self._stages()
        while True:
            try:
                yield next(stages)
            except StopIteration:
                return

    # -- pooling KV effects over every launch ------------------------------------------------
    def _fit(self) -> FactorFit | None:
        measured = [o for rows in self._ledger.by_key.values() for o in rows
                    if not o.failed and o.feasible]
        rows = [(factor_levels(o.config), float(o.tokens_per_second or 0.0), o.effort)
                for o in measured]
        return fit_factors(rows, draft_max_neighbours(o.config for o in measured))

    def _candidates(self, fit: FactorFit) -> list[SpecConfig]:
        """The best drafting settings crossed with every valid KV setting the fit can predict."""
        best = sorted(fit.levels[0], key=lambda d: -fit.main_effect(d))[:CONFIRM_TOP]
        example = {factor_levels(c)[0]: c for c in self._ledger.configs.values()}
        configs = [_with_kv(self._space, example[d], kv)
                   for d in best for kv in self._space.kv_choices()]
        return [c for c in configs if self._space.contains(c) and fit.knows(factor_levels(c))]

    def _confirm(self) -> Ask | None:
        launched = sum(len(rows) for rows in self._ledger.by_key.values())
        fit = self._fit()
        if launched >= self._budget or fit is None:
            return None
        candidates = self._candidates(fit)
        if not candidates:
            return None

        def upper(config: SpecConfig) -> float:
            value, se = fit.predict(factor_levels(config))
            return float(np.log(value) + UCB_WIDTH * se)

        return Ask(max(candidates, key=upper), effort=CONFIRM_EFFORT)

    def recommend(self) -> SpecConfig | None:
        """The measured setup with the best pooled estimate, discounted by its uncertainty."""
        fit = self._fit()
        if fit is None:
            return None
        measured = [c for key, c in self._ledger.configs.items()
                    if self._ledger.value(key) is not None]

        def lower(config: SpecConfig) -> float:
            value, se = fit.predict(factor_levels(config))
            return float(np.log(value) - LCB_WIDTH * se)

        return max(measured, key=lower) if measured else None

    def tell(self, observation: Observation) -> None:
        self._ledger.add(observation)


def _family(config: SpecConfig) -> Family:
    return config.method, config.drafter, config.draft_cache_type, config.draft_quantization


def factor_levels(config: SpecConfig) -> tuple[object, ...]:
    """The model's factors: the drafting setting, K cache, V cache, flash attention."""
    drafting = (*_family(config), config.draft_max, config.p_min, config.draft_min)
    return drafting, config.cache_type_k, config.cache_type_v, config.flash_attn


def draft_max_neighbours(
        configs: Iterable[SpecConfig]) -> list[tuple[Hashable, Hashable, float]]:
    """Pairs of drafting settings next to each other along draft-max (everything else equal),
    each with a prior weight that shrinks with the distance between their lengths, as a random
    walk's does."""
    lines: dict[tuple[object, ...], dict[int, Hashable]] = {}
    for config in configs:
        if config.draft_max is not None:
            line = lines.setdefault((*_family(config), config.p_min, config.draft_min), {})
            line[config.draft_max] = factor_levels(config)[0]
    pairs = []
    for line in lines.values():
        for shorter, longer in itertools.pairwise(sorted(line)):
            pairs.append((line[shorter], line[longer], NEIGHBOUR_WEIGHT / (longer - shorter)))
    return pairs


def _with_kv(space: SearchSpace, config: SpecConfig, kv: tuple[str, str, str]) -> SpecConfig:
    """``config`` with another KV setting, as the server kind can start it."""
    k, v, fa = kv
    return space.settle(replace(config, cache_type_k=k, cache_type_v=v, flash_attn=fa))

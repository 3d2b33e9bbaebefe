"""Model-based search that uses what speculative decoding obeys.

1. no drafting (the baseline) and, per drafting family (method x drafter file), one launch at
   the longest draft: its per-position acceptance r_1..r_k predicts E[tokens per step] for
   every shorter draft-max without launching them;
2. one more launch per family at a short draft fits the step time (alpha + beta * drafted),
   so tokens/s can be predicted for every (draft-max, p-min) of the family;
3. the best predictions are measured; then KV cache / flash-attention variants of the leader;
3b. KV variants are tried on the two leaders, the best KV on the top predictions;
4. the remaining launches re-measure the leaders (UCB), so one lucky reading does not win.
Families whose server reports no per-position counters fall back to a geometric acceptance
fitted to the overall acceptance ratio.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

from autotune.space import SearchSpace, SpecConfig, drafts, uses_drafter
from strategies._common import Ledger
from strategies.acceptance import (
    conditional_from_unconditional,
    fit_step_time,
    predict_tokens_per_second,
)
from strategies.base import Ask, Observation

FAMILY_TOP = 4  # predicted setups measured after the model is fitted
CONFIRM = 16  # re-measurements of the leaders


class SpecModelStrategy:
    name = "spec-model"

    def __init__(self, space: SearchSpace, *, seed: int = 0, budget: int = 40) -> None:
        self._space = space
        self._ledger = Ledger()
        self._kv = next(iter(space.kv_choices()))
        self._budget = budget
        self._plan: Iterator[SpecConfig] | None = None
        self._stage = 0
        self._confirms = 0

    # -- setups ------------------------------------------------------------------------
    def _config(self, method: str, n: int | None, p: float | None, drafter: str | None,
                kv: tuple[str, str, str] | None = None) -> SpecConfig:
        k, v, fa = kv or self._kv
        return SpecConfig(method, n, p, drafter, k, v, fa)

    def _families(self) -> list[tuple[str, str | None]]:
        families: list[tuple[str, str | None]] = []
        for method in self._space.methods:
            if uses_drafter(method):
                families += [(method, d) for d in self._space.drafters]
            elif drafts(method):
                families.append((method, None))
        return families

    def _probe(self, family: tuple[str, str | None], n: int) -> SpecConfig:
        method, drafter = family
        p = self._space.p_min.values()[0] if drafter else None
        return self._config(method, n, p, drafter)

    # -- the model -----------------------------------------------------------------------
    def _baseline_step(self) -> float | None:
        values = [self._ledger.value(k) for k, c in self._ledger.configs.items()
                  if c.method == "none" and (c.cache_type_k, c.cache_type_v, c.flash_attn) == self._kv]
        valid = [v for v in values if v]
        return 1.0 / float(np.mean(valid)) if valid else None

    def _predictions(self) -> dict[SpecConfig, float]:
        predicted: dict[SpecConfig, float] = {}
        n_values = self._space.draft_max.values()
        for family in self._families():
            longest = self._ledger.by_key.get(self._probe(family, n_values[-1]).key, [])
            if not longest or longest[0].failed:
                continue
            conditional = self._conditional(longest[0], n_values[-1])
            points = []
            for n in (n_values[-1], n_values[min(1, len(n_values) - 1)]):
                rows = self._ledger.by_key.get(self._probe(family, n).key, [])
                value = self._ledger.value(self._probe(family, n).key) if rows else None
                if value:
                    emitted = 1.0 + float(np.sum(np.cumprod(conditional[:n])))
                    points.append((float(n), emitted / value))
            base = self._baseline_step()
            if base is not None:
                points.append((0.0, base))
            if not points:
                continue
            alpha, beta = fit_step_time(points)
            p_values = self._space.p_min.values() if family[1] else [None]
            for n, p in itertools.product(n_values, p_values):
                config = self._config(family[0], n, p, family[1])
                predicted[config] = predict_tokens_per_second(conditional, n, p or 0.0, alpha, beta)
        return predicted

    @staticmethod
    def _conditional(observation: Observation, n: int) -> np.ndarray:
        if observation.per_position_acceptance:
            r = list(observation.per_position_acceptance[:n])
            r += [r[-1] * 0.5 if r else 0.0] * (n - len(r))
            return conditional_from_unconditional(r)
        ratio = observation.acceptance or 0.0
        # Geometric alpha whose full-drafting ratio alpha(1-alpha^n)/((1-alpha)n) matches.
        grid = np.linspace(0.01, 0.99, 99)
        ratios = grid * (1 - grid ** n) / ((1 - grid) * n)
        alpha = float(grid[int(np.argmin(np.abs(ratios - ratio)))])
        return np.full(n, alpha)

    # -- the plan --------------------------------------------------------------------------
    def _stages(self) -> Iterator[list[SpecConfig]]:
        n_values = self._space.draft_max.values()
        yield [self._config("none", None, None, None)]
        yield [self._probe(f, n_values[-1]) for f in self._families()]
        yield [self._probe(f, n_values[min(1, len(n_values) - 1)]) for f in self._families()]
        predicted = self._predictions()
        ranked = sorted(predicted, key=lambda c: -predicted[c])
        yield ranked[:FAMILY_TOP]
        for leader in self._leaders(2):
            yield [SpecConfig(leader.method, leader.draft_max, leader.p_min, leader.drafter, k, v, fa)
                   for k, v, fa in self._space.kv_choices()]
        best_kv = self._leader()
        if best_kv is not None:
            kv = (best_kv.cache_type_k, best_kv.cache_type_v, best_kv.flash_attn)
            yield [self._config(c.method, c.draft_max, c.p_min, c.drafter, kv)
                   for c in ranked[:FAMILY_TOP]]

    def _leaders(self, count: int) -> list[SpecConfig]:
        scored = [(self._ledger.value(k), k) for k in self._ledger.by_key]
        ranked = sorted(((v, k) for v, k in scored if v is not None), reverse=True)
        return [self._ledger.configs[k] for _, k in ranked[:count]]

    def _leader(self) -> SpecConfig | None:
        best = self._ledger.best()
        return best[0] if best else None

    def ask(self) -> Ask | None:
        if self._plan is None:
            self._plan = itertools.chain.from_iterable(self._lazy_stages())
        for config in self._plan:
            if self._space.contains(config) and not self._ledger.seen(config):
                return Ask(config)
        return self._confirm()

    def _lazy_stages(self) -> Iterator[list[SpecConfig]]:
        # Each stage is computed only when the previous one is measured.
        stages = self._stages()
        while True:
            try:
                yield next(stages)
            except StopIteration:
                return

    def _confirm(self) -> Ask | None:
        if self._confirms >= CONFIRM:
            return None
        scored = [(self._ledger.value(k), k) for k in self._ledger.by_key]
        top = sorted(((v, k) for v, k in scored if v is not None), reverse=True)[:4]
        if not top:
            return None
        total = sum(len(self._ledger.by_key[k]) for _, k in top)

        def ucb(item: tuple[float, str]) -> float:
            value, key = item
            count = len(self._ledger.by_key[key])
            return float(value * (1 + 0.05 * np.sqrt(2 * np.log(total + 1) / count)))

        self._confirms += 1
        return Ask(self._ledger.configs[max(top, key=ucb)[1]])

    def tell(self, observation: Observation) -> None:
        self._ledger.add(observation)

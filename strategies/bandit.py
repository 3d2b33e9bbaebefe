"""Thompson sampling over discrete setups: a pool of arms, each re-measured while promising,
instead of trusting one noisy reading. New arms join the pool at a fixed rate."""

from __future__ import annotations

import numpy as np

from autotune.space import SearchSpace, SpecConfig
from strategies._common import Ledger
from strategies.base import Ask, Observation

PRIOR_NOISE = 0.08  # relative sigma of one reading, before any repeat says otherwise


class ThompsonStrategy:
    name = "bandit"

    def __init__(self, space: SearchSpace, *, seed: int = 0, budget: int = 40,
                 explore_share: float = 0.5) -> None:
        self._grid = space.grid()
        self._rng = np.random.default_rng(seed)
        self._ledger = Ledger()
        self._explore_share = explore_share

    def ask(self) -> Ask | None:
        arms = [k for k in self._ledger.by_key if self._ledger.value(k) is not None]
        launches = sum(len(v) for v in self._ledger.by_key.values())
        unseen = [c for c in self._grid if not self._ledger.seen(c)]
        if unseen and (len(arms) < 2 or len(self._ledger.by_key) < self._explore_share * launches + 4):
            return Ask(unseen[int(self._rng.integers(len(unseen)))])
        if not arms:
            return None
        draws = []
        for key in arms:
            rows = [o.tokens_per_second or 0.0 for o in self._ledger.by_key[key]]
            mean = float(np.mean(rows))
            sigma = mean * PRIOR_NOISE / np.sqrt(len(rows))
            draws.append(self._rng.normal(mean, sigma))
        return Ask(self._ledger.configs[arms[int(np.argmax(draws))]])

    def tell(self, observation: Observation) -> None:
        self._ledger.add(observation)

    def recommend(self) -> SpecConfig | None:
        return self._ledger.best_config()

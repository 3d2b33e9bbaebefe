"""Uniform random sampling over valid setups, without repeats."""

from __future__ import annotations

import numpy as np

from autotune.space import SearchSpace, SpecConfig
from strategies._common import Ledger
from strategies.base import Ask, Observation


class RandomStrategy:
    name = "random"

    def __init__(self, space: SearchSpace, *, seed: int = 0, budget: int = 0) -> None:
        self._grid = space.grid()
        self._rng = np.random.default_rng(seed)
        self._ledger = Ledger()

    def ask(self) -> Ask | None:
        unseen = [c for c in self._grid if not self._ledger.seen(c)]
        if not unseen:
            return None
        return Ask(unseen[int(self._rng.integers(len(unseen)))])

    def tell(self, observation: Observation) -> None:
        self._ledger.add(observation)

    def recommend(self) -> SpecConfig | None:
        return self._ledger.best_config()

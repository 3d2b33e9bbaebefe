"""Exhaustive grid: every setup once, in a stable order (what users run by hand today)."""

from __future__ import annotations

from autotune.space import SearchSpace, SpecConfig
from strategies._common import Ledger
from strategies.base import Ask, Observation


class GridStrategy:
    name = "grid"

    def __init__(self, space: SearchSpace, *, seed: int = 0, budget: int = 0) -> None:
        self._grid = space.grid()
        self._ledger = Ledger()
        self._next = 0  # everything before this index has been seen

    def ask(self) -> Ask | None:
        while self._next < len(self._grid):
            config = self._grid[self._next]
            if not self._ledger.seen(config):
                return Ask(config)
            self._next += 1
        return None

    def tell(self, observation: Observation) -> None:
        self._ledger.add(observation)

    def recommend(self) -> SpecConfig | None:
        return self._ledger.best_config()

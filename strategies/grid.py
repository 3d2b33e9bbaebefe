"""Exhaustive grid: every setup once, in a stable order (what users run by hand today)."""

from __future__ import annotations

from autotune.space import SearchSpace
from strategies._common import Ledger
from strategies.base import Ask, Observation


class GridStrategy:
    name = "grid"

    def __init__(self, space: SearchSpace, *, seed: int = 0, budget: int = 0) -> None:
        self._grid = space.grid()
        self._ledger = Ledger()

    def ask(self) -> Ask | None:
        for config in self._grid:
            if not self._ledger.seen(config):
                return Ask(config)
        return None

    def tell(self, observation: Observation) -> None:
        self._ledger.add(observation)

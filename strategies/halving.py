"""Successive halving: short probes for many setups, longer probes for the survivors.

Rung r measures its setups with effort eta**r / eta**(rungs-1) of a full measurement; the best
1/eta of each rung go up. Effort scales the number of requests, so a short probe is cheap in
measuring time but still costs a launch."""

from __future__ import annotations

import numpy as np

from autotune.space import SearchSpace, SpecConfig
from strategies.base import Ask, Observation


class HalvingStrategy:
    name = "halving"

    def __init__(self, space: SearchSpace, *, seed: int = 0, budget: int = 40,
                 eta: int = 3, rungs: int = 3) -> None:
        rng = np.random.default_rng(seed)
        grid = space.grid()
        # Size the first rung so all rungs together fit the budget.
        first = max(eta ** (rungs - 1), int(budget / sum(eta ** -r for r in range(rungs))))
        picks = rng.choice(len(grid), size=min(first, len(grid)), replace=False)
        self._eta, self._rungs = eta, rungs
        self._rung = 0
        self._queue: list[SpecConfig] = [grid[i] for i in picks]
        self._results: dict[SpecConfig, float] = {}
        self._top_effort: dict[SpecConfig, float] = {}  # readings at the longest effort yet
        self._top_level = 0.0

    def _effort(self) -> float:
        return float(self._eta ** self._rung / self._eta ** (self._rungs - 1))

    def ask(self) -> Ask | None:
        while not self._queue:
            if self._rung >= self._rungs - 1 or not self._results:
                return None
            keep = max(1, len(self._results) // self._eta)
            ranked = sorted(self._results, key=lambda c: -self._results[c])[:keep]
            self._rung += 1
            self._queue, self._results = ranked, {}
        return Ask(self._queue.pop(0), effort=self._effort())

    def tell(self, observation: Observation) -> None:
        if observation.effort == self._effort() or observation.config in self._queue:
            value = observation.tokens_per_second if observation.feasible else None
            self._results[observation.config] = value if value is not None else 0.0
            # A replayed reading (after a resume) answers its queued probe: do not re-ask it.
            if observation.config in self._queue and observation.effort == self._effort():
                self._queue.remove(observation.config)
        if observation.effort > self._top_level:
            self._top_level, self._top_effort = observation.effort, {}
        if observation.effort == self._top_level and observation.feasible and not observation.failed:
            self._top_effort[observation.config] = float(observation.tokens_per_second or 0.0)

    def recommend(self) -> SpecConfig | None:
        """The best of the setups measured longest (a short probe's luck does not count)."""
        if not self._top_effort:
            return None
        return max(self._top_effort, key=lambda c: self._top_effort[c])

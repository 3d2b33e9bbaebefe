"""Small helpers shared by strategies: per-setup aggregation of repeated measurements."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from autotune.space import SpecConfig
from strategies.base import Observation


class Ledger:
    """Every observation, grouped by setup."""

    def __init__(self) -> None:
        self.by_key: dict[str, list[Observation]] = defaultdict(list)
        self.configs: dict[str, SpecConfig] = {}

    def add(self, observation: Observation) -> None:
        key = observation.config.key
        self.by_key[key].append(observation)
        self.configs[key] = observation.config

    def seen(self, config: SpecConfig) -> bool:
        return config.key in self.by_key

    def value(self, key: str) -> float | None:
        """Effort-weighted mean tokens/s of a setup; ``None`` if it failed or broke a limit."""
        rows = self.by_key[key]
        if any(r.failed or not r.feasible for r in rows):
            return None
        weights = np.array([r.effort for r in rows])
        values = np.array([r.tokens_per_second for r in rows], dtype=float)
        return float(np.average(values, weights=weights))

    def best(self) -> tuple[SpecConfig, float] | None:
        scored = [(self.value(k), k) for k in self.by_key]
        valid = [(v, k) for v, k in scored if v is not None]
        if not valid:
            return None
        value, key = max(valid)
        return self.configs[key], value

"""Small helpers shared by strategies: per-setup aggregation of repeated measurements."""

from __future__ import annotations

from collections import defaultdict

from autotune.space import SpecConfig
from strategies.base import Observation


class Ledger:
    """Every observation, grouped by setup, with each setup's value kept up to date (a grid
    strategy asks for the best after each of a thousand launches)."""

    def __init__(self) -> None:
        self.by_key: dict[str, list[Observation]] = defaultdict(list)
        self.configs: dict[str, SpecConfig] = {}
        self._values: dict[str, float | None] = {}

    def add(self, observation: Observation) -> None:
        key = observation.config.key
        rows = self.by_key[key]
        rows.append(observation)
        self.configs[key] = observation.config
        if any(r.failed or not r.feasible for r in rows):
            self._values[key] = None
        else:
            weight = sum(r.effort for r in rows)
            self._values[key] = sum(r.effort * float(r.tokens_per_second or 0.0)
                                    for r in rows) / weight

    def seen(self, config: SpecConfig) -> bool:
        return config.key in self.by_key

    def value(self, key: str) -> float | None:
        """Effort-weighted mean tokens/s of a setup; ``None`` if it failed or broke a limit."""
        return self._values.get(key)

    def best(self) -> tuple[SpecConfig, float] | None:
        valid = [(v, k) for k, v in self._values.items() if v is not None]
        if not valid:
            return None
        value, key = max(valid)
        return self.configs[key], value

    def best_config(self) -> SpecConfig | None:
        best = self.best()
        return best[0] if best else None

"""Small helpers shared by strategies: per-setup aggregation of repeated measurements."""

from __future__ import annotations

from collections import defaultdict

from autotune.feasibility import setup_feasible
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
        measured = [r for r in rows if not r.failed]
        if not measured or not setup_feasible([r.feasible for r in measured]):
            self._values[key] = None
        else:
            weight = sum(r.effort for r in measured)
            self._values[key] = sum(r.effort * float(r.tokens_per_second or 0.0)
                                    for r in measured) / weight

    def seen(self, config: SpecConfig) -> bool:
        return config.key in self.by_key

    def value(self, key: str) -> float | None:
        """Effort-weighted mean tokens/s of a setup's launches that answered; ``None`` if none
        did or it breaks a limit by the shared rule (``autotune.feasibility``)."""
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

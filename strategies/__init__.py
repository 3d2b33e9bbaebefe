"""Search strategies behind one ask/tell protocol, selectable by name in the tune spec."""

from __future__ import annotations

from autotune.space import SearchSpace
from strategies.bandit import ThompsonStrategy
from strategies.base import Ask, Observation, Strategy, StrategyFactory
from strategies.grid import GridStrategy
from strategies.halving import HalvingStrategy
from strategies.optuna_sampler import gp, tpe
from strategies.random_search import RandomStrategy
from strategies.spec_model import SpecModelStrategy

_REGISTRY: dict[str, StrategyFactory] = {
    "grid": GridStrategy,
    "random": RandomStrategy,
    "tpe": tpe,
    "gp": gp,
    "bandit": ThompsonStrategy,
    "halving": HalvingStrategy,
    "spec-model": SpecModelStrategy,
}


# One line each for `autotune strategies`; the README's table says more.
SUMMARIES: dict[str, str] = {
    "grid": "every setup once, in order (what users run by hand)",
    "random": "uniform over valid setups, no repeats",
    "tpe": "Optuna TPE over the conditional space, limits as trial constraints",
    "gp": "Optuna's GP sampler over a fixed encoding (needs PyTorch: pip install '.[gp]')",
    "bandit": "Thompson sampling over a growing pool of setups; re-measures promising ones",
    "halving": "successive halving: short probes for many setups, longer ones for survivors",
    "spec-model": "model-based: acceptance and step time predict every draft length and p-min",
}


def strategy_names() -> list[str]:
    return sorted(_REGISTRY)


def create_strategy(name: str, space: SearchSpace, *, seed: int, budget: int) -> Strategy:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"strategy {name!r} is not registered; available: {', '.join(strategy_names())}"
        ) from None
    return factory(space, seed=seed, budget=budget)


__all__ = ["SUMMARIES", "Ask", "Observation", "Strategy", "create_strategy", "strategy_names"]

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

# Each strategy with the line `autotune strategies` prints for it (the README's table says
# more): one table, so a strategy cannot be registered without its line.
_REGISTRY: dict[str, tuple[StrategyFactory, str]] = {
    "grid": (GridStrategy, "every setup once, in order (what users run by hand)"),
    "random": (RandomStrategy, "uniform over valid setups, no repeats"),
    "tpe": (tpe, "Optuna TPE over the conditional space, limits as trial constraints"),
    "gp": (gp, "Optuna's GP sampler over a fixed encoding (needs PyTorch: pip install '.[gp]')"),
    "bandit": (ThompsonStrategy,
               "Thompson sampling over a growing pool of setups; re-measures promising ones"),
    "halving": (HalvingStrategy,
                "successive halving: short probes for many setups, longer ones for survivors"),
    "spec-model": (SpecModelStrategy,
                   "model-based: acceptance and step time predict every draft length and p-min"),
}
SUMMARIES: dict[str, str] = {name: summary for name, (_, summary) in _REGISTRY.items()}


def strategy_names() -> list[str]:
    return sorted(_REGISTRY)


def create_strategy(name: str, space: SearchSpace, *, seed: int, budget: int) -> Strategy:
    try:
        factory, _ = _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"strategy {name!r} is not registered; available: {', '.join(strategy_names())}"
        ) from None
    return factory(space, seed=seed, budget=budget)


__all__ = ["SUMMARIES", "Ask", "Observation", "Strategy", "create_strategy", "strategy_names"]

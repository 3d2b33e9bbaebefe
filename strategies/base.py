"""The ask/tell protocol every search strategy follows.

The controller owns measuring; a strategy never touches servers or sockets. The loop is::

    strategy = create_strategy("tpe", space, seed=0, budget=16)
    for observation in stored_observations:   # resume: replay what the store already holds
        strategy.tell(observation)
    while budget_left:
        ask = strategy.ask()                  # what to measure next (None: nothing left)
        observation = measure(ask)            # the controller launches and probes
        strategy.tell(observation)
    strategy.recommend()                      # its pick, before the noise-aware finish

``tell`` may receive observations the strategy never asked for (replays after a resume, the
baseline measured first): strategies must accept them. Strategy state that matters lives in the
observations, so a killed tuner resumes by replaying.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from autotune.space import SearchSpace, SpecConfig


@dataclass(frozen=True)
class Ask:
    """Measure ``config`` with ``effort`` times the spec's usual number of requests."""

    config: SpecConfig
    effort: float = 1.0


@dataclass(frozen=True)
class Observation:
    config: SpecConfig
    tokens_per_second: float | None  # None: the setup failed to start or to answer
    feasible: bool
    effort: float = 1.0
    acceptance: float | None = None
    # Unconditional acceptance r_i of draft position i (accepted at i / drafts), if reported.
    per_position_acceptance: tuple[float, ...] = ()

    @property
    def failed(self) -> bool:
        return self.tokens_per_second is None


class Strategy(Protocol):
    name: str

    def ask(self) -> Ask | None:
        """The next setup to measure; ``None`` when the strategy has nothing left to try."""
        ...

    def tell(self, observation: Observation) -> None:
        """Learn from one measurement (asked for or not)."""
        ...

    def recommend(self) -> SpecConfig | None:
        """The setup this strategy would pick now (what the finish re-measures first)."""
        ...


class StrategyFactory(Protocol):
    def __call__(self, space: SearchSpace, *, seed: int, budget: int) -> Strategy: ...

"""Optuna samplers (TPE, GP) driven through ask/tell with real conditional parameters.

Optuna sees the space define-by-run: ``p_min`` and ``drafter`` are only suggested when the
method has a drafter, ``draft_max`` only when it drafts, and ``flash_attn`` only when a quantized
V cache does not force it on. Observations Optuna did not ask for (replays, the baseline) are
added as finished trials with the same distributions.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from autotune.space import SearchSpace, SpecConfig, drafts, kv_is_quantized, uses_drafter
from strategies._common import Ledger
from strategies.base import Ask, Observation

optuna.logging.set_verbosity(optuna.logging.WARNING)
logging.getLogger("optuna").setLevel(logging.WARNING)
# TPE's multivariate/group modes are flagged experimental; they are what handles conditional
# parameters well, and we pin Optuna's major version.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

# Optuna >= 5 reads constraints set on the trial (<= 0 is feasible); TPE and GP honour them.
_CONSTRAINT_KEY = "within_limits"
# After this many proposals of known setups in a row, measure a random unseen one instead:
# every duplicate is a trial Optuna must fit, and a converged TPE proposes little else.
_MAX_DUPLICATE_ASKS = 5


def distributions(space: SearchSpace, config: SpecConfig) -> dict[str, BaseDistribution]:
    """The distributions Optuna would have suggested for ``config``'s parameters."""
    dist: dict[str, BaseDistribution] = {"method": CategoricalDistribution(space.methods)}
    if drafts(config.method):
        r = space.draft_max
        dist["draft_max"] = IntDistribution(r.low, r.high, step=r.step)
    if uses_drafter(config.method):
        p = space.p_min
        dist["p_min"] = FloatDistribution(p.low, p.high, step=p.step)
        dist["drafter"] = CategoricalDistribution(space.drafters)
    dist["cache_type_k"] = CategoricalDistribution(space.cache_type_k)
    dist["cache_type_v"] = CategoricalDistribution(space.cache_type_v)
    if not kv_is_quantized(config.cache_type_v):
        dist["flash_attn"] = CategoricalDistribution(space.flash_attn)
    return dist


def suggest(trial: optuna.Trial, space: SearchSpace) -> SpecConfig:
    method = trial.suggest_categorical("method", space.methods)
    params: dict[str, Any] = {"method": method}
    if drafts(method):
        r = space.draft_max
        params["draft_max"] = trial.suggest_int("draft_max", r.low, r.high, step=r.step)
    if uses_drafter(method):
        p = space.p_min
        params["p_min"] = trial.suggest_float("p_min", p.low, p.high, step=p.step)
        params["drafter"] = trial.suggest_categorical("drafter", space.drafters)
    params["cache_type_k"] = trial.suggest_categorical("cache_type_k", space.cache_type_k)
    params["cache_type_v"] = trial.suggest_categorical("cache_type_v", space.cache_type_v)
    if not kv_is_quantized(params["cache_type_v"]):
        params["flash_attn"] = trial.suggest_categorical("flash_attn", space.flash_attn)
    return SpecConfig.from_params(params)


class OptunaStrategy:
    """Any Optuna sampler behind ask/tell. Infeasible setups are told through Optuna's trial
    constraints; failed launches are told as FAIL."""

    def __init__(
        self,
        space: SearchSpace,
        *,
        name: str,
        sampler_factory: Callable[[int], optuna.samplers.BaseSampler],
        seed: int = 0,
    ) -> None:
        self.name = name
        self._space = space
        self._study = optuna.create_study(direction="maximize", sampler=sampler_factory(seed))
        self._pending: dict[str, optuna.Trial] = {}
        self._ledger = Ledger()
        self._grid = space.grid()
        self._rng = np.random.default_rng(seed)

    def _add_finished(self, observation: Observation) -> None:
        params = {
            k: v for k, v in observation.config.to_params().items()
            if k in distributions(self._space, observation.config)
        }
        if observation.failed:
            state, values = TrialState.FAIL, None
        else:
            state, values = TrialState.COMPLETE, [float(observation.tokens_per_second or 0.0)]
        self._study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=distributions(self._space, observation.config),
                values=values,
                state=state,
                constraints={_CONSTRAINT_KEY: 0.0 if observation.feasible else 1.0},
            )
        )

    def ask(self) -> Ask | None:
        # In a small discrete space TPE often proposes a setup it has seen; answer those from
        # the ledger instead of spending a server launch, and ask again.
        for _ in range(_MAX_DUPLICATE_ASKS):
            trial = self._study.ask()
            config = suggest(trial, self._space)
            if not self._ledger.seen(config):
                self._pending[config.key] = trial
                return Ask(config)
            known = self._ledger.value(config.key)
            trial.set_constraint(_CONSTRAINT_KEY, 0.0 if known is not None else 1.0)
            failed = all(o.failed for o in self._ledger.by_key[config.key])
            if failed:
                self._study.tell(trial, state=TrialState.FAIL)
            else:
                best_seen = max(o.tokens_per_second or 0.0 for o in self._ledger.by_key[config.key])
                self._study.tell(trial, known if known is not None else best_seen)
        unseen = [c for c in self._grid if not self._ledger.seen(c)]
        return Ask(unseen[int(self._rng.integers(len(unseen)))]) if unseen else None

    def tell(self, observation: Observation) -> None:
        self._ledger.add(observation)
        trial = self._pending.pop(observation.config.key, None)
        if trial is None:
            self._add_finished(observation)
            return
        trial.set_constraint(_CONSTRAINT_KEY, 0.0 if observation.feasible else 1.0)
        if observation.failed:
            self._study.tell(trial, state=TrialState.FAIL)
        else:
            self._study.tell(trial, float(observation.tokens_per_second or 0.0))

    def recommend(self) -> SpecConfig | None:
        return self._ledger.best_config()


def tpe(space: SearchSpace, *, seed: int, budget: int = 0) -> OptunaStrategy:
    return OptunaStrategy(
        space, name="tpe", seed=seed,
        sampler_factory=lambda s: optuna.samplers.TPESampler(
            seed=s, n_startup_trials=5, multivariate=True, group=True
        ),
    )


def gp(space: SearchSpace, *, seed: int, budget: int = 0) -> OptunaStrategy:
    try:
        import torch  # noqa: F401 - Optuna's GPSampler needs it after its startup trials
    except ImportError:
        raise KeyError(
            "strategy 'gp' needs PyTorch (Optuna's GPSampler runs on it); "
            "install it with: pip install 'autotune[gp]'"
        ) from None
    return OptunaStrategy(
        space, name="gp", seed=seed,
        sampler_factory=lambda s: optuna.samplers.GPSampler(
            seed=s, n_startup_trials=5
        ),
    )

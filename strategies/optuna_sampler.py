"""Optuna samplers (TPE, GP) driven through ask/tell.

TPE sees the space define-by-run, with real conditional parameters: ``p_min``, ``drafter`` and
the drafter's own knobs are only suggested when the method has a drafter, ``draft_max`` only
when it drafts, and ``flash_attn`` only when a quantized V cache does not force it on. A
``draft_min`` above the draft-max it is paired with becomes the largest one that fits.

GP sees it flat: four or five dimensions suggested every time (drafting family with the
drafter's cache and quantization, draft_max, p_min, draft_min where searched, KV setting); the
ones that do not apply are dropped when the setup is built. Optuna's GPSampler models a
static space only; given the conditional one it samples every conditional parameter at
random (it warns so), which wastes the model on exactly the parameters worth tuning. Flat,
setups that differ only in a dropped parameter are the same setup, so the GP learns that the
dimension does not matter there.

Observations Optuna did not ask for (replays, the baseline) are added as finished trials with
the same distributions.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from autotune.space import SearchSpace, SpecConfig, drafts, uses_drafter
from strategies._common import Ledger
from strategies.base import Ask, Observation

optuna.logging.set_verbosity(optuna.logging.WARNING)
logging.getLogger("optuna").setLevel(logging.WARNING)
# TPE's multivariate/group modes are flagged experimental; they are what handles conditional
# parameters well, and we pin Optuna's major version.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

# Optuna >= 5 reads constraints set on the trial (<= 0 is feasible); TPE and GP honour them.
_CONSTRAINT_KEY = "within_limits"
# After this many proposals of known setups in a row, measure the unseen setup nearest the
# last one instead: every duplicate is a trial Optuna must fit, and a converged TPE proposes
# little else. GP takes its first proposal or its neighbour: each GP fit costs about 0.1 s.
_MAX_DUPLICATE_ASKS = 5


def _all_distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    dist: dict[str, BaseDistribution] = {"method": CategoricalDistribution(space.methods)}
    if any(drafts(m) for m in space.methods):
        r = space.draft_max
        dist["draft_max"] = IntDistribution(r.low, r.high, step=r.step)
    if any(uses_drafter(m) for m in space.methods):
        if space.p_min_knob:
            p = space.p_min
            dist["p_min"] = FloatDistribution(p.low, p.high, step=p.step)
        dist["drafter"] = CategoricalDistribution(space.drafters)
        if space.draft_min is not None:
            m = space.draft_min
            dist["draft_min"] = IntDistribution(m.low, m.high, step=m.step)
        if space.draft_cache_types != (None,):
            dist["draft_cache_type"] = CategoricalDistribution(space.draft_cache_types)
        if space.draft_quantizations != (None,):
            dist["draft_quantization"] = CategoricalDistribution(space.draft_quantizations)
    dist["cache_type_k"] = CategoricalDistribution(space.cache_type_k)
    dist["cache_type_v"] = CategoricalDistribution(space.cache_type_v)
    dist["flash_attn"] = CategoricalDistribution(space.flash_attn)
    return dist


_DRAFTER_PARAMS = ("p_min", "drafter", "draft_min", "draft_cache_type", "draft_quantization")


def _applies(space: SearchSpace, name: str, params: dict[str, Any]) -> bool:
    """Whether parameter ``name`` exists given the ones chosen before it."""
    if name == "draft_max":
        return drafts(params["method"])
    if name == "p_min" and not space.p_min_knob:
        return False
    if name in _DRAFTER_PARAMS:
        return uses_drafter(params["method"])
    if name == "flash_attn":
        return not space.needs_flash_attn(params["cache_type_v"], params.get("draft_cache_type"))
    return True


def _families(space: SearchSpace) -> list[str]:
    """Drafting families as one word each: ``method`` or ``method|drafter|cache|quant``."""
    return [f"{m}|{d}|{cache or ''}|{quant or ''}" if uses_drafter(m) else m
            for m in space.methods
            for d in (space.drafters if uses_drafter(m) else ("",))
            for cache, quant in (space.drafter_extras() if uses_drafter(m) else [(None, None)])]


@functools.lru_cache(maxsize=16)  # asked once per candidate when the nearest one is sought
def _kv_settings(space: SearchSpace) -> tuple[str, ...]:
    settings = [f"{k}/{v}/{'on' if space.needs_flash_attn(v) else fa}"
                for k in space.cache_type_k for v in space.cache_type_v for fa in space.flash_attn]
    return tuple(dict.fromkeys(settings))


def _kv_setting(space: SearchSpace, config: SpecConfig) -> str:
    """The flat KV choice for ``config``; where its drafter's quantized cache forced flash
    attention on, any choice of the same K and V is the same setup."""
    kv = f"{config.cache_type_k}/{config.cache_type_v}/{config.flash_attn}"
    settings = _kv_settings(space)
    if kv in settings:
        return kv
    same = f"{config.cache_type_k}/{config.cache_type_v}/"
    return next((s for s in settings if s.startswith(same)), kv)


def _fitting_draft_min(space: SearchSpace, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with a draft_min the space has at its draft_max."""
    if params.get("draft_min") is None or not drafts(str(params["method"])):
        return params
    fits = [n for n in space.draft_min_values(int(params["draft_max"])) if n is not None]
    wanted = int(params["draft_min"])
    return {**params, "draft_min": max((n for n in fits if n <= wanted), default=min(fits))}


def _flat_distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    """Four dimensions, each always present: the drafting family (method, drafter file and
    the drafter's own cache and quantization), draft_max, p_min, and the KV setting (K type,
    V type, flash attention) as one choice; a fifth, draft_min, where the space searches it.
    Folding keeps GP's search over discrete dimensions, most of its time, short."""
    dist: dict[str, BaseDistribution] = {"family": CategoricalDistribution(_families(space))}
    r, p = space.draft_max, space.p_min
    dist["draft_max"] = IntDistribution(r.low, r.high, step=r.step)
    dist["p_min"] = FloatDistribution(p.low, p.high, step=p.step)
    if space.draft_min is not None:
        m = space.draft_min
        dist["draft_min"] = IntDistribution(m.low, m.high, step=m.step)
    dist["kv"] = CategoricalDistribution(_kv_settings(space))
    return dist


def config_of(space: SearchSpace, params: dict[str, Any], *, flat: bool = False) -> SpecConfig:
    """The setup that Optuna trial parameters stand for (the inverse of ``trial_params``)."""
    if flat:
        params = _unfold(params)
    return space.settle(SpecConfig.from_params(_fitting_draft_min(space, params)))


def _unfold(flat: dict[str, Any]) -> dict[str, Any]:
    method, _, rest = str(flat["family"]).partition("|")
    drafter, cache, quant = (rest.split("|") + ["", ""])[:3] if rest else ("", "", "")
    k, v, fa = str(flat["kv"]).split("/")
    return {
        "method": method, "draft_max": flat["draft_max"], "p_min": flat["p_min"],
        "drafter": drafter, "cache_type_k": k, "cache_type_v": v, "flash_attn": fa,
        "draft_min": flat.get("draft_min"), "draft_cache_type": cache or None,
        "draft_quantization": quant or None,
    }


def _fold(space: SearchSpace, config: SpecConfig) -> dict[str, Any]:
    family = (f"{config.method}|{config.drafter}|{config.draft_cache_type or ''}|"
              f"{config.draft_quantization or ''}" if config.drafter else config.method)
    folded = {
        "family": family,
        "draft_max": config.draft_max if config.draft_max is not None else space.draft_max.low,
        "p_min": config.p_min if config.p_min is not None else space.p_min.low,
        "kv": _kv_setting(space, config),
    }
    if space.draft_min is not None:
        folded["draft_min"] = (config.draft_min if config.draft_min is not None
                               else space.draft_min.low)
    return folded


def distributions(
    space: SearchSpace, config: SpecConfig, *, flat: bool = False
) -> dict[str, BaseDistribution]:
    """The distributions Optuna would have suggested for ``config``'s parameters."""
    if flat:
        return _flat_distributions(space)
    every = _all_distributions(space)
    params = config.to_params()
    return {name: d for name, d in every.items() if _applies(space, name, params)}


def trial_params(space: SearchSpace, config: SpecConfig, *, flat: bool = False) -> dict[str, Any]:
    """``config`` as Optuna trial parameters; flat, a parameter that does not apply takes its
    lowest value (any value is the same setup)."""
    if flat:
        return _fold(space, config)
    dist = distributions(space, config)
    params = {**config.to_params(), **{name: getattr(config, name) for name in _DRAFTER_PARAMS}}
    return {k: v for k, v in params.items() if k in dist}


def suggest(trial: optuna.Trial, space: SearchSpace, *, flat: bool = False) -> SpecConfig:
    params: dict[str, Any] = {}
    every = _flat_distributions(space) if flat else _all_distributions(space)
    for name, d in every.items():
        if not flat and not _applies(space, name, params):
            continue
        if isinstance(d, CategoricalDistribution):
            params[name] = trial.suggest_categorical(name, d.choices)
        elif isinstance(d, IntDistribution):
            params[name] = trial.suggest_int(name, d.low, d.high, step=d.step)
        else:
            assert isinstance(d, FloatDistribution)
            params[name] = trial.suggest_float(name, d.low, d.high, step=d.step)
    return config_of(space, params, flat=flat)


class OptunaStrategy:
    """Any Optuna sampler behind ask/tell. Failed launches are told as FAIL; setups that broke
    a limit are told through Optuna's trial constraints, from the first such setup on."""

    def __init__(
        self,
        space: SearchSpace,
        *,
        name: str,
        sampler_factory: Callable[[int], optuna.samplers.BaseSampler],
        seed: int = 0,
        flat: bool = False,
        max_duplicate_asks: int = _MAX_DUPLICATE_ASKS,
    ) -> None:
        self.name = name
        self._space = space
        self._flat = flat
        self._max_duplicate_asks = max_duplicate_asks
        self._sampler_factory = sampler_factory
        self._seed = seed
        self._study = optuna.create_study(direction="maximize", sampler=sampler_factory(seed))
        # Constraints cost GP a second model fitted every trial; until a setup breaks a limit
        # they would all read "feasible", so they are left off until then.
        self._constrained = False
        self._pending: dict[str, optuna.Trial] = {}
        self._ledger = Ledger()
        self._order: list[Observation] = []
        self._grid = space.grid()

    def _constraints(self, feasible: bool) -> dict[str, float] | None:
        if not self._constrained:
            return None
        return {_CONSTRAINT_KEY: 0.0 if feasible else 1.0}

    def _constrain(self, trial: optuna.Trial, feasible: bool) -> None:
        for key, value in (self._constraints(feasible) or {}).items():
            trial.set_constraint(key, value)

    def _add_finished(self, observation: Observation) -> None:
        config = observation.config
        if not self._space.contains(config):
            # The baseline runs at the server's defaults, which the searched axes may leave
            # out (flash_attn = ["off", "on"]); the ledger keeps it, the sampler cannot.
            return
        if observation.failed:
            state, values = TrialState.FAIL, None
        else:
            state, values = TrialState.COMPLETE, [float(observation.tokens_per_second or 0.0)]
        self._study.add_trial(
            optuna.trial.create_trial(
                params=trial_params(self._space, config, flat=self._flat),
                distributions=distributions(self._space, config, flat=self._flat),
                values=values,
                state=state,
                constraints=self._constraints(observation.feasible),
            )
        )

    def _start_constraining(self) -> None:
        """Optuna needs the same constraints on every trial: start a new study and add every
        observation again, now with its constraint."""
        self._constrained = True
        self._study = optuna.create_study(
            direction="maximize", sampler=self._sampler_factory(self._seed)
        )
        self._pending.clear()
        for observation in self._order:
            self._add_finished(observation)

    def _tell_known(self, trial: optuna.Trial, config: SpecConfig) -> None:
        rows = self._ledger.by_key[config.key]
        if all(o.failed for o in rows):
            self._study.tell(trial, state=TrialState.FAIL)
            return
        known = self._ledger.value(config.key)
        self._constrain(trial, known is not None)
        self._study.tell(trial, known if known is not None else
                         max(o.tokens_per_second or 0.0 for o in rows))

    def ask(self) -> Ask | None:
        # In a small discrete space a sampler often proposes a setup it has seen; answer those
        # from the ledger instead of spending a server launch, and ask again. After a few, take
        # the unmeasured setup nearest to what it proposed: every re-ask is another model fit.
        config = None
        for _ in range(self._max_duplicate_asks):
            trial = self._study.ask()
            config = suggest(trial, self._space, flat=self._flat)
            if not self._ledger.seen(config):
                self._pending[config.key] = trial
                return Ask(config)
            self._tell_known(trial, config)
        unseen = [c for c in self._grid if not self._ledger.seen(c)]
        if not unseen:
            return None
        return Ask(nearest(self._space, config, unseen) if config else unseen[0])

    def tell(self, observation: Observation) -> None:
        self._ledger.add(observation)
        self._order.append(observation)
        trial = self._pending.pop(observation.config.key, None)
        if not observation.feasible and not observation.failed and not self._constrained:
            if trial is not None:
                self._study.tell(trial, state=TrialState.FAIL)
            self._start_constraining()
            return
        if trial is None:
            self._add_finished(observation)
            return
        self._constrain(trial, observation.feasible)
        if observation.failed:
            self._study.tell(trial, state=TrialState.FAIL)
        else:
            self._study.tell(trial, float(observation.tokens_per_second or 0.0))

    def recommend(self) -> SpecConfig | None:
        return self._ledger.best_config()


def nearest(space: SearchSpace, config: SpecConfig, candidates: list[SpecConfig]) -> SpecConfig:
    """The candidate closest to ``config``: numeric parameters by distance over their range,
    categorical ones by mismatch; first in grid order on ties."""
    dist = _flat_distributions(space)
    here = trial_params(space, config, flat=True)

    def distance(other: SpecConfig) -> float:
        there = trial_params(space, other, flat=True)
        total = 0.0
        for name, d in dist.items():
            a, b = here[name], there[name]
            if isinstance(d, (IntDistribution, FloatDistribution)) and d.high > d.low:
                total += abs(float(a) - float(b)) / (d.high - d.low)
            else:
                total += float(a != b)
        return total

    return min(candidates, key=distance)


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
        space, name="gp", seed=seed, flat=True, max_duplicate_asks=1,
        sampler_factory=lambda s: optuna.samplers.GPSampler(seed=s, n_startup_trials=5),
    )

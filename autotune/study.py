"""One whole study: search, the noise-aware finish, the decision, the stored recommendation."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autotune.backends import get_backend
from autotune.config import TuneSpec
from autotune.errors import SpecError
from autotune.controller import Echo, Tuner, open_study, run_search
from autotune.embedded import simulated_preset
from autotune.finish import run_finish
from autotune.recommend import (
    DEFAULT_DEPLOY_PORT,
    Decision,
    alpha_per_look,
    decide,
    decide_without_finish,
    deploy_argv,
    finish_looks,
    recommendation_json,
    worth_more_rounds,
)
from autotune.space import BASELINE, SpecConfig
from autotune.stats import rounds_needed
from autotune.store import repository as repo
from autotune.store.repository import StudyRecord, TrialRecord
from autotune.store.session import Store
from autotune.workload import Workload


@dataclass(frozen=True)
class TuneOutcome:
    study: StudyRecord
    trials: list[TrialRecord]
    decision: Decision
    recommendation: dict[str, Any]


def best_configs(trials: list[TrialRecord], count: int) -> list[tuple[SpecConfig, float]]:
    """The ``count`` best feasible setups by mean tokens/s over their search trials."""
    values: dict[SpecConfig, list[float]] = defaultdict(list)
    for trial in trials:
        if trial.feasible and trial.objective is not None:
            values[trial.config].append(trial.objective)
    ranked = sorted(((c, float(np.mean(v))) for c, v in values.items()), key=lambda x: -x[1])
    return ranked[:count]


def drafter_sizes(spec: TuneSpec) -> dict[str, int]:
    sizes = {}
    for drafter in spec.space.drafters:
        path = Path(drafter)
        sizes[drafter] = path.stat().st_size if path.is_file() else 0
    return sizes


def run_tune(
    spec: TuneSpec, store: Store, workload: Workload, *, name: str, resume: bool, echo: Echo,
    log_root: Path,
) -> TuneOutcome:
    study = open_study(store, spec, name, resume=resume)
    tuner = Tuner(spec, store, study, workload, log_root / name, echo)
    budget = spec.search.trials
    trials, pick = run_search(tuner, budget=budget)
    sizes = drafter_sizes(spec)
    top = best_configs(trials, spec.finish.finalists + 1)
    if pick is not None and pick not in [c for c, _ in top]:
        # The strategy's pick (pooled over launches) goes first; the best means follow.
        pick_values = [t.objective for t in trials if t.config == pick and t.objective]
        if pick_values:
            top.insert(0, (pick, float(np.mean(pick_values))))
    baseline_values = [t.objective for t in trials if t.config == BASELINE and t.objective]
    baseline_value = float(np.mean(baseline_values)) if baseline_values else None
    if not top:
        decision = Decision(BASELINE, "tie", baseline_value or 0.0, baseline_value)
        rounds: dict[SpecConfig, list[float]] = {}
    elif spec.finish.finalists == 0 or spec.server.attach_url:
        decision = decide_without_finish(top[0][0], top[0][1], baseline_value)
        rounds = {}
    else:
        finalists = [c for c, _ in top if c != BASELINE][: spec.finish.finalists] + [BASELINE]
        finish = spec.finish
        looks = finish_looks(finish.rounds, finish.max_rounds)
        alpha = alpha_per_look(finish.alpha, looks)
        echo(f"finish: re-measuring {len(finalists)} setups interleaved, {finish.rounds} rounds"
             + (f" (up to {looks[-1]} while a drafting lead is unproven)" if len(looks) > 1 else ""))
        needed = rounds_needed(alpha)
        if finish.rounds < needed:
            echo(f"finish: warning: {finish.rounds} rounds can never show a winner at "
                 f"alpha {alpha:g} (finish.alpha over {len(looks)} looks); a first look will "
                 f"tie with no drafting (set finish.rounds >= {needed})")

        def judge(measured_rounds: dict[SpecConfig, list[float]]) -> Decision:
            return decide(measured_rounds, simplicity=lambda c: c.simplicity(sizes),
                          min_gain=finish.min_gain, alpha=alpha)

        measured = run_finish(
            tuner, finalists, concurrent=finish.concurrent_servers, looks=looks,
            more=lambda r: worth_more_rounds(judge(r), r, min_gain=finish.min_gain),
        )
        for finalist in measured:
            if finalist.failure:
                echo(f"finish: {finalist.config.describe()} failed: {finalist.failure}")
        rounds = {f.config: f.rounds for f in measured if f.rounds}
        if rounds:
            decision = judge(rounds)
        else:
            decision = decide_without_finish(top[0][0], top[0][1], baseline_value)
    settings = tuner.launch_settings(spec.server.port or DEFAULT_DEPLOY_PORT)
    argv = deploy_argv(get_backend(spec.server.kind), settings, decision.config)
    recommendation = recommendation_json(decision, argv, study=name, server_kind=spec.server.kind)
    preset = simulated_preset(spec)
    if preset is not None:
        recommendation["simulation"] = (f"SIMULATION: autotune.sim preset {preset!r}, not a "
                                        "real server; no evidence about real hardware")
    recommendation["finish_rounds"] = {c.describe(): [round(v, 2) for v in r]
                                       for c, r in rounds.items()}
    repo.set_study_state(store, study.id, "finished", recommendation)
    return TuneOutcome(study, repo.list_trials(store, study.id), decision, recommendation)


@dataclass(frozen=True)
class VerifyOutcome:
    recommended: SpecConfig
    challenger: SpecConfig
    decision: Decision

    @property
    def agrees(self) -> bool:
        return self.decision.config == self.recommended


def run_verify(
    spec: TuneSpec, store: Store, workload: Workload, *, name: str, rounds: int, echo: Echo,
    log_root: Path,
) -> VerifyOutcome:
    """Re-measure the stored recommendation against no drafting (or, when no drafting was
    recommended, against the best drafting setup), interleaved, and decide again."""
    study = repo.find_study(store, name)
    if study is None or not study.recommendation:
        raise SpecError(f"study {name!r} has no recommendation in {store.url}; run tune first")
    recommended = SpecConfig.from_params(study.recommendation["params"])
    if recommended != BASELINE:
        challenger = BASELINE
    else:
        search = [t for t in repo.list_trials(store, study.id, phase="search")]
        others = [c for c, _ in best_configs(search, 2) if c != BASELINE]
        if not others:
            raise SpecError(f"study {name!r} measured nothing but no drafting; nothing to verify")
        challenger = others[0]
    tuner = Tuner(spec, store, study, workload, log_root / name, echo)
    measured = run_finish(tuner, [recommended, challenger], phase="verify", looks=(rounds,))
    runs = {f.config: f.rounds for f in measured if f.rounds}
    sizes = drafter_sizes(spec)
    decision = decide(runs, simplicity=lambda c: c.simplicity(sizes),
                      min_gain=spec.finish.min_gain, alpha=spec.finish.alpha)
    return VerifyOutcome(recommended, challenger, decision)

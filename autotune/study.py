"""One whole study: search, the noise-aware finish, the decision, the stored recommendation."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from autotune.backends import get_backend
from autotune.config import TuneSpec
from autotune.errors import SpecError
from autotune.controller import Echo, Tuner, open_study, recover_interrupted, run_search
from autotune.embedded import simulated_preset
from autotune.finish import run_finish
from autotune.feasibility import limit_excess, setup_feasible
from autotune.lease import study_lease
from autotune.recommend import (
    Decision,
    decide,
    finish_looks,
    search_incumbent,
    worth_more_rounds,
)
from autotune.quality import setting_of
from autotune.render import DEFAULT_DEPLOY_PORT, deploy_argv, recommendation_json
from autotune.space import BASELINE, SpecConfig, drafts

# Below this many paired rounds the t-test's critical value is so large (31.8 at one degree of
# freedom and alpha 0.01) that only huge gains can be shown.
MIN_PAIRED_ROUNDS = 4
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


def _by_setup(trials: list[TrialRecord]) -> dict[SpecConfig, list[TrialRecord]]:
    """Measured launches (with a tokens/s reading) grouped by setup."""
    return _group([t for t in trials if t.objective is not None])


def best_configs(trials: list[TrialRecord], count: int,
                 keep: Callable[[SpecConfig], bool] = lambda c: True,
                 ) -> list[tuple[SpecConfig, float]]:
    """The ``count`` best setups that meet the limits (the shared rule over their launches),
    by effort-weighted mean tokens/s."""
    ranked = []
    for config, group in _by_setup(trials).items():
        if keep(config) and setup_feasible([bool(t.feasible) for t in group]):
            weight = sum(t.effort for t in group)
            ranked.append((config, sum(t.effort * (t.objective or 0.0) for t in group) / weight))
    ranked.sort(key=lambda item: -item[1])
    return ranked[:count]


def least_bad(trials: list[TrialRecord], spec: TuneSpec) -> Decision:
    """When nothing meets the limits: the setup that breaks them least, and what it breaks."""
    grouped = _by_setup(trials)
    if not grouped:
        raise SpecError("no setup could be measured at all (every launch failed); see the "
                        "FAILED lines above and the server logs")
    def excess(trial: TrialRecord) -> float:
        return limit_excess(trial.summary, spec.limits)

    # The smallest excess over the limits first; among equals, the faster setup.
    config = min(grouped, key=lambda c: (min(map(excess, grouped[c])),
                                         -max(t.objective or 0.0 for t in grouped[c])))
    trial = min(grouped[config], key=excess)
    return Decision(config, "none-feasible", float(trial.objective or 0.0),
                    note="it breaks " + "; ".join(trial.violated))


def drafter_sizes(spec: TuneSpec) -> dict[str, int]:
    sizes = {}
    for drafter in spec.space.drafters:
        path = Path(drafter)
        sizes[drafter] = path.stat().st_size if path.is_file() else 0
    return sizes


def choose_finalists(trials: list[TrialRecord], pick: SpecConfig | None,
                     count: int, *, server_tuner: bool = False,
                     baseline: SpecConfig = BASELINE) -> list[SpecConfig]:
    """The strategy's pick and the best drafting setups, the baseline (no drafting, the
    server's defaults), and the best no-drafting setting when it is another one: every
    speedup is reported against both. With ``server_tuner``, the best drafting setup also
    runs with the server's own run-time tuner, so the user sees which wins."""
    drafting = [c for c, _ in best_configs(trials, count, keep=lambda c: drafts(c.method))]
    feasible_pick = pick is not None and any(c == pick for c, _ in best_configs(trials, 10**6))
    if pick is not None and feasible_pick and drafts(pick.method):
        # First, whatever its own readings rank: the strategy chose it from all it measured.
        drafting = [pick, *(c for c in drafting if c != pick)]
    finalists = drafting[:count] + [baseline]
    if server_tuner and drafting:
        finalists.append(replace(drafting[0], server_tuned=True))
    plain = [c for c, _ in best_configs(trials, 1, keep=lambda c: not drafts(c.method))]
    if plain and plain[0] != baseline:
        finalists.append(plain[0])
    return finalists


def run_tune(
    spec: TuneSpec, store: Store, workload: Workload, *, name: str, resume: bool, echo: Echo,
    log_root: Path,
) -> TuneOutcome:
    study = open_study(store, spec, name, resume=resume)
    with study_lease(store, study):
        recover_interrupted(store, study)
        tuner = Tuner(spec, store, study, workload, log_root / name, echo)
        try:
            trials, pick = run_search(tuner, budget=spec.search.trials)
        finally:
            tuner.release()
        decision = _decide(tuner, trials, pick)
        settings = tuner.launch_settings(spec.server.port or DEFAULT_DEPLOY_PORT)
        argv = deploy_argv(get_backend(spec.server.kind), settings, decision.config)
        recommendation = recommendation_json(decision, argv, study=name,
                                             server_kind=spec.server.kind)
        preset = simulated_preset(spec)
        if preset is not None:
            recommendation["simulation"] = (f"SIMULATION: autotune.sim preset {preset!r}, not "
                                            "a real server; no evidence about real hardware")
        agreement = repo.study_agreements(store, study.id).get(setting_of(decision.config))
        recommendation["greedy_agreement"] = asdict(agreement) if agreement else None
        finish_trials = [t for t in repo.list_trials(store, study.id, phase="finish")
                         if not t.disturbed]
        recommendation["finish_rounds"] = {
            c.describe(): [round(t.objective, 2) if t.objective is not None else None
                           for t in group]
            for c, group in _group(finish_trials).items()}
        repo.set_study_state(store, study.id, "finished", recommendation)
    return TuneOutcome(study, repo.list_trials(store, study.id), decision, recommendation)


def _group(trials: list[TrialRecord]) -> dict[SpecConfig, list[TrialRecord]]:
    grouped: dict[SpecConfig, list[TrialRecord]] = defaultdict(list)
    for trial in trials:
        grouped[trial.config].append(trial)
    return grouped


def _decide(tuner: Tuner, trials: list[TrialRecord], pick: SpecConfig | None) -> Decision:
    spec, echo = tuner.spec, tuner.echo
    if not best_configs(trials, 1):
        echo("no measured setup met the limits; reporting the least-bad one")
        return least_bad(trials, spec)
    finish = spec.finish
    baseline = spec.search_space().baseline
    finalists = choose_finalists(
        trials, pick, finish.finalists,
        server_tuner=finish.server_tuner and tuner.backend.has_server_tuner, baseline=baseline)
    if finish.finalists == 0:
        config, value = best_configs(trials, 1)[0]
        return Decision(config, "unverified", value,
                        note="no interleaved re-measurement was run (finish.finalists = 0)")
    looks = finish_looks(finish.rounds, finish.max_rounds)
    echo(f"finish: re-measuring {len(finalists)} setups interleaved, {finish.rounds} rounds"
         + (f" (up to {looks[-1]} while the decision is unsettled)" if len(looks) > 1 else ""))
    if finish.rounds < MIN_PAIRED_ROUNDS:
        echo(f"finish: warning: {finish.rounds} rounds can show only very large gains; "
             f"consider finish.rounds >= {MIN_PAIRED_ROUNDS}")
    sizes = drafter_sizes(spec)

    effort = {c: sum(t.effort for t in group)
              for c, group in _by_setup(trials).items() if c in finalists}
    prefer = search_incumbent(pick, effort)

    def judge(measured: dict[SpecConfig, list[float]]) -> Decision:
        return decide(measured, simplicity=lambda c: c.simplicity(sizes), baseline=baseline,
                      min_gain=finish.min_gain, alpha=finish.alpha, looks=looks, prefer=prefer)

    def more(measured: dict[SpecConfig, list[float]]) -> bool:
        return bool(measured) and worth_more_rounds(judge(measured))

    result = run_finish(tuner, finalists, looks=looks, more=more)
    notes = [f"{f.config.describe()} failed twice in the finish and was dropped"
             for f in result.finalists if f.failure]
    notes += [f"{f.config.describe()} broke a limit in the finish and was left out"
              for f in result.finalists if f.measured and not f.meets_limits]
    if result.disturbed:
        notes.append(f"{result.disturbed} disturbed round(s) measured again")
    feasible = result.rounds(feasible_only=True)
    if not feasible:
        echo("finish: no finalist met the limits; reporting the least-bad one")
        return least_bad([t for f in result.finalists for t in f.trials if t is not None], spec)
    decision = judge(feasible)
    if not any(not drafts(c.method) for c in feasible):
        notes.append("no drafting broke the limits or failed in the finish")
    levels = spec.workload.concurrency
    by_level = tuple((level, judge(result.rounds(feasible_only=True, level=index)))
                     for index, level in enumerate(levels[1:], start=1))
    for level, at_level in by_level:
        notes.append(f"at concurrency {level}: {at_level.config.describe()} ({at_level.verdict}"
                     + (f", x{at_level.speedup:.2f}" if at_level.speedup else "") + ")")
    return Decision(**{**decision.__dict__, "note": "; ".join(notes), "by_concurrency": by_level})


@dataclass(frozen=True)
class VerifyOutcome:
    recommended: SpecConfig
    challenger: SpecConfig
    decision: Decision

    @property
    def agrees(self) -> bool:
        return self.decision.config == self.recommended

    @property
    def inconclusive(self) -> bool:
        return self.decision.verdict in ("unproven", "unverified")


def run_verify(
    spec: TuneSpec, store: Store, workload: Workload, *, name: str, rounds: int, echo: Echo,
    log_root: Path,
) -> VerifyOutcome:
    """Re-measure the stored recommendation against no drafting (or, when no drafting was
    recommended, against the best drafting setup), interleaved, and decide again."""
    study = repo.find_study(store, name)
    if study is None:
        raise SpecError(f"no study {name!r} in {store.url} (studies there: "
                        f"{repo.study_names(store)}); name one with --name")
    if not study.recommendation:
        raise SpecError(f"study {name!r} has no recommendation in {store.url}; finish it with "
                        f"`autotune tune --resume --name {name}`")
    recommended = SpecConfig.from_params(study.recommendation["params"])
    baseline = spec.search_space().baseline
    if drafts(recommended.method):
        challenger = baseline
    else:
        search = [t for t in repo.list_trials(store, study.id, phase="search")]
        others = [c for c, _ in best_configs(search, 1, keep=lambda c: drafts(c.method))]
        if not others:
            raise SpecError(f"study {name!r} measured nothing but no drafting; nothing to verify")
        challenger = others[0]
    if rounds < MIN_PAIRED_ROUNDS:
        echo(f"verify: warning: {rounds} rounds can show only very large differences; an "
             f"inconclusive answer is likely (consider --rounds {MIN_PAIRED_ROUNDS} or more)")
    with study_lease(store, study):
        recover_interrupted(store, study)
        tuner = Tuner(spec, store, study, workload, log_root / name, echo)
        result = run_finish(tuner, [recommended, challenger], phase="verify", looks=(rounds,))
    sizes = drafter_sizes(spec)
    measured = result.rounds(feasible_only=True)
    if not measured:
        raise SpecError("verify: neither setup could be measured within the limits")
    decision = decide(measured, simplicity=lambda c: c.simplicity(sizes),
                      baseline=baseline, min_gain=spec.finish.min_gain, alpha=spec.finish.alpha)
    return VerifyOutcome(recommended, challenger, decision)

"""The noise-aware finish: re-measure the best setups and the baseline interleaved
(A B C, B C A, C A B, ...) so slow drift of the machine hits every setup alike.

By default every finalist's server runs at once and only one is measured at a time (an idle
server costs nothing on CPU); with ``concurrent_servers = false`` each round relaunches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from autotune.controller import Tuner
from autotune.errors import LaunchError, ProbeError
from autotune.objective import evaluate
from autotune.prober import LevelResult
from autotune.space import SpecConfig
from autotune.store import repository as repo
from autotune.store.models import TrialState


@dataclass
class Finalist:
    config: SpecConfig
    trial_id: int
    number: int
    base_url: str = ""
    rounds: list[float] = field(default_factory=list)
    levels: list[list[LevelResult]] = field(default_factory=list)
    failure: str | None = None


def merge_levels(per_round: list[list[LevelResult]]) -> list[LevelResult]:
    """Pool the rounds of each concurrency level into one result."""
    merged = []
    for index in range(len(per_round[0])):
        parts = [levels[index] for levels in per_round]
        counters = parts[0].counters
        for part in parts[1:]:
            counters = counters.plus(part.counters)
        merged.append(LevelResult(
            parts[0].concurrency,
            tuple(s for part in parts for s in part.samples),
            sum(part.window_s for part in parts),
            counters,
        ))
    return merged


def run_finish(
    tuner: Tuner, configs: list[SpecConfig], *, concurrent: bool = False, phase: str = "finish",
    looks: Sequence[int] | None = None,
    more: Callable[[dict[SpecConfig, list[float]]], bool] | None = None,
) -> list[Finalist]:
    """Measure ``configs`` interleaved up to the last of ``looks`` (default: finish.rounds)
    rounds, stopping at an earlier look unless ``more`` (given each setup's rounds) says go on."""
    looks = tuple(looks or (tuner.spec.finish.rounds,))
    total_rounds = looks[-1]
    finalists = []
    for config in configs:
        trial_id, number = repo.start_trial(tuner.store, tuner.study.id, phase=phase,
                                            config=config, launch_argv=tuner.argv_for(config))
        finalists.append(Finalist(config, trial_id, number))
    completed = False
    try:
        with contextlib.ExitStack() as servers:
            if concurrent:
                for finalist in finalists:
                    try:
                        finalist.base_url, _ = servers.enter_context(
                            tuner.running(finalist.config, finalist.trial_id, finalist.number))
                    except LaunchError as error:
                        finalist.failure = str(error)
            for round_index in range(total_rounds):
                live = [f for f in finalists if f.failure is None]
                if not live:
                    break
                shift = round_index % len(live)
                for finalist in live[shift:] + live[:shift]:
                    _measure_round(tuner, finalist, round_index, concurrent)
                tuner.echo(f"{phase} round {round_index + 1}/{total_rounds}: " + ", ".join(
                    f"{f.config.describe()} {f.rounds[-1]:.1f}" for f in live if f.rounds))
                done = round_index + 1
                if done in looks[:-1] and more is not None:
                    if not more({f.config: f.rounds for f in finalists if f.rounds}):
                        break
                    tuner.echo(f"{phase}: a drafting lead is not shown yet after {done} rounds; "
                               f"measuring up to {looks[looks.index(done) + 1]}")
        completed = True
    finally:
        if completed:
            for finalist in finalists:
                _store(tuner, finalist)
    return finalists


def _measure_round(tuner: Tuner, finalist: Finalist, round_index: int, concurrent: bool) -> None:
    finish = tuner.spec.finish
    warmup = tuner.spec.workload.warmup_requests if (round_index == 0 or not concurrent) else 0
    try:
        with contextlib.ExitStack() as stack:
            base_url = finalist.base_url
            if not concurrent:
                base_url, _ = stack.enter_context(
                    tuner.running(finalist.config, finalist.trial_id, finalist.number))
            levels = tuner.probe(base_url, requests=finish.requests_per_round, warmup=warmup)
    except (LaunchError, ProbeError) as error:
        finalist.failure = str(error)
        return
    finalist.levels.append(levels)
    measured = levels[0].measured
    ok = sum(s.generated_tokens for s in measured if s.ok)
    finalist.rounds.append(ok / levels[0].window_s if levels[0].window_s > 0 else 0.0)


def _store(tuner: Tuner, finalist: Finalist) -> None:
    if not finalist.levels:
        repo.finish_trial(tuner.store, finalist.trial_id, state=TrialState.FAILED,
                          failure_reason=finalist.failure or "not measured")
        return
    evaluation = evaluate(merge_levels(finalist.levels), tuner.spec.limits)
    samples = [(r, s) for r, levels in enumerate(finalist.levels)
               for level in levels for s in level.samples]
    repo.finish_trial(
        tuner.store, finalist.trial_id,
        state=TrialState.COMPLETE if evaluation.feasible else TrialState.INFEASIBLE,
        evaluation=evaluation, samples=samples, failure_reason=finalist.failure,
    )

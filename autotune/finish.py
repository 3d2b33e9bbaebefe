"""The noise-aware finish: re-measure the best setups and the baseline interleaved
(A B C, B C A, C A B, ...) on fresh servers, so slow drift of the machine hits every setup alike.

Every finalist of a round gets the same prompts (one stratified stretch of the workload, the next
one each round), so round i of two setups is a pair. Each launch is its own trial, committed
before the next starts. A round that outside load disturbed (another job's CPU, or a reading far
below its setup's own median) is measured again, up to ``finish.remeasure_rounds`` times; a
finalist whose launch fails is launched once more before it is dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from autotune.controller import Tuner
from autotune.feasibility import setup_feasible
from autotune.interference import DISTURBED_OUTSIDE_SHARE
from autotune.space import SpecConfig
from autotune.stats import disturbed_readings, round_matrix
from autotune.store import repository as repo
from autotune.store.models import TrialState
from autotune.store.repository import TrialRecord


@dataclass
class Finalist:
    config: SpecConfig
    rounds: list[float] = field(default_factory=list)  # nan: no reading that round
    outside: list[float] = field(default_factory=list)  # outside load per reading
    feasible: list[bool] = field(default_factory=list)
    trials: list[TrialRecord | None] = field(default_factory=list)  # aligned with rounds
    failure: str | None = None

    @property
    def measured(self) -> bool:
        return any(math.isfinite(v) for v in self.rounds)

    @property
    def meets_limits(self) -> bool:
        return setup_feasible(self.feasible)

    def level_rounds(self, level: int) -> list[float]:
        """Tokens/s at another concurrency level, from the same launches."""
        values = []
        for reading, trial in zip(self.rounds, self.trials, strict=True):
            levels = trial.summary if trial is not None else []
            ok = math.isfinite(reading) and len(levels) > level
            values.append(float(levels[level]["tokens_per_second"]) if ok else math.nan)
        return values


@dataclass
class FinishResult:
    finalists: list[Finalist]
    disturbed: int = 0  # rounds measured again because outside load disturbed them

    def rounds(self, *, feasible_only: bool = False,
               level: int = 0) -> dict[SpecConfig, list[float]]:
        """Each finalist's aligned readings at one concurrency level (0: the first)."""
        return {f.config: f.rounds if level == 0 else f.level_rounds(level)
                for f in self.finalists if f.measured and (f.meets_limits or not feasible_only)}


def _reading(trial: TrialRecord) -> tuple[float, float]:
    if trial.state == TrialState.FAILED or trial.objective is None:
        return math.nan, math.nan
    primary = trial.summary[0] if trial.summary else {}
    outside = primary.get("outside_cpu_share")
    return float(trial.objective), float(outside) if outside is not None else math.nan


def _measure(tuner: Tuner, finalist: Finalist, *, phase: str, rotation: int,
             round_index: int) -> TrialRecord:
    """One launch of the round; a failed launch is tried once more before it counts."""
    requests = tuner.spec.finish.requests_per_round
    trial = tuner.measure(finalist.config, phase=phase, rotation=rotation, round_=round_index,
                          requests=requests)
    if trial.state == TrialState.FAILED:
        tuner.echo(f"{phase}: {finalist.config.describe()} failed ({trial.failure_reason}); "
                   "launching it once more")
        trial = tuner.measure(finalist.config, phase=phase, rotation=rotation,
                              round_=round_index, requests=requests)
    return trial


def run_finish(
    tuner: Tuner, configs: Sequence[SpecConfig], *, phase: str = "finish",
    looks: Sequence[int] | None = None,
    more: Callable[[dict[SpecConfig, list[float]]], bool] | None = None,
) -> FinishResult:
    """Measure ``configs`` interleaved up to the last of ``looks`` (default: finish.rounds)
    rounds, stopping at an earlier look unless ``more`` (given the feasible finalists'
    aligned rounds) says go on."""
    looks = tuple(looks or (tuner.spec.finish.rounds,))
    remeasure_left = tuner.spec.finish.remeasure_rounds
    result = FinishResult([Finalist(c) for c in configs])
    rotation = 0
    kept = 0
    while kept < looks[-1]:
        live = [f for f in result.finalists if f.failure is None]
        if not live:
            break
        shift = rotation % len(live)
        this_round: dict[int, TrialRecord] = {}
        for finalist in live[shift:] + live[:shift]:
            trial = _measure(tuner, finalist, phase=phase, rotation=rotation, round_index=kept)
            this_round[id(finalist)] = trial
            if trial.state == TrialState.FAILED:
                finalist.failure = trial.failure_reason or "failed twice"
                tuner.echo(f"{phase}: {finalist.config.describe()} failed again and is "
                           f"dropped: {finalist.failure}")
        rotation += 1
        readings = {id(f): _reading(this_round[id(f)]) if id(f) in this_round
                    else (math.nan, math.nan) for f in result.finalists}
        hit = _disturbed(result.finalists, readings)
        if hit and remeasure_left > 0:
            remeasure_left -= 1
            result.disturbed += 1
            repo.mark_disturbed(tuner.store, [t.id for t in this_round.values()])
            worst = max((r[1] for r in readings.values() if math.isfinite(r[1])), default=0.0)
            tuner.echo(f"{phase} round {kept + 1}: disturbed (outside load up to "
                       f"{100 * worst:.0f}% of the machine, or a reading far below its setup's "
                       "median); measuring the round again")
            continue
        if hit:  # no re-measurement left: the disturbed readings count as missing
            repo.mark_disturbed(tuner.store, [this_round[key].id for key in hit
                                              if key in this_round])
            for key in hit:
                readings[key] = (math.nan, readings[key][1])
            tuner.echo(f"{phase} round {kept + 1}: disturbed and no re-measurement left; its "
                       "disturbed readings are left out")
        for finalist in result.finalists:
            value, outside = readings[id(finalist)]
            finalist.rounds.append(value)
            finalist.outside.append(outside)
            measured = this_round.get(id(finalist))
            finalist.trials.append(measured)
            if measured is not None and measured.state != TrialState.FAILED:
                finalist.feasible.append(bool(measured.feasible))
        kept += 1
        tuner.echo(f"{phase} round {kept}/{looks[-1]}: " + ", ".join(
            f"{f.config.describe()} " + (f"{f.rounds[-1]:.1f}" if math.isfinite(f.rounds[-1])
                                         else "no reading")
            for f in result.finalists if f.failure is None or f.measured))
        if kept in looks[:-1] and more is not None:
            if not more(result.rounds(feasible_only=True)):
                break
            tuner.echo(f"{phase}: the decision is not settled after {kept} rounds; measuring "
                       f"up to {looks[looks.index(kept) + 1]}")
    return result


def _disturbed(finalists: Sequence[Finalist],
               readings: dict[int, tuple[float, float]]) -> list[int]:
    """The finalists (by id) whose reading in the round just measured was disturbed."""
    with_new = [[*f.rounds, readings[id(f)][0]] for f in finalists]
    outside = np.array([[*f.outside, readings[id(f)][1]] for f in finalists], dtype=float).T
    flagged = disturbed_readings(round_matrix(with_new), outside, DISTURBED_OUTSIDE_SHARE)
    return [id(f) for f, hit in zip(finalists, flagged[-1], strict=True) if hit]

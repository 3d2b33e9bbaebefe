"""`autotune gate record` and `autotune gate check`: measure, compare, decide. The maths is in
``judge``, the launches in ``measure``; this module sequences them."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from autotune.config import TuneSpec
from autotune.controller import Echo
from autotune.errors import SpecError
from autotune.gate import fingerprint as fp
from autotune.gate.judge import (
    Signal,
    Verdict,
    acceptance_signal,
    correctness_signal,
    overall,
    throughput_signal,
)
from autotune.gate.measure import GateMeasurer, Reading, Side
from autotune.greedy import GreedyOutputs, compare_outputs
from autotune.space import SpecConfig, drafts, is_baseline
from autotune.stats import disturbed_readings
from autotune.store import repository as repo
from autotune.store.session import Store
from autotune.workload import Workload

BASELINE_FORMAT = 1
REMEASURE_DISTURBED = 4  # launches measured again because outside load disturbed them
PAUSE_AFTER_LOAD_S = 5.0
TOP_LOGPROBS = 3  # likeliest tokens asked of a no-drafting run, to tell near-ties apart


@dataclass
class GateReport:
    mode: str  # "baseline-file" | "a-b"
    setup: str
    against: str
    signals: list[Signal]
    verdict: Verdict
    exit_code: int
    seconds: float
    launches: int
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    readings: list[dict[str, Any]] = field(default_factory=list)  # per rotation, both sides
    on_inconclusive: str = "exit-3"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["signals"] = [s.to_dict() for s in self.signals]
        return data


def exit_code_for(verdict: Verdict, on_inconclusive: str) -> int:
    if verdict == "regression":
        return 1
    if verdict == "inconclusive":
        return {"exit-3": 3, "pass": 0, "fail": 1}[on_inconclusive]
    return 0


def current_fingerprint(spec: TuneSpec, workload: Workload, setup: SpecConfig,
                        build: str | None) -> dict[str, Any]:
    return {
        "workload": fp.workload_fingerprint(workload),
        "build": build,
        "model": fp.file_identity(spec.server.model),
        "drafter": fp.file_identity(setup.drafter) if setup.drafter else None,
        "hardware": fp.hardware(),
    }


def _study(store: Store, spec: TuneSpec, what: str) -> Any:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    return repo.create_study(store, name=f"gate-{what}-{spec.name or 'spec'}-{stamp}",
                             server_kind=spec.server.kind, strategy="gate", seed=0,
                             trials_budget=0, spec=spec.model_dump(mode="json"))


def _measure_rotation(measurer: GateMeasurer, sides: Sequence[Side], rotation: int,
                      budget: list[int]) -> list[Reading]:
    """One launch per side on the same prompts (the order alternates by rotation, so a drift
    in the machine does not always favour one side); a rotation that outside load disturbed
    is measured again while the budget lasts."""
    order = list(sides) if rotation % 2 == 0 else list(reversed(sides))
    while True:
        readings = {side.label: measurer.launch(side, rotation) for side in order}
        if not any(r.disturbed for r in readings.values()) or budget[0] <= 0:
            return [readings[side.label] for side in sides]
        budget[0] -= 1
        time.sleep(PAUSE_AFTER_LOAD_S)  # let a burst of other work pass before measuring again


def record(spec: TuneSpec, store: Store, workload: Workload, setup: SpecConfig, *, echo: Echo,
           log_dir: Path) -> dict[str, Any]:
    """Measure ``setup`` on as many workload stretches (rotations) as a check may ever use
    (``max_launches + confirm_launches``), so every check launch pairs with a recorded launch
    on the same prompts, and return the baseline to commit."""
    study = _study(store, spec, "record")
    measurer = GateMeasurer(spec, store, study, workload, log_dir / study.name, echo)
    side = Side("recorded", setup, spec.server.binary)
    build = measurer.greedy_outputs(side, []).build
    budget = [REMEASURE_DISTURBED]
    count = spec.gate.max_launches + spec.gate.confirm_launches
    echo(f"gate record: {setup.describe()}, {count} launches")
    readings = [_measure_rotation(measurer, [side], r, budget)[0] for r in range(count)]
    column = np.array([[r.tokens_per_second] for r in readings])
    for rotation in np.where(disturbed_readings(column)[:, 0])[0]:
        if budget[0] <= 0:
            break
        budget[0] -= 1
        echo(f"gate: launch {rotation} is far below the others; measuring it again")
        readings[int(rotation)] = _measure_rotation(measurer, [side], int(rotation), [0])[0]
    repo.set_study_state(store, study.id, "finished")
    return {
        "autotune_gate_baseline": BASELINE_FORMAT,
        "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "setup": setup.to_params(),
        "setup_label": setup.describe(),
        "fingerprint": current_fingerprint(spec, workload, setup, build),
        "requests_per_launch": spec.workload.requests,
        "launches": [asdict(r) for r in readings],
        "study": study.name,
    }


def load_baseline(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SpecError(f"gate baseline not found: {path}; record one with `autotune gate record`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise SpecError(f"{path}: not a gate baseline (not JSON: {error}); record it again "
                        "with `autotune gate record`") from None
    if not isinstance(data, dict) or data.get("autotune_gate_baseline") != BASELINE_FORMAT:
        raise SpecError(f"{path}: not an autotune gate baseline (format "
                        f"{BASELINE_FORMAT}); record it with `autotune gate record`")
    try:
        SpecConfig.from_params(data["setup"])
        [float(r["tokens_per_second"]) for r in data["launches"]]
    except (KeyError, TypeError, ValueError) as error:
        raise SpecError(f"{path}: a gate baseline with a broken setup or readings ({error}); "
                        "record it again") from None
    return data


@dataclass
class _Evidence:
    """Readings paired by rotation: the same prompts on both sides. A pair measured while
    other work held a tenth of the machine (psutil saw it) after the re-measure budget was
    spent is left out of the verdicts: it is known to be contaminated, and keeping it turns a
    busy hour into a red or inconclusive build."""

    before: list[Reading]
    after: list[Reading]

    def clean(self) -> tuple[list[Reading], list[Reading]]:
        pairs = [(b, a) for b, a in zip(self.before, self.after, strict=True)
                 if not (b.disturbed or a.disturbed)]
        return [b for b, _ in pairs], [a for _, a in pairs]

    @property
    def left_out(self) -> int:
        return len(self.after) - len(self.clean()[1])

    def outliers(self) -> list[int]:
        """Rotations whose throughput ratio sits far below the others' (see
        ``stats.disturbed_readings``); a steady regression moves the median, not one pair."""
        ratios = np.array([[a.tokens_per_second / b.tokens_per_second]
                           for b, a in zip(self.before, self.after, strict=True)])
        return [int(i) for i in np.where(disturbed_readings(ratios)[:, 0])[0]]

    def signals(self, spec: TuneSpec, alpha: float) -> list[Signal]:
        gate = spec.gate
        before, after = self.clean()
        return [
            throughput_signal([r.tokens_per_second for r in before],
                              [r.tokens_per_second for r in after],
                              tolerance=gate.tolerance, alpha=alpha, paired=True),
            acceptance_signal("acceptance", [r.acceptance for r in before],
                              [r.acceptance for r in after],
                              tolerance=gate.acceptance_tolerance, alpha=alpha,
                              paired=True),
            acceptance_signal("mean accepted length", [r.accepted_length for r in before],
                              [r.accepted_length for r in after],
                              tolerance=gate.acceptance_tolerance, alpha=alpha,
                              paired=True, relative=True),
        ]


def check(spec: TuneSpec, store: Store, workload: Workload, baseline: dict[str, Any],
          setup: SpecConfig, *, ab: bool, binary_a: str | None, allow_mismatch: bool,
          echo: Echo, log_dir: Path) -> GateReport:
    started = time.monotonic()
    gate = spec.gate
    recorded_setup = SpecConfig.from_params(baseline["setup"])
    study = _study(store, spec, "check")
    measurer = GateMeasurer(spec, store, study, workload, log_dir / study.name, echo)
    current = Side("current", setup, spec.server.binary)
    notes: list[str] = []

    # Workload and hardware are known before any launch; the build only after the first.
    early = fp.differences(baseline["fingerprint"], current_fingerprint(spec, workload, setup, None),
                           ("workload", "hardware"))
    if early and not (ab or allow_mismatch):
        _refuse(store, study.id, early)
    outputs, correctness, build = _correctness(measurer, spec, workload, current)
    now = current_fingerprint(spec, workload, setup, build)
    differences = fp.differences(baseline["fingerprint"], now, fp.BLOCKING)
    notes += [f"changed: {d}" for d in fp.differences(baseline["fingerprint"], now,
                                                     ("model", "drafter"))]
    if ab:
        against = Side("baseline setup", recorded_setup, binary_a or spec.server.binary)
    elif differences and not allow_mismatch:
        _refuse(store, study.id, differences)
    else:
        against = Side("recorded", recorded_setup, "")
        if differences:
            notes.append("compared across changed terms (--allow-mismatch): "
                         + "; ".join(differences))
    if not ab and requests_differ(baseline, spec):
        notes.append(f"the baseline sent {baseline.get('requests_per_launch')} requests per "
                     f"launch, this check {spec.workload.requests}")

    looks = 1 + math.ceil((gate.max_launches - gate.launches) / 2) + (gate.confirm_launches > 0)
    alpha = gate.alpha / looks  # every look may stop the gate: split alpha over them
    recorded = [Reading(**{**r, "trial_number": r.get("trial_number", -1)})
                for r in baseline["launches"]]
    evidence = _Evidence(before=[], after=[])
    # Without --ab, launch r pairs with the recorded launch r (the same prompts): as many
    # launches as were recorded.
    ceiling = gate.max_launches + gate.confirm_launches if ab else len(recorded)
    budget = [REMEASURE_DISTURBED]
    sides = [against, current] if ab else [current]
    echo(f"gate check: {setup.describe()} against "
         f"{'the baseline setup, side by side' if ab else 'the recorded readings'}")

    def measure(count: int) -> None:
        for _ in range(count):
            rotation = len(evidence.after)
            readings = _measure_rotation(measurer, sides, rotation, budget)
            evidence.before.append(readings[0] if ab else recorded[rotation])
            evidence.after.append(readings[-1])
        # A burst on a shared host can slow one launch by a third while psutil sees nothing
        # (another VM on the same cores): a pair far off the others' ratio is measured again.
        for rotation in evidence.outliers():
            if budget[0] <= 0:
                break
            budget[0] -= 1
            echo(f"gate: launch {rotation} is far off the others; measuring it again")
            readings = _measure_rotation(measurer, sides, rotation, [0])
            if ab:
                evidence.before[rotation] = readings[0]
            evidence.after[rotation] = readings[-1]

    measure(min(gate.launches, ceiling))
    signals = evidence.signals(spec, alpha)
    growth = min(gate.max_launches, ceiling)
    while overall(signals) == "inconclusive" and len(evidence.after) < growth:
        more = min(2, growth - len(evidence.after))
        echo(f"gate: not settled after {len(evidence.after)} launches; measuring {more} more")
        measure(more)
        signals = evidence.signals(spec, alpha)
    confirm = min(gate.confirm_launches, ceiling - len(evidence.after))
    if overall(signals) == "regression" and confirm > 0:
        echo(f"gate: regression seen; confirming with {confirm} more launches")
        measure(confirm)
        confirmed = evidence.signals(spec, alpha)
        if overall(confirmed) != "regression":
            notes.append("a regression seen at first was not confirmed by the extra launches")
        signals = confirmed
    if evidence.left_out:
        notes.append(f"{evidence.left_out} launch pair(s) measured under outside load (after "
                     f"{REMEASURE_DISTURBED} re-measurements) were left out")
    signals += correctness
    verdict = overall(signals)
    repo.set_study_state(store, study.id, "finished")
    return GateReport(
        mode="a-b" if ab else "baseline-file", setup=setup.describe(),
        against=(f"{recorded_setup.describe()} measured side by side" if ab else
                 f"{baseline.get('setup_label')} recorded {baseline.get('recorded_at')}"),
        signals=signals, verdict=verdict,
        exit_code=exit_code_for(verdict, gate.on_inconclusive),
        on_inconclusive=gate.on_inconclusive,
        seconds=time.monotonic() - started,
        launches=measurer.launches,
        differences=differences, notes=notes, outputs=outputs,
        readings=[{"rotation": i, "before": asdict(b), "after": asdict(a)}
                  for i, (b, a) in enumerate(zip(evidence.before, evidence.after, strict=True))])


def _refuse(store: Store, study_id: int, differences: list[str]) -> None:
    repo.set_study_state(store, study_id, "refused")
    raise SpecError("the baseline was recorded on other terms (" + "; ".join(differences)
                    + "); compare side by side with --ab, or pass --allow-mismatch")


def requests_differ(baseline: dict[str, Any], spec: TuneSpec) -> bool:
    return bool(baseline.get("requests_per_launch") not in (None, spec.workload.requests))


def _correctness(measurer: GateMeasurer, spec: TuneSpec, workload: Workload,
                 current: Side) -> tuple[list[dict[str, Any]], list[Signal], str | None]:
    """Greedy outputs of the setup against (a) the same setup without drafting, which must
    be identical (drafting at temperature 0 is lossless by design; a difference is a server
    or drafter bug) except at a near-tie by the twin's own log-probabilities, and (b) the
    reference, f16 KV with no drafting at the server's defaults, whose agreement measures
    what a lossy KV cache costs."""
    prompts = workload.schedule(min(spec.gate.correctness_prompts, workload.distinct_count), 0)
    mine = measurer.greedy_outputs(current, prompts)
    setup = current.config
    twin = setup.without_drafting()
    signals: list[Signal] = []
    outputs: list[dict[str, Any]] = []
    known: dict[SpecConfig, GreedyOutputs] = {setup: mine}

    def outputs_of(config: SpecConfig, label: str) -> GreedyOutputs:
        if config not in known:  # a reference: its log-probabilities judge divergences
            known[config] = measurer.greedy_outputs(Side(label, config, current.binary), prompts,
                                                    top_logprobs=TOP_LOGPROBS)
        return known[config]

    if prompts and drafts(setup.method):
        compared = compare_outputs(prompts, outputs_of(twin, "no-drafting twin"), mine,
                                   near_tie_nats=spec.gate.near_tie_nats)
        signals.append(correctness_signal("correctness", compared, required=True))
        outputs += [{"against": "same setup without drafting", **asdict(c)} for c in compared]
    else:
        signals.append(correctness_signal("correctness", [], required=True))
    reference = spec.search_space().baseline
    if prompts and not is_baseline(setup) and not is_baseline(twin):
        compared = compare_outputs(prompts, outputs_of(reference, "reference"), mine)
        signals.append(correctness_signal("quality", compared, required=False,
                                          max_loss=spec.gate.max_quality_loss))
        outputs += [{"against": "reference (unquantized KV, no drafting)", **asdict(c)}
                    for c in compared]
    build = mine.build
    return outputs, signals, build


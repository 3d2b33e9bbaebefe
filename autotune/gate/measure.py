"""The gate's measurements, through the tuner's measuring core: each launch is a trial of
a gate study in the results database (committed with its samples before the next), and the
greedy outputs for the correctness signal come from their own launches (``autotune.greedy``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotune.config import TuneSpec
from autotune.controller import Echo, Tuner
from autotune.errors import AutotuneError
from autotune.greedy import GreedyOutputs, OutputsError, greedy_outputs
from autotune.interference import DISTURBED_OUTSIDE_SHARE
from autotune.space import SpecConfig
from autotune.store.models import TrialState
from autotune.store.repository import StudyRecord
from autotune.store.session import Store
from autotune.workload import Prompt, Workload


SUMMARY_KEYS = ("requests", "errors", "decode_tokens_per_second", "ttft_p95_ms", "tpot_p95_ms",
                "e2e_p95_ms")


class GateSetupError(AutotuneError):
    """The gate could not measure (a server that does not start, say): exit 2, not a verdict."""


@dataclass(frozen=True)
class Reading:
    """One launch of one side."""

    rotation: int
    tokens_per_second: float
    acceptance: float | None
    accepted_length: float | None  # accepted tokens per draft
    outside_share: float | None
    trial_number: int
    # The launch's request summary: requests, errors, decode tokens/s, TTFT/TPOT/e2e p95.
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def disturbed(self) -> bool:
        return (self.outside_share or 0.0) >= DISTURBED_OUTSIDE_SHARE


@dataclass(frozen=True)
class Side:
    """What one side of a comparison runs: a setup, on a server binary."""

    label: str
    config: SpecConfig
    binary: str


@dataclass
class GateMeasurer:
    spec: TuneSpec
    store: Store
    study: StudyRecord
    workload: Workload
    log_dir: Path
    echo: Echo
    launches: int = 0  # servers started, measured or for outputs

    def _tuner(self, side: Side) -> Tuner:
        server = self.spec.server.model_copy(update={"binary": side.binary})
        spec = self.spec.model_copy(update={"server": server})
        return Tuner(spec, self.store, self.study, self.workload, self.log_dir, self.echo,
                     guard_quality=False)

    def launch(self, side: Side, rotation: int) -> Reading:
        """Measure one launch; a launch that fails is tried once more before the gate gives
        up with the server's own reason."""
        tuner = self._tuner(side)
        for attempt in (1, 2):
            self.launches += 1
            trial = tuner.measure(side.config, phase="gate", rotation=rotation,
                                  requests=self.spec.workload.requests)
            if trial.state != TrialState.FAILED and trial.objective:
                primary = trial.summary[0] if trial.summary else {}
                acceptance = primary.get("acceptance")
                length = primary.get("mean_draft_length")
                accepted = acceptance * length if acceptance is not None and length else None
                reading = Reading(rotation, float(trial.objective), acceptance, accepted,
                                  primary.get("outside_cpu_share"), trial.number,
                                  {key: primary.get(key) for key in SUMMARY_KEYS})
                self.echo(f"  {side.label}: {trial.objective:.1f} tok/s"
                          + (f", acceptance {acceptance:.2f}" if acceptance is not None else "")
                          + (" (outside load: measured again)" if reading.disturbed else ""))
                return reading
            if attempt == 1:
                self.echo(f"  {side.label}: launch failed ({trial.failure_reason}); "
                          "trying it once more")
        raise GateSetupError(f"{side.label} ({side.config.describe()}) could not be measured: "
                             f"{trial.failure_reason}")

    def greedy_outputs(self, side: Side, prompts: Sequence[Prompt], *,
                       top_logprobs: int = 0) -> GreedyOutputs:
        """``side``'s greedy answers to ``prompts`` and its build (one launch)."""
        tuner = self._tuner(side)
        name = side.label.replace(" ", "-")
        self.launches += 1
        try:
            return greedy_outputs(
                tuner.backend, tuner.launch_settings(0), side.config, prompts,
                log_path=self.log_dir / f"gate-outputs-{name}.log",
                startup_timeout_s=self.spec.server.startup_timeout_s,
                request_timeout_s=self.spec.workload.request_timeout_s,
                top_logprobs=top_logprobs)
        except OutputsError as error:
            raise GateSetupError(f"{side.label}: {error}") from None

"""What the sidecar knows about the live server: windows from successive scrapes, drift of
each signal against the windows it first saw, and the advice on draft-max. No I/O here: the
loop hands in each scrape.

Drift is watched on two signals that do not move with demand: decode tokens/s (tokens over
the server's own decoding time; time per output token is its inverse) and acceptance
(accepted over drafted tokens). Generated tokens/s follows how busy the server is, so it is
shown, never judged. A window with too few tokens says little and is not fed to the test."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from autotune.backends import SpecCounters
from autotune.drift import Cusum, DriftSettings, Reference
from autotune.live import LiveWindow, Scrape, window
from autotune.sidecar.advice import Advice, StepCost, advise, fit_step_cost, step_point
from autotune.space import SpecConfig, drafts
from autotune.store.repository import TrialRecord

SIGNALS = ("decode_tokens_per_second", "acceptance")


@dataclass(frozen=True)
class Alarm:
    signal: str
    direction: str  # "up" or "down"
    window: int  # the window count at which it fired
    at_unix_s: float


@dataclass
class SignalDrift:
    """One signal's test: reference windows first, then the CUSUM."""

    settings: DriftSettings
    reference_windows: int
    learning: list[float] = field(default_factory=list)
    detector: Cusum | None = None
    alarm: Alarm | None = None
    alarms: int = 0

    @property
    def reference(self) -> Reference | None:
        return self.detector.reference if self.detector else None

    def feed(self, signal: str, value: float, windows: int) -> Alarm | None:
        if self.detector is None:
            self.learning.append(value)
            if len(self.learning) >= self.reference_windows:
                reference = Reference.of(self.learning, block=self.settings.block)
                self.detector = Cusum(reference, self.settings)
            return None
        direction = self.detector.update(value)
        if direction is None:
            return None
        alarm = Alarm(signal, direction, windows, time.time())
        self.alarms += 1
        self.alarm = self.alarm or alarm  # the state shows when drift began, until a rebase
        return alarm

    def rebase(self) -> None:
        """Learn "normal" again from the next windows (after a retune was published)."""
        self.learning.clear()
        self.detector = None
        self.alarm = None


class Watch:
    """Feeds scrapes in, keeps the latest window, the drift state and the advice."""

    def __init__(self, *, reference_windows: int, min_window_tokens: int,
                 settings: DriftSettings = DriftSettings(), draft_max: int | None = None,
                 cost: StepCost | None = None, advice_windows: int | None = None) -> None:
        self.min_window_tokens = min_window_tokens
        self.draft_max = draft_max
        self.cost = cost
        self.drift = {name: SignalDrift(settings, reference_windows) for name in SIGNALS}
        self.recent: deque[LiveWindow] = deque(maxlen=advice_windows or reference_windows)
        self.previous: Scrape | None = None
        self.latest: LiveWindow | None = None
        self.windows = 0  # windows that carried traffic
        self.resets = 0
        self.advice: Advice | None = None

    def feed(self, scrape: Scrape, *, judge: bool = True) -> list[Alarm]:
        """One scrape in; the alarms it raised out. ``judge=False`` keeps the window out of
        the drift test (the sidecar's own canary loads the machine while it runs)."""
        earlier, self.previous = self.previous, scrape
        if earlier is None:
            return []
        live = window(earlier, scrape)
        if live is None:
            return []
        self.latest = live
        if live.reset:
            self.resets += 1
            self.recent.clear()  # a restart may be a new setup: advise on what it does now
        if live.generated_tokens < self.min_window_tokens:
            return []
        self.windows += 1
        self.recent.append(live)
        self.advice = self._advise(scrape.counters)
        alarms: list[Alarm] = []
        if not judge:
            return alarms
        for name in SIGNALS:
            value = getattr(live, name)
            if name == "acceptance" and live.drafted_tokens < self.min_window_tokens / 2:
                value = None
            if value is None or value <= 0:
                continue
            alarm = self.drift[name].feed(name, value, self.windows)
            if alarm is not None:
                alarms.append(alarm)
        return alarms

    def current_draft_max(self, pooled: SpecCounters) -> int | None:
        """What the live server drafts at most: as configured (exact), else the longest of
        the positions its counters list and the mean draft length (rounded up). Positions
        that never accepted may be missing and drafts may stop early, so this can read low:
        set ``[sidecar] draft_max`` where it matters."""
        if self.draft_max:
            return self.draft_max
        mean_draft = pooled.draft_tokens / pooled.drafts if pooled.drafts > 0 else 0.0
        longest = max(len(pooled.accepted_per_position), math.ceil(mean_draft - 1e-9))
        return longest or None

    def _advise(self, counters: SpecCounters) -> Advice | None:
        if self.cost is None or counters.levels:
            return None
        pooled = SpecCounters()
        for live in self.recent:
            pooled = pooled.plus(live.counts)
        current = self.current_draft_max(pooled)
        if current is None or pooled.drafts <= 0:
            return None
        accepted = list(pooled.accepted_per_position)[:current]
        return advise(pooled.drafts, accepted, pooled.draft_tokens, current, self.cost)

    def rebase(self) -> None:
        for drift in self.drift.values():
            drift.rebase()

    @property
    def drifted(self) -> list[Alarm]:
        return [d.alarm for d in self.drift.values() if d.alarm is not None]


def _group_key(config: SpecConfig) -> tuple[str | None, ...]:
    return (config.cache_type_k, config.cache_type_v, config.flash_attn)


def step_cost_of(trials: Sequence[TrialRecord], setup: SpecConfig | None) -> StepCost | None:
    """The step-cost line from a stored study: the drafting setups of ``setup``'s method and
    drafter (any draft-max) with no drafting on the same cache, or, when that cannot be
    fitted, the group with the most measured setups that can."""
    groups: dict[tuple[str | None, ...], list[tuple[float, float]]] = {}
    plain: dict[tuple[str | None, ...], list[tuple[float, float]]] = {}
    for trial in trials:
        if not trial.finished or trial.objective is None or not trial.summary:
            continue
        reading = trial.summary[0]
        speed = reading.get("decode_tokens_per_second")
        if not speed:
            continue
        point = step_point(speed, reading.get("acceptance"), reading.get("mean_draft_length"))
        if point is None:
            continue
        config = trial.config
        if drafts(config.method):
            key = (config.method, config.drafter, *_group_key(config))
            groups.setdefault(key, []).append(point)
        else:
            plain.setdefault(_group_key(config), []).append(point)

    def fit(key: tuple[str | None, ...]) -> StepCost | None:
        return fit_step_cost(groups.get(key, []) + plain.get(key[2:], []))

    if setup is not None and drafts(setup.method):
        wanted = fit((setup.method, setup.drafter, *_group_key(setup)))
        if wanted is not None:
            return wanted
    fitted = [c for c in (fit(k) for k in groups) if c is not None]
    return max(fitted, key=lambda c: c.points) if fitted else None

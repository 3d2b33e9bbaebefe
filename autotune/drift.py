"""Drift: has the live server moved away from what its setup was tuned on? Pure functions.

A two-sided CUSUM on the log ratio of each window's figure (tokens/s, or acceptance) to the
reference windows' median. Textbook CUSUM on standardized data (k = 0.5, h = 5) raises false
alarms all the time on real streams (river #1914: about 88% on a stable one), because real
windows are heavy-tailed, bursty and correlated. So here:

- the statistic steps once per block of ``block`` windows, on the block's median: a burst from
  a noisy neighbour that spans fewer than half a block does not move it at all, and blocks are
  far less correlated than windows (the run-length formula below assumes independence);
- the scale is the reference's robust spread (MAD) of such block medians, floored so a very
  quiet reference cannot make every wobble significant;
- each window's contribution is clipped at ``clip`` scales: one burst from a noisy neighbour
  cannot raise an alarm on its own;
- the allowance ``k`` is half the smallest shift worth acting on (``min_shift``, 10% by
  default), not half a standard deviation: a change too small to retune for never alarms;
- the threshold ``h`` is solved from Siegmund's approximation for a target in-control run
  length (``arl0`` blocks between false alarms, if the blocks were independent);
- the clip also caps how fast a collapse is seen: acceptance falling from 0.95 to 0.10 moved
  the statistic no faster than a 20% drop (4-5 blocks on the real server's noisy acceptance).
  So, as in a combined Shewhart-CUSUM scheme (Lucas, 1982), two blocks in a row beyond
  ``extreme`` scales on one side, each also beyond ``min_shift``, alarm at once. A burst has to
  move two block medians for that: cover half of each of two blocks, a block's length in a row.

``benchmarks/drift.py`` measures the false-alarm rate and the delay to detect a 20% and a 60%
drop on SIMULATED streams with bursts and correlation."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

MIN_SCALE = 0.02  # a reference spread below 2% is taken as 2%


@dataclass(frozen=True)
class DriftSettings:
    min_shift: float = 0.10  # relative change worth acting on
    arl0: float = 20_000.0  # target blocks between false alarms, were blocks independent
    clip: float = 3.0  # a block moves the statistic by at most this many scales
    block: int = 8  # windows per step, summarized by their median
    extreme: float = 4.0  # two blocks in a row beyond this many scales alarm at once


@dataclass(frozen=True)
class Reference:
    """What "normal" was: the median and robust spread of log values of tuned-on windows."""

    center: float
    scale: float

    @classmethod
    def of(cls, values: Iterable[float], block: int = DriftSettings.block) -> Reference:
        logs = np.log(np.asarray([v for v in values if v > 0], dtype=float))
        if logs.size == 0:
            raise ValueError("a drift reference needs positive readings")
        center = float(np.median(logs))
        if logs.size >= block + 2:  # the spread of block medians (rolling, so more of them)
            medians = np.median(np.lib.stride_tricks.sliding_window_view(logs, block), axis=1)
        else:
            medians = logs
        scale = 1.4826 * float(np.median(np.abs(medians - center))) if medians.size > 2 else 0.0
        # A spread and a center estimated from a dozen blocks are themselves uncertain; leaning
        # wide keeps a short reference from turning ordinary wobble into alarms.
        blocks = max(1.0, logs.size / block)
        return cls(center, max(scale, MIN_SCALE) * (1.0 + 1.0 / math.sqrt(blocks)))


def siegmund_arl(k: float, h: float) -> float:
    """In-control average run length of a one-sided CUSUM with allowance ``k`` and threshold
    ``h`` (both in standard deviations) on independent normal steps (Siegmund, 1985)."""
    b = h + 1.166
    if k == 0:
        return b * b
    return (math.exp(2 * k * b) - 2 * k * b - 1) / (2 * k * k)


def threshold(k: float, arl0: float) -> float:
    """The ``h`` (in standard deviations) whose two-sided CUSUM reaches ``arl0`` in control
    (each side gets twice the run length, so the pair alarms about every ``arl0``)."""
    upper = 1.0
    while siegmund_arl(k, upper) < 2 * arl0:  # widen the bracket; exp() overflows far out
        upper *= 2.0
    return float(optimize.brentq(lambda h: siegmund_arl(k, h) - 2 * arl0, 0.0, upper))


@dataclass
class Cusum:
    """The running two-sided statistic; ``update`` returns "up", "down" or ``None``."""

    reference: Reference
    settings: DriftSettings = DriftSettings()
    high: float = 0.0
    low: float = 0.0
    windows: int = 0
    pending: list[float] = field(default_factory=list)  # log values of the open block
    last_extreme: str | None = None  # the side the previous block lay far out on, if any

    @property
    def k(self) -> float:  # in scales
        return 0.5 * math.log1p(self.settings.min_shift) / self.reference.scale

    @property
    def h(self) -> float:
        return threshold(self.k, self.settings.arl0)

    def update(self, value: float) -> str | None:
        """Feed one window; the statistic moves when a block is full."""
        if value <= 0:
            return None
        self.windows += 1
        self.pending.append(math.log(value))
        if len(self.pending) < self.settings.block:
            return None
        center = float(np.median(self.pending))
        self.pending.clear()
        shift = center - self.reference.center
        extreme = self._extreme(shift)
        twice, self.last_extreme = extreme is not None and extreme == self.last_extreme, extreme
        z = max(-self.settings.clip, min(self.settings.clip, shift / self.reference.scale))
        self.high = max(0.0, self.high + z - self.k)
        self.low = max(0.0, self.low - z - self.k)
        h = self.h
        if twice or self.high > h or self.low > h:
            direction = extreme if twice else "up" if self.high > h else "down"
            self.high = self.low = 0.0
            self.last_extreme = None
            return direction
        return None

    def _extreme(self, shift: float) -> str | None:
        """The side ("up", "down") a block's log shift lies on when it is past ``extreme``
        scales and past ``min_shift``; ``None`` when it is not that far out."""
        far = max(self.settings.extreme * self.reference.scale,
                  math.log1p(self.settings.min_shift))
        if abs(shift) <= far:
            return None
        return "up" if shift > 0 else "down"


def first_alarm(reference: Reference, values: Iterable[float],
                settings: DriftSettings = DriftSettings()) -> int | None:
    """Index of the first window that raises an alarm, or ``None``."""
    detector = Cusum(reference, settings)
    for index, value in enumerate(values):
        if detector.update(value) is not None:
            return index
    return None

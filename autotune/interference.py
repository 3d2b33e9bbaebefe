"""How busy the machine was with other work while we measured.

Shared GPU hosts and CI runners are noisy: another job's burst slows a reading, and a tuner that
does not notice ranks setups by who was unlucky. A window records the machine's CPU time, the
part of it spent by this tuner and every process it started (the servers are its children), and
the hypervisor's steal; the rest is outside load.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Interference:
    """Outside load over one measurement window, as shares of the whole machine (0..1)."""

    outside_cpu_share: float
    steal_share: float
    load_average: float  # 1-minute load average at the window's end, per core

    @property
    def disturbed(self) -> bool:
        return self.outside_cpu_share >= DISTURBED_OUTSIDE_SHARE or \
            self.steal_share >= DISTURBED_OUTSIDE_SHARE


# A reading taken while other work used a tenth of the machine is re-measured. An idle machine
# shows 0.00-0.03 here (shells, the kernel); a CPU server runs a thread per core that waits on
# the others, so one single-threaded job beside it (0.10-0.15 of 2 cores over a window) cut
# readings by 30-40% in the real-server tests, and a CPU hog of both cores slowed a launch's
# start-up from 4 s to 28 s.
DISTURBED_OUTSIDE_SHARE = 0.10


_BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq")


def _ours() -> float:
    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += times.user + times.system
    return total


class InterferenceWindow:
    """``start()`` before the measured requests, ``stop()`` after; never raises."""

    def __init__(self) -> None:
        self._start: tuple[float, float, float, float] | None = None

    @staticmethod
    def _read() -> tuple[float, float, float, float]:
        cpu = psutil.cpu_times()
        # guest time is already inside user time on Linux; summing every field counts it twice
        busy = sum(getattr(cpu, name, 0.0) for name in _BUSY_FIELDS)
        return time.monotonic(), busy, getattr(cpu, "steal", 0.0), _ours()

    def start(self) -> None:
        try:
            self._start = self._read()
        except (OSError, psutil.Error):
            self._start = None

    def stop(self) -> Interference | None:
        if self._start is None:
            return None
        try:
            end = self._read()
        except (OSError, psutil.Error):
            return None
        elapsed = end[0] - self._start[0]
        cores = psutil.cpu_count() or 1
        capacity = elapsed * cores
        if capacity <= 0:
            return None
        busy = end[1] - self._start[1]
        steal = end[2] - self._start[2]
        ours = end[3] - self._start[3]
        outside = max(0.0, busy - ours) / capacity
        try:
            load = os.getloadavg()[0] / cores
        except OSError:
            load = 0.0
        return Interference(min(1.0, outside), min(1.0, max(0.0, steal) / capacity), load)

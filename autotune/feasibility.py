"""The one feasibility rule, shared by the strategies' ledger, the finish and the decision,
so a setup is never feasible in one place and dropped in another."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autotune.config import LimitsSpec


def setup_feasible(launch_feasible: Sequence[bool]) -> bool:
    """The one feasibility rule for a setup measured in several launches: it meets the
    limits when at least half of its launches did. One disturbed launch (a TTFT of 3.3 s
    where another launch measured 241 ms) must not drop a setup for good, and the controller
    re-measures a promising setup after its first violation, so a real violation still wins
    the vote."""
    if not launch_feasible:
        return False
    return 2 * sum(bool(flag) for flag in launch_feasible) >= len(launch_feasible)


def limit_excess(levels: Sequence[Mapping[str, Any]], limits: LimitsSpec) -> float:
    """How far a launch is over its limits (stored level summaries), for naming the least-bad
    setup when none meets them: the largest value / limit over every level and limit, 1.0 or
    less when all are met; an error rate over its limit counts as infinitely bad."""
    worst = 0.0
    for level in levels:
        requests = level.get("requests") or 0
        errors = level.get("errors") or 0
        rate = errors / requests if requests else 1.0
        if rate > limits.max_error_rate:
            return float("inf")
        for name in ("ttft_p95_ms", "tpot_p95_ms", "e2e_p95_ms"):
            limit = getattr(limits, name)
            value = level.get(name)
            if limit is not None:
                worst = max(worst, float("inf") if value is None else float(value) / limit)
    return worst

"""From measurements to a recommendation: which setup to deploy, and the command for it.

The decision is a pure function of the finish rounds: the leader by median, every setup the
leader is not statistically ahead of counts as tied with it, the simplest of a tie wins, and a
drafting setup must be statistically ahead of no drafting to be recommended at all. When a
drafting lead is not yet shown, the finish measures more rounds before settling for a tie.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autotune.backends import Backend, LaunchSettings
from autotune.space import BASELINE, SpecConfig
from autotune.stats import Comparison, compare

DEFAULT_DEPLOY_PORT = 8080


@dataclass(frozen=True)
class Decision:
    config: SpecConfig
    verdict: str  # "ahead" | "tie" | "baseline" | "unverified"
    tokens_per_second: float
    baseline_tokens_per_second: float | None = None
    versus_baseline: Comparison | None = None
    tied_with: tuple[SpecConfig, ...] = field(default=())

    @property
    def speedup(self) -> float | None:
        if not self.baseline_tokens_per_second:
            return None
        return self.tokens_per_second / self.baseline_tokens_per_second

    def explain(self) -> str:
        if self.verdict == "ahead":
            assert self.versus_baseline is not None
            return (f"ahead of no drafting: x{self.versus_baseline.ratio:.2f} median, "
                    f"Mann-Whitney p={self.versus_baseline.p_value:.3f}")
        if self.verdict == "tie":
            return ("no setup was reliably faster than no drafting: the differences measured "
                    "are within run-to-run noise, so the simpler setup is recommended")
        if self.verdict == "baseline":
            return "no drafting measured fastest"
        return "best single reading (no interleaved re-measurement was run)"


def decide(
    rounds: Mapping[SpecConfig, Sequence[float]],
    *,
    simplicity: Callable[[SpecConfig], tuple[float, ...]],
    baseline: SpecConfig = BASELINE,
    min_gain: float = 0.02,
    alpha: float = 0.05,
) -> Decision:
    """Pick the setup to deploy from per-round tokens/s of each finalist."""
    medians = {c: float(np.median(v)) for c, v in rounds.items() if len(v)}
    if not medians:
        raise ValueError("no finalist was measured")
    leader = max(medians, key=lambda c: medians[c])
    tied = [
        c for c in medians
        if c == leader or not compare(rounds[leader], rounds[c], min_gain=min_gain, alpha=alpha).a_ahead
    ]
    base_rounds = rounds.get(baseline)
    base_median = medians.get(baseline)
    ordered = sorted(tied, key=simplicity)
    if base_rounds is None:
        chosen = ordered[0]
        return Decision(chosen, "unverified", medians[chosen], tied_with=tuple(ordered[1:]))
    if baseline in tied:
        verdict = "baseline" if leader == baseline else "tie"
        return Decision(baseline, verdict, medians[baseline], base_median,
                        tied_with=tuple(c for c in ordered if c != baseline))
    for candidate in ordered:
        versus = compare(rounds[candidate], base_rounds, min_gain=min_gain, alpha=alpha)
        if versus.a_ahead:
            return Decision(candidate, "ahead", medians[candidate], base_median, versus,
                            tuple(c for c in ordered if c != candidate))
    return Decision(baseline, "tie", medians[baseline], base_median, tied_with=tuple(ordered))


def finish_looks(rounds: int, max_rounds: int, step: int = 2) -> tuple[int, ...]:
    """The round counts after which the finish decides: ``rounds``, then every ``step`` more
    up to ``max_rounds``. Deciding at each look at ``alpha / len(looks)`` (Bonferroni) keeps
    the chance that one comparison shows a false "ahead" at any look at most ``alpha``."""
    return tuple(range(rounds, max(rounds, max_rounds) + 1, step))


def alpha_per_look(alpha: float, looks: Sequence[int]) -> float:
    """The level each look is tested at (Bonferroni over the looks)."""
    return alpha / len(looks)


def worth_more_rounds(
    decision: Decision, rounds: Mapping[SpecConfig, Sequence[float]], *,
    baseline: SpecConfig = BASELINE, min_gain: float = 0.02,
) -> bool:
    """Whether more rounds could change the decision: it kept no drafting although a drafting
    setup leads it by at least ``min_gain`` in median, only because the lead is not yet shown
    to be real. With 4 rounds, an 11% gain at 4% noise went unshown in 4.5-7% of simulated
    finishes."""
    if decision.verdict != "tie" or not rounds.get(baseline):
        return False
    base = float(np.median(rounds[baseline]))
    return any(float(np.median(v)) >= (1.0 + min_gain) * base
               for c, v in rounds.items() if c != baseline and len(v))


def decide_without_finish(
    best: SpecConfig, best_value: float, baseline_value: float | None
) -> Decision:
    return Decision(best, "unverified", best_value, baseline_value)


def deploy_argv(backend: Backend, settings: LaunchSettings, config: SpecConfig) -> list[str]:
    return backend.launch_argv(settings, config)


def shell_command(argv: Sequence[str]) -> str:
    return shlex.join(argv)


def recommendation_json(
    decision: Decision, argv: Sequence[str], *, study: str, server_kind: str
) -> dict[str, Any]:
    return {
        "study": study,
        "server_kind": server_kind,
        "params": decision.config.to_params(),
        "label": decision.config.describe(),
        "verdict": decision.verdict,
        "explanation": decision.explain(),
        "tokens_per_second": round(decision.tokens_per_second, 3),
        "baseline_tokens_per_second": (
            round(decision.baseline_tokens_per_second, 3)
            if decision.baseline_tokens_per_second else None
        ),
        "speedup": round(decision.speedup, 4) if decision.speedup else None,
        "tied_with": [c.describe() for c in decision.tied_with],
        "command": list(argv),
        "command_shell": shell_command(argv),
    }

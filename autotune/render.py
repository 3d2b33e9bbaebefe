"""A decision, rendered: the launch command (an argument list, shell-quoted only for
display) and the recommendation as JSON."""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from typing import Any

from autotune.backends import Backend, LaunchSettings
from autotune.recommend import Decision
from autotune.space import SpecConfig
from autotune.stats import PairedRatio

DEFAULT_DEPLOY_PORT = 8080


def deploy_argv(backend: Backend, settings: LaunchSettings, config: SpecConfig) -> list[str]:
    return backend.launch_argv(settings, config)


def shell_command(argv: Sequence[str]) -> str:
    return shlex.join(argv)


def _ratio_json(ratio: PairedRatio | None) -> dict[str, float | int | None] | None:
    if ratio is None or not math.isfinite(ratio.ratio):
        return None
    return {"ratio": round(ratio.ratio, 4), "low": round(ratio.low, 4),
            "high": round(ratio.high, 4) if math.isfinite(ratio.high) else None,
            "p_greater": round(ratio.p_greater, 5), "rounds": ratio.rounds}


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
        "objective": "end-to-end generated tokens/s over the measurement window",
        "tokens_per_second": round(decision.tokens_per_second, 3),
        "baseline_tokens_per_second": (
            round(decision.baseline_tokens_per_second, 3)
            if decision.baseline_tokens_per_second else None
        ),
        "speedup": round(decision.speedup, 4) if decision.speedup else None,
        "versus_server_default_no_drafting": _ratio_json(decision.versus_baseline),
        "best_no_drafting": (decision.best_no_drafting.describe()
                             if decision.best_no_drafting else None),
        "versus_best_no_drafting": _ratio_json(decision.versus_best_no_drafting),
        "confidence": (round(decision.confidence, 3)
                       if decision.confidence is not None else None),
        "noise": round(decision.noise, 4) if decision.noise is not None else None,
        "tied_with": [c.describe() for c in decision.tied_with],
        "by_concurrency": [
            {"concurrency": level, "label": other.config.describe(),
             "params": other.config.to_params(), "verdict": other.verdict,
             "speedup": round(other.speedup, 4) if other.speedup else None}
            for level, other in decision.by_concurrency],
        "command": list(argv),
        "command_shell": shell_command(argv),
    }

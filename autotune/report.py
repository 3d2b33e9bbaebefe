"""Terminal views of a study: the results table, the per-class breakdown, the command."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autotune.space import BASELINE
from autotune.store.models import TrialState
from autotune.store.repository import TrialRecord


def _fmt(value: Any, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def results_table(trials: Sequence[TrialRecord], *, limit: int = 20) -> str:
    search = [t for t in trials if t.phase == "search" and t.finished]
    baseline = next((t.objective for t in search if t.config == BASELINE and t.objective), None)
    measured = sorted((t for t in search if t.objective is not None),
                      key=lambda t: -(t.objective or 0.0))
    failed = [t for t in search if t.state == TrialState.FAILED]
    header = (f"{'#':>3}  {'setup':<52} {'tok/s':>7} {'vs base':>7} {'accept':>6} "
              f"{'ttft p95':>8} {'tpot p95':>8}  state")
    lines = [header, "-" * len(header)]
    for trial in measured[:limit]:
        primary = trial.summary[0] if trial.summary else {}
        ratio = f"x{trial.objective / baseline:.2f}" if baseline and trial.objective else "-"
        state = "ok" if trial.feasible else "limit: " + "; ".join(trial.violated)
        lines.append(
            f"{trial.number:>3}  {trial.config.describe():<52} {_fmt(trial.objective, '.1f'):>7} "
            f"{ratio:>7} {_fmt(primary.get('acceptance'), '.2f'):>6} "
            f"{_fmt(primary.get('ttft_p95_ms')):>6}ms {_fmt(primary.get('tpot_p95_ms')):>6}ms  "
            f"{state}"
        )
    if len(measured) > limit:
        lines.append(f"     ... {len(measured) - limit} more measured setups")
    for trial in failed:
        lines.append(f"{trial.number:>3}  {trial.config.describe():<52} FAILED: "
                     f"{trial.failure_reason}")
    return "\n".join(lines)


def class_breakdown(trials: Sequence[TrialRecord], labels: dict[str, str]) -> str:
    """Tokens/s per workload class for named setups (e.g. recommended vs baseline)."""
    rows = []
    for title, key in labels.items():
        trial = next((t for t in reversed(trials)
                      if t.config.key == key and t.summary and t.phase == "finish"), None)
        trial = trial or next((t for t in trials if t.config.key == key and t.summary), None)
        if trial is None:
            continue
        by_class = trial.summary[0].get("by_class", {})
        cells = ", ".join(
            f"{label} {values['tokens_per_second']:.1f} t/s"
            + (f" (acc {values['acceptance']:.2f})" if values.get("acceptance") is not None else "")
            for label, values in by_class.items()
        )
        rows.append(f"  {title:<12} {cells}")
    return "per workload class:\n" + "\n".join(rows) if rows else ""


def recommendation_text(recommendation: dict[str, Any]) -> str:
    speedup = recommendation.get("speedup")
    lines = [
        f"recommended: {recommendation['label']}",
        f"  {recommendation['tokens_per_second']:.1f} tok/s"
        + (f", x{speedup:.2f} over no drafting "
           f"({recommendation['baseline_tokens_per_second']:.1f} tok/s)" if speedup else ""),
        f"  {recommendation['explanation']}",
    ]
    if recommendation.get("tied_with"):
        lines.append("  tied within noise: " + "; ".join(recommendation["tied_with"]))
    if recommendation.get("simulation"):
        lines.insert(0, recommendation["simulation"])
    lines += ["", "launch command:", "  " + recommendation["command_shell"]]
    return "\n".join(lines)

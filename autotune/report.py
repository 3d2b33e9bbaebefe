"""Terminal views of a study: the results table, the per-class breakdown, the command."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from autotune.space import is_baseline
from autotune.store.models import TrialState
from autotune.quality import agreement_label, setting_of
from autotune.store.repository import AgreementRecord, TrialRecord


def _fmt(value: Any, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def results_table(trials: Sequence[TrialRecord], *, limit: int = 20,
                  agreements: Mapping[str, AgreementRecord] | None = None) -> str:
    """The measured setups, best first. "same": greedy outputs identical to the reference
    (f16 KV, no drafting) under the setup's KV setting ("ref" for the reference setting)."""
    search = [t for t in trials if t.phase == "search" and t.finished]
    anchor = next((t for t in search if is_baseline(t.config) and t.objective), None)
    baseline = anchor.objective if anchor else None
    measured = sorted((t for t in search if t.objective is not None),
                      key=lambda t: -(t.objective or 0.0))
    failed = [t for t in search if t.state == TrialState.FAILED]
    agreed = agreements or {}
    # Wide enough for every label shown: a drafter's file name must not push its row's figures
    # out from under their headings.
    shown = measured[:limit]
    width = max([52, *(len(t.config.describe()) for t in [*shown, *failed])])
    header = (f"{'#':>3}  {'setup':<{width}} {'tok/s':>7} {'decode':>7} {'vs base':>7} "
              f"{'accept':>6} {'same':>5} {'ttft p95':>8} {'tpot p95':>8}  state")
    lines = [header, "-" * len(header)]
    for trial in shown:
        primary = trial.summary[0] if trial.summary else {}
        ratio = f"x{trial.objective / baseline:.2f}" if baseline and trial.objective else "-"
        state = "ok" if trial.feasible else "limit: " + "; ".join(trial.violated)
        lines.append(
            f"{trial.number:>3}  {trial.config.describe():<{width}} "
            f"{_fmt(trial.objective, '.1f'):>7} "
            f"{_fmt(primary.get('decode_tokens_per_second'), '.1f'):>7} {ratio:>7} "
            f"{_fmt(primary.get('acceptance'), '.2f'):>6} "
            f"{agreement_label(agreed.get(setting_of(trial.config)), trial.config):>5} "
            f"{_fmt(primary.get('ttft_p95_ms')):>6}ms {_fmt(primary.get('tpot_p95_ms')):>6}ms  "
            f"{state}"
        )
    if len(measured) > limit:
        lines.append(f"     ... {len(measured) - limit} more measured setups")
    if anchor is not None and not anchor.feasible:
        # A hung or erroring baseline makes every ratio look like a huge win: say so.
        lines.append("  'vs base' is against a baseline launch that broke a limit ("
                     + "; ".join(anchor.violated) + "); read the ratios with care")
    rounds = sorted(t.objective for t in trials
                    if t.phase == "finish" and is_baseline(t.config) and t.objective
                    and not t.disturbed)
    if baseline and rounds and not rounds[0] <= baseline <= rounds[-1]:
        # One launch per setup: a baseline launch caught in a slow (or fast) spell scales every
        # ratio above. The finish's side-by-side rounds are what the decision reads.
        lines.append(f"  'vs base' is against no drafting's one search launch ({baseline:.1f} "
                     f"t/s); it read {rounds[0]:.1f}-{rounds[-1]:.1f} t/s in the finish's rounds,")
        lines.append("  whose side-by-side ratios (below) are the measured speedup")
    for trial in failed:
        lines.append(f"{trial.number:>3}  {trial.config.describe():<{width}} FAILED: "
                     f"{trial.failure_reason}")
    return "\n".join(lines)


def class_breakdown(trials: Sequence[TrialRecord], labels: dict[str, str],
                    classes: Sequence[str] = ()) -> str:
    """Tokens/s per workload class for named setups (e.g. recommended vs baseline), pooled
    over every launch of each setup (weighted by requests), so a class that one short launch
    did not send still shows; a class no launch sent reads "not sent"."""
    rows = []
    for title, key in labels.items():
        pooled: dict[str, list[tuple[int, float, float | None]]] = {}
        for trial in trials:
            if trial.config.key != key or not trial.summary or trial.disturbed:
                continue
            for label, values in trial.summary[0].get("by_class", {}).items():
                pooled.setdefault(label, []).append(
                    (int(values["requests"]), float(values["tokens_per_second"]),
                     values.get("acceptance")))
        if not pooled:
            continue
        cells = []
        for label in sorted(set(classes) | set(pooled)):
            parts = pooled.get(label)
            if not parts:
                cells.append(f"{label} not sent")
                continue
            count = sum(n for n, _, _ in parts)
            rate = sum(n * v for n, v, _ in parts) / count if count else 0.0
            accepted = [(n, a) for n, _, a in parts if a is not None]
            cell = f"{label} {rate:.1f} t/s ({count} req"
            if accepted:
                cell += f", acc {sum(n * a for n, a in accepted) / sum(n for n, _ in accepted):.2f}"
            cells.append(cell + ")")
        rows.append(f"  {title:<12} " + ", ".join(cells))
    return "per workload class (every launch pooled):\n" + "\n".join(rows) if rows else ""


def _ratio(entry: Any) -> str:
    if not entry:
        return "-"
    high = f"{entry['high']:.2f}" if entry.get("high") is not None else "?"
    return f"x{entry['ratio']:.2f} (x{entry['low']:.2f}..x{high})"


def recommendation_text(recommendation: dict[str, Any]) -> str:
    lines = [
        f"recommended: {recommendation['label']}  [{recommendation['verdict']}]",
        f"  {recommendation['tokens_per_second']:.1f} tok/s end to end (median of the finish "
        "rounds; the objective)",
    ]
    versus_default = recommendation.get("versus_server_default_no_drafting")
    versus_best = recommendation.get("versus_best_no_drafting")
    if versus_default:
        lines.append(f"  vs no drafting, server defaults: {_ratio(versus_default)} per round")
    if versus_best and recommendation.get("best_no_drafting"):
        lines.append(f"  vs the best no-drafting setting ({recommendation['best_no_drafting']}): "
                     f"{_ratio(versus_best)} per round")
    lines.append(f"  {recommendation['explanation']}")
    agreement = recommendation.get("greedy_agreement")
    if agreement:
        lines.append(f"  greedy outputs under {agreement['setting']}: {agreement['identical']}/"
                     f"{agreement['compared']} identical to f16 KV without drafting")
    if recommendation.get("tied_with"):
        lines.append("  shown equivalent (within the margin), not simpler: "
                     + "; ".join(recommendation["tied_with"]))
    if recommendation.get("simulation"):
        lines.insert(0, recommendation["simulation"])
    lines += ["", "launch command:", "  " + recommendation["command_shell"]]
    return "\n".join(lines)

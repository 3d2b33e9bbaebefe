"""From measurements to a decision: which setup to deploy (``autotune.render`` words it).

The decision is a pure function of the finish's interleaved rounds, analysed in pairs (round i
of every setup ran on the same prompts within minutes, so the per-round ratio cancels what the
machine did to that round):

- a drafting setup is recommended only when it is shown faster than the no-drafting setup that
  would be deployed instead (the server's defaults, unless another no-drafting setting was shown
  faster than them), with Holm's procedure over the drafting finalists, each tested at a
  group-sequential level over the finish's looks, so the family-wise false-win rate over
  finalists and looks stays at ``alpha``;
- "tie" is claimed only when the ratio's confidence interval lies inside the practical margin
  (``min_gain``) both ways; not being shown different is not equivalence. Among setups shown
  equivalent the cheapest and safest wins (``SpecConfig.simplicity``); otherwise the better
  median wins, with the probability that it is within ``min_gain`` of the best finalist;
- a lead that is real in median but not shown yet asks for more rounds; when none are left, the
  verdict says how noisy the machine was and how many rounds the lead would need.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from autotune.space import BASELINE, SpecConfig, drafts
from autotune.stats import (
    PairedRatio,
    holm,
    paired_ratio,
    probability_within,
    reading_noise,
    round_matrix,
    rounds_to_show,
    sequential_level,
)

SURE_ENOUGH = 0.9  # P(within margin of the best finalist) at which a pick needs no more rounds
VERDICTS = ("ahead", "baseline", "unproven", "none-feasible", "unverified")


@dataclass(frozen=True)
class Decision:
    config: SpecConfig
    # ahead: a drafting setup shown faster than no drafting; baseline: no drafting setup leads
    # by min_gain; unproven: one leads in median but is not shown ahead; none-feasible: nothing
    # met the limits; unverified: no interleaved comparison with no drafting could be made.
    verdict: str
    tokens_per_second: float
    baseline_tokens_per_second: float | None = None  # no drafting, the server's own defaults
    versus_baseline: PairedRatio | None = None
    best_no_drafting: SpecConfig | None = None  # the fastest no-drafting setting measured
    versus_best_no_drafting: PairedRatio | None = None
    tied_with: tuple[SpecConfig, ...] = field(default=())  # shown equivalent, less simple
    confidence: float | None = None  # P(pick within min_gain of the best finalist)
    noise: float | None = None  # relative spread of one reading on this machine
    rounds: int = 0
    leader: SpecConfig | None = None  # the best drafting median, when it was not recommended
    versus_leader: PairedRatio | None = None  # leader against the no-drafting pick
    # The comparison the verdict rests on: the pick against the no-drafting setup it beat.
    versus_judged: PairedRatio | None = None
    rounds_needed: int | None = None  # about how many rounds would show the leader's lead
    kept_search_pick: bool = False  # a finalist read faster, but was not shown faster
    note: str = ""  # a caller's addition (limits, failures) to the explanation
    needs_more: bool = False  # more rounds could change this decision
    # The decision at each further concurrency level, from the same launches.
    by_concurrency: tuple[tuple[int, Decision], ...] = ()

    @property
    def speedup(self) -> float | None:
        if self.versus_baseline is not None and math.isfinite(self.versus_baseline.ratio):
            return self.versus_baseline.ratio
        if not self.baseline_tokens_per_second:
            return None
        return self.tokens_per_second / self.baseline_tokens_per_second

    def explain(self) -> str:
        sure = (f"; P(within margin of the best finalist) = {self.confidence:.2f}"
                if self.confidence is not None else "")
        noise = f"; readings vary by ±{100 * self.noise:.0f}%" if self.noise is not None else ""
        if self.verdict == "ahead":
            text = self._ahead_text()
        elif self.verdict == "unproven":
            text = self._unproven_text()
        elif self.verdict == "baseline":
            text = ("no drafting setup led no drafting by the practical margin"
                    + (f" ({len(self.tied_with)} shown equivalent)" if self.tied_with else ""))
        elif self.verdict == "none-feasible":
            text = "no measured setup met the limits; this is the least-bad one"
        else:
            text = "the best search reading, not verified against no drafting in interleaved rounds"
        text += f" ({self.rounds} interleaved rounds{noise}{sure})" if self.rounds else ""
        return text + (f"; {self.note}" if self.note else "")

    def _ahead_text(self) -> str:
        versus = self.versus_judged or self.versus_best_no_drafting or self.versus_baseline
        if versus is None:
            return "ahead of no drafting"
        kept = ("; the search's pick, kept: no finalist was shown faster than it"
                if self.kept_search_pick else "")
        return (f"ahead of no drafting: x{versus.ratio:.2f} per round "
                f"(lower bound x{versus.low:.2f}, paired t p={versus.p_greater:.4f}){kept}")

    def _unproven_text(self) -> str:
        if self.leader is None or self.versus_leader is None:
            return "a drafting setup leads but is not shown ahead; kept no drafting"
        lead = self.versus_leader
        text = (f"{self.leader.describe()} leads no drafting by x{lead.ratio:.2f} per round "
                f"(interval x{lead.low:.2f}..x{lead.high:.2f}) but is not shown ahead; kept no "
                "drafting")
        if self.rounds_needed is None or self.rounds_needed > self.rounds:
            need = (f"about {self.rounds_needed} rounds" if self.rounds_needed
                    else "more rounds than is practical")
            text = f"too noisy to decide: {text}; showing the lead would take {need}"
        return text


def decide(
    rounds: Mapping[SpecConfig, Sequence[float]],
    *,
    simplicity: Callable[[SpecConfig], tuple[float, ...]],
    baseline: SpecConfig = BASELINE,
    min_gain: float = 0.02,
    alpha: float = 0.05,
    looks: Sequence[int] = (),
    prefer: SpecConfig | None = None,
) -> Decision:
    """Pick the setup to deploy from each finalist's aligned per-round tokens/s (``nan`` where
    a round has no reading). ``alpha`` is the family-wise level over the finalists and over
    every look the finish takes (``looks``: the round counts it decides after; this call is
    one of them). ``prefer``: the search's pick, kept over finalists not shown faster."""
    configs = [c for c, v in rounds.items() if np.isfinite(np.asarray(v, dtype=float)).any()]
    if not configs:
        raise ValueError("no finalist was measured")
    matrix = round_matrix([rounds[c] for c in configs])
    with np.errstate(all="ignore"):
        medians = {c: float(np.nanmedian(matrix[:, i])) for i, c in enumerate(configs)}
    noise = reading_noise(matrix)
    used = int(np.isfinite(matrix).any(axis=1).sum())
    no_draft = [c for c in configs if not drafts(c.method)]
    drafting = [c for c in configs if drafts(c.method)]

    def level(share: float) -> float:
        return sequential_level(share, tuple(looks))

    # Cached: the same pairs are compared again for the explanation, and the pick's bootstrap
    # both decides whether to measure on and is reported.
    @cache
    def versus(a: SpecConfig, b: SpecConfig) -> PairedRatio:
        return paired_ratio(rounds[a], rounds[b], alpha=level(alpha))

    @cache
    def sure(pick: SpecConfig) -> float:
        return probability_within(matrix, configs.index(pick), min_gain)

    if not no_draft:
        best = max(configs, key=lambda c: medians[c])
        return Decision(best, "unverified", medians[best], rounds=used, noise=noise)
    # Among no-drafting settings, leave the server's defaults only for one shown better.
    reference = max(no_draft, key=lambda c: medians[c])
    plain = baseline if baseline in no_draft else reference
    no_draft_pick = plain
    if reference != plain and versus(reference, plain).ahead(min_gain):
        no_draft_pick = reference

    def decision(pick: SpecConfig, verdict: str, **extra: Any) -> Decision:
        return Decision(
            pick, verdict, medians[pick], baseline_tokens_per_second=medians.get(baseline),
            versus_baseline=versus(pick, baseline) if baseline in no_draft else None,
            best_no_drafting=reference, versus_best_no_drafting=versus(pick, reference),
            noise=noise, rounds=used, confidence=sure(pick),
            versus_judged=versus(pick, no_draft_pick) if drafts(pick.method) else None, **extra,
        )

    # Drafting is judged against the no-drafting setup we would deploy instead: the server's
    # defaults unless another no-drafting setting was shown faster. The fastest-looking one is
    # the best of several noisy medians; judged against it, identical no-drafting setups
    # (flash attention off and auto where it changes nothing) made real gains look unproven.
    comparisons = {c: versus(c, no_draft_pick) for c in drafting}
    rejected = holm({c: r.p_greater for c, r in comparisons.items()}, alpha, level)
    # A list in the finalists' order, not a set: equal medians then resolve the same way in
    # every process (a set's order follows string hashing, which differs per process).
    shown = [c for c in drafting if c in rejected and comparisons[c].ahead(min_gain)]
    if not shown:
        leads = [c for c in drafting if comparisons[c].ratio >= 1.0 + min_gain]
        tied = tuple(sorted((c for c in drafting if comparisons[c].equivalent(min_gain)),
                            key=simplicity))
        if not leads:
            return decision(no_draft_pick, "baseline", tied_with=tied)
        leader = max(leads, key=lambda c: medians[c])
        lead = comparisons[leader]
        return decision(no_draft_pick, "unproven", tied_with=tied, leader=leader,
                        versus_leader=lead, needs_more=True,
                        rounds_needed=rounds_to_show(lead.ratio - 1.0, lead.log_sd,
                                                     level(alpha)))
    leader = max(shown, key=lambda c: medians[c])
    kept = False
    if prefer in shown:
        # The search measured its pick longer than any other finalist (search_incumbent), a
        # finish median rests on a few noisy rounds: another finalist replaces the pick only
        # when shown faster than it.
        faster = [c for c in shown if c != prefer and versus(c, prefer).ahead(min_gain)]
        kept = not faster and leader != prefer
        leader = max(faster, key=lambda c: medians[c]) if faster else prefer
    equivalent = [c for c in shown if c != leader and versus(c, leader).equivalent(min_gain)]
    # Worth more rounds only where another setup could still be better by the margin, one not
    # yet shown ahead of no drafting included: stopping then would leave a possibly better
    # setup out because its own lead over no drafting is still unproven.
    unsettled = [c for c in drafting if c != leader and c not in equivalent
                 and versus(c, leader).high > 1.0 + min_gain]
    ordered = sorted([leader, *equivalent], key=simplicity)
    return decision(ordered[0], "ahead", tied_with=tuple(ordered[1:]),
                    kept_search_pick=kept and ordered[0] == prefer,
                    needs_more=bool(unsettled) and sure(ordered[0]) < SURE_ENOUGH)


def search_incumbent(pick: SpecConfig | None,
                     search_effort: Mapping[SpecConfig, float]) -> SpecConfig | None:
    """The strategy's pick, as the finalist that others must be shown faster than, when the
    search measured it longer than every other drafting finalist (``search_effort``: each
    finalist's requests in the search, in usual launches). A pick a model-based search kept
    re-measuring rests on more than a few finish rounds; one read once, like the rest, does
    not, and the finish's medians decide."""
    if pick is None or not drafts(pick.method) or pick not in search_effort:
        return None
    rivals = [e for c, e in search_effort.items() if c != pick and drafts(c.method)]
    return pick if search_effort[pick] > max(rivals, default=0.0) else None


def finish_looks(rounds: int, max_rounds: int, step: int = 2) -> tuple[int, ...]:
    """The round counts after which the finish decides: ``rounds``, then every ``step`` more
    up to ``max_rounds``. ``decide`` holds its level over all of them (``sequential_level``)."""
    return tuple(range(rounds, max(rounds, max_rounds) + 1, step))


def worth_more_rounds(decision: Decision) -> bool:
    """Whether more rounds could change the decision: a drafting lead not shown yet, or a
    pick whose lead over another drafting finalist is not settled and that is not yet sure
    (``SURE_ENOUGH``) to be within the margin of the best finalist."""
    return decision.needs_more

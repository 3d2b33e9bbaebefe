import shlex

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from autotune.recommend import (
    decide,
    finish_looks,
    search_incumbent,
    worth_more_rounds,
)
from autotune.render import shell_command
from autotune.space import BASELINE, SpecConfig

NGRAM2 = SpecConfig("ngram-mod", 2)
NGRAM8 = SpecConfig("ngram-mod", 8)
NGRAM4 = SpecConfig("ngram-mod", 4)
NGRAM6_Q8 = SpecConfig("ngram-mod", 6, cache_type_k="q8_0", cache_type_v="q8_0", flash_attn="on")
NGRAM6_Q4 = SpecConfig("ngram-mod", 6, cache_type_k="q4_0", flash_attn="auto")
FA_OFF = SpecConfig(flash_attn="off")


def simplicity(config: SpecConfig) -> tuple[float, ...]:
    return config.simplicity()


def test_clear_winner_is_ahead() -> None:
    rounds = {NGRAM8: [80, 82, 79, 81], BASELINE: [50, 51, 49, 50]}
    decision = decide(rounds, simplicity=simplicity)
    assert decision.config == NGRAM8 and decision.verdict == "ahead"
    assert decision.speedup is not None and 1.5 < decision.speedup < 1.7
    assert decision.confidence is not None and decision.confidence > 0.9


def test_shown_equivalent_setups_go_to_the_simpler_one() -> None:
    rounds = {NGRAM8: [80.0, 79.9, 80.2, 80.1], NGRAM2: [80.1, 80.0, 80.0, 80.0],
              BASELINE: [50, 51, 49, 50]}
    decision = decide(rounds, simplicity=simplicity)
    assert decision.config == NGRAM2 and NGRAM8 in decision.tied_with


def test_not_shown_different_is_not_a_tie() -> None:
    # The held-out landscape's finish: q8_0/q8_0 beat q4_0/f16 in all 4 rounds by ~15%, but
    # 4 rounds could not show it. The better median wins; simplicity does not decide.
    rounds = {NGRAM6_Q8: [92, 70, 95, 88], NGRAM6_Q4: [80, 61, 82, 77],
              BASELINE: [50, 40, 52, 49]}
    decision = decide(rounds, simplicity=simplicity)
    assert decision.config == NGRAM6_Q8
    assert NGRAM6_Q4 not in decision.tied_with


def test_the_search_pick_stays_unless_another_finalist_is_shown_faster() -> None:
    # NGRAM4 reads 3% faster in the finish, well inside these rounds' noise: the search's
    # pick (measured longer than NGRAM4 there) stays, and the explanation says why.
    rounds = {NGRAM8: [80, 74, 85, 78, 82, 76], NGRAM4: [86, 72, 88, 77, 85, 80],
              BASELINE: [50, 51, 49, 50, 52, 48]}
    assert decide(rounds, simplicity=simplicity).config == NGRAM4
    kept = decide(rounds, simplicity=simplicity, prefer=NGRAM8)
    assert kept.config == NGRAM8 and kept.verdict == "ahead"
    assert "the search's pick, kept: no finalist was shown faster than it" in kept.explain()
    # 25% faster in every round is shown: the pick gives way.
    rounds[NGRAM4] = [v * 1.25 for v in rounds[NGRAM8]]
    rounds[NGRAM4][0] *= 1.01
    replaced = decide(rounds, simplicity=simplicity, prefer=NGRAM8)
    assert replaced.config == NGRAM4 and "kept" not in replaced.explain()


def test_a_pick_sure_to_be_within_the_margin_needs_no_more_rounds() -> None:
    # NGRAM4 trails NGRAM8 by 1-20% in every round: 4 rounds cannot rule out at the finish's
    # level that it is 2% faster, but no resample of the rounds puts it ahead by the margin.
    rounds = {NGRAM8: [80, 70, 90, 75], NGRAM4: [78, 56, 89, 64], BASELINE: [50, 44, 55, 47]}
    sure = decide(rounds, simplicity=simplicity, looks=(4, 6, 8))
    assert sure.config == NGRAM8 and sure.confidence == 1.0
    assert not worth_more_rounds(sure)
    # A rival ahead in two rounds of four: the pick is not sure, the finish measures on.
    rounds[NGRAM4] = [84, 66, 93, 73]
    unsure = decide(rounds, simplicity=simplicity, looks=(4, 6, 8))
    assert unsure.verdict == "ahead" and unsure.confidence is not None
    assert unsure.confidence < 0.9 and worth_more_rounds(unsure)


def test_a_rival_not_yet_shown_ahead_of_no_drafting_still_earns_more_rounds() -> None:
    # NGRAM4 beats no drafting in three rounds of four but not yet at the finish's level, so
    # NGRAM8 leads; NGRAM4 may still be the faster one, and the finish measures on.
    rounds = {NGRAM8: [80, 82, 79, 81], NGRAM4: [100, 45, 98, 72], BASELINE: [50, 51, 49, 50]}
    decision = decide(rounds, simplicity=simplicity, looks=(4, 6, 8))
    assert decision.config == NGRAM8 and decision.verdict == "ahead"
    assert decision.confidence is not None and decision.confidence < 0.9
    assert worth_more_rounds(decision)


def test_the_pick_is_the_incumbent_only_when_the_search_measured_it_longest() -> None:
    assert search_incumbent(NGRAM8, {NGRAM8: 7.0, NGRAM4: 1.0, BASELINE: 9.0}) == NGRAM8
    assert search_incumbent(NGRAM8, {NGRAM8: 1.0, NGRAM4: 1.0, BASELINE: 1.0}) is None
    assert search_incumbent(BASELINE, {BASELINE: 5.0, NGRAM4: 1.0}) is None
    assert search_incumbent(None, {NGRAM4: 1.0}) is None


def test_lossless_kv_ranks_simpler_than_lossy_and_fewer_bits_lose_more() -> None:
    plain = SpecConfig("ngram-mod", 6)
    ranked = sorted([NGRAM6_Q4, NGRAM6_Q8, plain], key=simplicity)
    assert ranked == [plain, NGRAM6_Q8, NGRAM6_Q4]


def test_noise_level_gain_recommends_no_drafting() -> None:
    rounds = {NGRAM8: [51, 50, 51.5, 50.5], BASELINE: [50, 50.5, 50.2, 50.1]}
    decision = decide(rounds, simplicity=simplicity)
    assert decision.config == BASELINE and decision.verdict == "baseline"


def test_an_unproven_drafting_lead_keeps_no_drafting_and_asks_for_more_rounds() -> None:
    rounds = {NGRAM8: [60, 45, 66, 50], BASELINE: [50, 52, 49, 51]}
    decision = decide(rounds, simplicity=simplicity, looks=(4, 6, 8))
    assert decision.config == BASELINE and decision.verdict == "unproven"
    assert worth_more_rounds(decision)
    assert decision.leader == NGRAM8
    assert "too noisy to decide" in decision.explain()


def test_a_better_no_drafting_setting_is_compared_and_reported() -> None:
    # Flash attention forced off stalls a GPU server; the server's default is the baseline,
    # and drafting is judged against the best no-drafting setting measured.
    rounds = {NGRAM8: [70, 71, 69, 70.5], BASELINE: [60, 61, 59, 60], FA_OFF: [30, 31, 29, 30]}
    decision = decide(rounds, simplicity=simplicity)
    assert decision.verdict == "ahead" and decision.best_no_drafting == BASELINE
    assert decision.versus_baseline is not None
    assert 1.1 < decision.versus_baseline.ratio < 1.25


def test_drafting_is_judged_against_the_no_drafting_setup_it_would_replace() -> None:
    # Two no-drafting settings that are the same server behaviour: the one that read higher by
    # chance is not shown faster than the server's defaults, so drafting is judged against
    # the defaults (what would be deployed instead), and its gain over them is shown.
    rounds = {NGRAM8: [66.0, 67.0, 66.5, 67.5], BASELINE: [60.0, 61.0, 60.5, 61.0],
              FA_OFF: [63.0, 59.5, 64.0, 60.0]}
    decision = decide(rounds, simplicity=simplicity)
    assert decision.best_no_drafting == FA_OFF  # the best-looking one, still reported
    assert decision.verdict == "ahead" and decision.config == NGRAM8
    assert decision.versus_judged is not None and decision.versus_judged.low > 1.0
    assert "ahead of no drafting: x1.10" in decision.explain()
    # and when another no-drafting setting is shown faster, drafting must beat that one
    shown = {NGRAM8: [66.0, 67.0, 66.5, 67.5], BASELINE: [60.0, 61.0, 60.5, 61.0],
             FA_OFF: [66.5, 67.0, 66.8, 67.2]}
    assert decide(shown, simplicity=simplicity).config == FA_OFF


def test_a_missing_round_keeps_the_rest_paired() -> None:
    rounds = {NGRAM8: [80, float("nan"), 79, 81, 80], BASELINE: [50, 51, 49, 50, 50]}
    decision = decide(rounds, simplicity=simplicity)
    assert decision.config == NGRAM8 and decision.versus_baseline is not None
    assert decision.versus_baseline.rounds == 4


def test_finish_looks_every_two_rounds_up_to_the_cap() -> None:
    assert finish_looks(4, 8) == (4, 6, 8)
    assert finish_looks(4, 4) == (4,)


def finish_runs(gains: list[float], *, reps: int, noise: float = 0.04,
                seed: int = 3) -> tuple[float, float]:
    """(share of finishes that deploy a drafting setup, mean rounds) as `autotune tune` runs
    them: 4 rounds, 2 more at a time while unsettled, alpha held over the looks, with a
    shared per-round machine factor (what interleaving is for)."""
    rng = np.random.default_rng(seed)
    looks = finish_looks(4, 8)
    configs = [SpecConfig("ngram-mod", n + 1) for n in range(len(gains))]
    picked = measured = 0
    for _ in range(reps):
        rounds: dict[SpecConfig, list[float]] = {c: [] for c in [*configs, BASELINE]}
        for look in looks:
            while len(rounds[BASELINE]) < look:
                machine = float(np.exp(rng.normal(0, 0.05)))
                for config, gain in zip(configs, gains, strict=True):
                    rounds[config].append(50 * gain * machine * float(np.exp(rng.normal(0, noise))))
                rounds[BASELINE].append(50 * machine * float(np.exp(rng.normal(0, noise))))
            decision = decide(rounds, simplicity=simplicity, looks=looks)
            if not worth_more_rounds(decision):
                break
        picked += decision.config != BASELINE
        measured += len(rounds[BASELINE])
    return picked / reps, measured / reps


def test_three_finalists_equal_to_no_drafting_win_falsely_at_most_alpha() -> None:
    false_wins, _ = finish_runs([1.0, 1.0, 1.0], reps=400)
    assert false_wins <= 0.05


def test_more_rounds_find_a_modest_gain() -> None:
    wins, mean_rounds = finish_runs([1.11], reps=200)
    assert wins >= 0.95 and mean_rounds <= 8


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(20, 200), min_size=4, max_size=8), st.floats(1.0, 1.5))
def test_scaling_every_reading_never_changes_the_decision(base: list[float],
                                                          gain: float) -> None:
    rounds = {NGRAM4: [v * gain for v in base], BASELINE: base}
    scaled = {c: [4.0 * v for v in r] for c, r in rounds.items()}  # exact in binary floats
    first = decide(rounds, simplicity=simplicity)
    second = decide(scaled, simplicity=simplicity)
    assert (first.config, first.verdict) == (second.config, second.verdict)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(20, 200), min_size=4, max_size=8))
def test_a_setup_never_beats_itself(base: list[float]) -> None:
    decision = decide({NGRAM4: list(base), BASELINE: list(base)}, simplicity=simplicity)
    assert decision.config == BASELINE


@given(st.lists(st.text(min_size=0, max_size=12), min_size=1, max_size=6))
def test_shell_command_round_trips(argv: list[str]) -> None:
    assert shlex.split(shell_command(argv)) == argv

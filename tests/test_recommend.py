import shlex

from hypothesis import given
from hypothesis import strategies as st

from autotune.recommend import decide, shell_command
from autotune.space import BASELINE, SpecConfig

NGRAM2 = SpecConfig("ngram-mod", 2)
NGRAM8 = SpecConfig("ngram-mod", 8)


def simplicity(config: SpecConfig) -> tuple[float, ...]:
    return config.simplicity()


def test_clear_winner_is_ahead() -> None:
    rounds = {NGRAM8: [80, 82, 79, 81], BASELINE: [50, 51, 49, 50]}
    decision = decide(rounds, simplicity=simplicity)
    assert decision.config == NGRAM8 and decision.verdict == "ahead"
    assert decision.speedup is not None and 1.5 < decision.speedup < 1.7


def test_tie_goes_to_the_simpler_setup() -> None:
    rounds = {NGRAM8: [80, 79, 82, 78], NGRAM2: [79, 81, 78, 80], BASELINE: [50, 51, 49, 50]}
    decision = decide(rounds, simplicity=simplicity)
    assert decision.config == NGRAM2 and NGRAM8 in decision.tied_with


def test_noise_level_gain_recommends_no_drafting() -> None:
    rounds = {NGRAM8: [52, 47, 55, 49], BASELINE: [50, 53, 48, 51]}
    decision = decide(rounds, simplicity=simplicity)
    assert decision.config == BASELINE and decision.verdict == "tie"


@given(st.lists(st.text(min_size=1), min_size=1, max_size=6))
def test_shell_command_round_trips(argv: list[str]) -> None:
    assert shlex.split(shell_command(argv)) == argv

"""Every strategy's contract: ask/tell, replayed observations, conditional parameters."""

import pytest

from autotune.space import BASELINE, FloatRange, IntRange, SearchSpace, SpecConfig, uses_drafter
from strategies import Ask, Observation, create_strategy, strategy_names

SPACE = SearchSpace(
    methods=("none", "draft-simple", "ngram-mod"),
    draft_max=IntRange(1, 4),
    p_min=FloatRange(0.0, 0.8, 0.4),
    drafters=("q8.gguf", "q4.gguf"),
    cache_type_k=("f16", "q8_0"),
    cache_type_v=("f16",),
)


def toy_speed(config: SpecConfig) -> float:
    if config.method == "ngram-mod":
        return 60.0 + 2 * (config.draft_max or 0)
    if uses_drafter(config.method):
        return 30.0 + (5 if config.drafter == "q4.gguf" else 0)
    return 45.0


def available(name: str) -> bool:
    try:
        create_strategy(name, SPACE, seed=0, budget=1)
    except KeyError:
        return False
    return True


STRATEGIES = [
    pytest.param(name, marks=pytest.mark.skipif(
        not available(name), reason=f"{name}: optional dependency not installed"))
    for name in strategy_names()
]


def run(name: str, steps: int, *, seed: int = 0) -> list[Ask]:
    strategy = create_strategy(name, SPACE, seed=seed, budget=steps)
    strategy.tell(Observation(BASELINE, toy_speed(BASELINE), True))
    asked = []
    for _ in range(steps):
        ask = strategy.ask()
        if ask is None:
            break
        assert SPACE.contains(ask.config), ask.config
        assert ask.effort > 0
        asked.append(ask)
        strategy.tell(Observation(ask.config, toy_speed(ask.config), True, effort=ask.effort))
    return asked


@pytest.mark.parametrize("name", STRATEGIES)
def test_asks_valid_setups(name: str) -> None:
    assert run(name, 8)


@pytest.mark.parametrize("name", STRATEGIES)
def test_accepts_observations_it_never_asked_for(name: str) -> None:
    strategy = create_strategy(name, SPACE, seed=1, budget=10)
    for config in SPACE.grid()[:5]:
        strategy.tell(Observation(config, toy_speed(config), True))
    strategy.tell(Observation(SPACE.grid()[6], None, False))  # a failed launch
    ask = strategy.ask()
    assert ask is None or SPACE.contains(ask.config)


@pytest.mark.parametrize("name", STRATEGIES)
def test_a_baseline_outside_the_searched_axes_is_accepted(name: str) -> None:
    # The baseline runs at the server's defaults (flash attention auto); a space that forces
    # flash attention on or off does not contain it, and every strategy must still take it.
    forced = SearchSpace(methods=("none", "ngram-mod"), draft_max=IntRange(1, 4),
                         flash_attn=("off", "on"))
    assert not forced.contains(BASELINE)
    strategy = create_strategy(name, forced, seed=0, budget=6)
    strategy.tell(Observation(BASELINE, 45.0, True))
    for _ in range(4):
        ask = strategy.ask()
        if ask is None:
            break
        assert forced.contains(ask.config)
        strategy.tell(Observation(ask.config, toy_speed(ask.config), True))


# The bandit is left out on purpose: re-measuring a promising arm is its job.
@pytest.mark.parametrize("name", [p for p in STRATEGIES if p.values[0] != "bandit"])
def test_resume_does_not_repeat_replayed_setups(name: str) -> None:
    first = run(name, 5, seed=3)
    resumed = create_strategy(name, SPACE, seed=3, budget=10)
    resumed.tell(Observation(BASELINE, toy_speed(BASELINE), True))
    for replay in first:  # the store keeps each trial's effort, so replays carry it
        resumed.tell(Observation(replay.config, toy_speed(replay.config), True, replay.effort))
    ask = resumed.ask()
    assert ask is not None and ask.config not in [a.config for a in first]


def test_grid_covers_the_space_then_stops() -> None:
    asked = run("grid", len(SPACE.grid()) + 5)
    assert {a.config for a in asked} | {BASELINE} == set(SPACE.grid())


@pytest.mark.parametrize("name", STRATEGIES)
def test_recommends_a_measured_setup(name: str) -> None:
    strategy = create_strategy(name, SPACE, seed=2, budget=30)
    assert strategy.recommend() is None  # nothing measured yet
    strategy.tell(Observation(BASELINE, toy_speed(BASELINE), True))
    measured = {BASELINE}
    for _ in range(30):
        ask = strategy.ask()
        if ask is None:
            break
        strategy.tell(Observation(ask.config, toy_speed(ask.config), True, effort=ask.effort))
        measured.add(ask.config)
    assert strategy.recommend() in measured


def test_spec_model_finds_the_best_toy_setup_without_the_grid() -> None:
    asked = run("spec-model", 24)
    best = max(SPACE.grid(), key=toy_speed)
    assert best in {a.config for a in asked}
    assert len({a.config for a in asked}) < len(SPACE.grid()) / 2


def test_unknown_strategy_names_the_available_ones() -> None:
    with pytest.raises(KeyError, match="available: "):
        create_strategy("annealing", SPACE, seed=0, budget=1)


def test_optuna_parameters_round_trip_both_encodings() -> None:
    from strategies.optuna_sampler import config_of, trial_params

    for config in SPACE.grid():
        for flat in (False, True):
            assert config_of(SPACE, trial_params(SPACE, config, flat=flat), flat=flat) == config


@pytest.mark.skipif(not available("gp"), reason="gp: optional dependency not installed")
def test_gp_sees_a_static_space() -> None:
    # GPSampler samples any parameter outside a static space at random, so every GP trial
    # must carry every parameter, the ones that do not apply to its method included.
    strategy = create_strategy("gp", SPACE, seed=0, budget=10)
    strategy.tell(Observation(BASELINE, toy_speed(BASELINE), True))
    for _ in range(10):
        ask = strategy.ask()
        assert ask is not None
        strategy.tell(Observation(ask.config, toy_speed(ask.config), True))
    names = {"family", "draft_max", "p_min", "kv"}
    assert all(set(t.params) == names for t in strategy._study.trials)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", STRATEGIES)
def test_setups_that_broke_a_limit_are_never_recommended(name: str) -> None:
    # ngram-mod is the fastest toy setup, but here every one of them breaks a latency limit.
    strategy = create_strategy(name, SPACE, seed=4, budget=20)
    strategy.tell(Observation(BASELINE, toy_speed(BASELINE), True))
    for _ in range(20):
        ask = strategy.ask()
        if ask is None:
            break
        feasible = ask.config.method != "ngram-mod"
        strategy.tell(Observation(ask.config, toy_speed(ask.config), feasible, effort=ask.effort))
    pick = strategy.recommend()
    assert pick is not None and pick.method != "ngram-mod"


# The drafter's own knobs: n-min, its KV cache type (forcing flash attention on when
# quantized, llama.cpp's rule) and a load-time weight quantization (vLLM, SGLang).
KNOBS_SPACE = SearchSpace(
    methods=("none", "draft-simple"), draft_max=IntRange(1, 4, 3), p_min=FloatRange(0.0, 0.6, 0.6),
    drafters=("q8.gguf",), draft_min=IntRange(0, 4, 2), draft_cache_types=(None, "q8_0"),
    draft_quantizations=(None, "fp8"), flash_attn=("auto", "off"),
)


def knob_speed(config: SpecConfig) -> float:
    return toy_speed(config) + (config.draft_min or 0) + 3 * (config.draft_cache_type == "q8_0")


@pytest.mark.parametrize("name", STRATEGIES)
def test_drafter_knobs_are_searched_within_the_space(name: str) -> None:
    strategy = create_strategy(name, KNOBS_SPACE, seed=0, budget=20)
    strategy.tell(Observation(BASELINE, knob_speed(BASELINE), True))
    seen = set()
    for _ in range(20):
        ask = strategy.ask()
        if ask is None:
            break
        assert KNOBS_SPACE.contains(ask.config), ask.config
        seen.add((ask.config.draft_min, ask.config.draft_cache_type))
        strategy.tell(Observation(ask.config, knob_speed(ask.config), True, effort=ask.effort))
    assert len(seen) > 1


def test_optuna_parameters_round_trip_with_drafter_knobs() -> None:
    from strategies.optuna_sampler import config_of, trial_params

    for config in KNOBS_SPACE.grid():
        for flat in (False, True):
            params = trial_params(KNOBS_SPACE, config, flat=flat)
            assert config_of(KNOBS_SPACE, params, flat=flat) == config


def test_spec_model_probes_shorter_when_the_longest_draft_fails_to_start() -> None:
    # A drafter whose context does not fit above draft-max 5: its longest probe fails, so it
    # is probed half-way down, and nothing from the failed length up is asked for again.
    space = SearchSpace(methods=("none", "draft-simple"), draft_max=IntRange(1, 8),
                        p_min=FloatRange(0.0, 0.4, 0.4), drafters=("q8.gguf",))
    strategy = create_strategy("spec-model", space, seed=0, budget=20)
    strategy.tell(Observation(BASELINE, 40.0, True))
    asked = []
    for _ in range(20):
        ask = strategy.ask()
        if ask is None:
            break
        asked.append(ask.config)
        n = ask.config.draft_max or 0
        if n > 5:
            strategy.tell(Observation(ask.config, None, False, effort=ask.effort))
            continue
        r = tuple(0.8 ** (i + 1) for i in range(n))
        strategy.tell(Observation(ask.config, 40.0 + 4 * min(n, 3), True, effort=ask.effort,
                                  acceptance=0.7, per_position_acceptance=r))
    drafted = [c.draft_max for c in asked if c.method == "draft-simple"]
    assert drafted[0] == 8 and drafted[1] == 5  # the failed probe, then half-way down
    assert drafted.count(8) == 1 and all(n < 8 for n in drafted[1:])
    assert any(n not in (2, 5, 8) for n in drafted)  # the model ran: it asked for others


def test_spec_model_ties_only_draft_max_neighbours() -> None:
    from strategies.spec_model import NEIGHBOUR_WEIGHT, draft_max_neighbours, factor_levels

    configs = [SpecConfig("draft-simple", n, 0.5, "d.gguf") for n in (1, 2, 4)]
    configs += [SpecConfig("draft-simple", 2, 0.6, "d.gguf"),
                SpecConfig("draft-simple", 2, 0.5, "e.gguf"),
                SpecConfig("ngram-mod", 8), SpecConfig("ngram-mod", 16), SpecConfig("none")]
    pairs = {(a, b): w for a, b, w in draft_max_neighbours(configs)}
    level = [factor_levels(c)[0] for c in configs]
    # 1-2 and 2-4 at p-min 0.5 with drafter d (the gap of 2 halves the weight), 8-16 of
    # ngram-mod; other p-min, drafter, method or no drafting: no tie.
    assert pairs == {(level[0], level[1]): NEIGHBOUR_WEIGHT,
                     (level[1], level[2]): NEIGHBOUR_WEIGHT / 2,
                     (level[5], level[6]): NEIGHBOUR_WEIGHT / 8}


NO_P_MIN_SPACE = SearchSpace(  # vLLM's and SGLang's kind: drafting never stops on confidence
    methods=("none", "draft-eagle3", "ngram-simple"),
    draft_max=IntRange(1, 4),
    p_min=FloatRange(0.0, 0.0),
    drafters=("org/eagle3-head",),
    cache_type_k=("auto", "fp8"),
    cache_type_v=("auto",),
    quantized_v_needs_flash_attn=False,
    p_min_knob=False,
    baseline=SpecConfig(cache_type_k="auto", cache_type_v="auto"),
)


@pytest.mark.parametrize("name", STRATEGIES)
def test_a_server_without_p_min_gets_setups_without_one(name: str) -> None:
    """They were all 'p=0' setups, a knob vLLM and SGLang do not have, in every label."""
    strategy = create_strategy(name, NO_P_MIN_SPACE, seed=0, budget=12)
    strategy.tell(Observation(NO_P_MIN_SPACE.baseline, 40.0, True))
    for _ in range(12):
        ask = strategy.ask()
        if ask is None:
            break
        assert NO_P_MIN_SPACE.contains(ask.config), ask.config
        assert ask.config.p_min is None and " p=" not in ask.config.describe()
        speed = 50.0 + (ask.config.draft_max or 0)
        per_position = (0.8, 0.6, 0.4, 0.2)[: ask.config.draft_max or 0]
        strategy.tell(Observation(ask.config, speed, True, effort=ask.effort,
                                  acceptance=0.5 if per_position else None,
                                  per_position_acceptance=per_position))
    assert strategy.recommend() is not None


def test_optuna_parameters_round_trip_without_p_min() -> None:
    from strategies.optuna_sampler import config_of, trial_params

    for config in NO_P_MIN_SPACE.grid():
        for flat in (False, True):
            params = trial_params(NO_P_MIN_SPACE, config, flat=flat)
            assert config_of(NO_P_MIN_SPACE, params, flat=flat) == config

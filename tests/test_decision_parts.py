"""Pure parts of the decision: paired statistics, interference flags, feasibility, the
workload's stratified schedule, and flags that reach the server."""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from autotune.backends import LaunchSettings, get_backend
from autotune.config import load_spec
from autotune.embedded import default_spec_path
from autotune.feasibility import limit_excess, setup_feasible
from autotune.interference import InterferenceWindow
from autotune.prober import level_counts
from autotune.space import BASELINE, SpecConfig
from autotune.stats import (
    disturbed_readings,
    holm,
    paired_ratio,
    round_matrix,
    sequential_level,
)
from autotune.workload import Prompt, Workload, load_workload

MIXED = Path(__file__).resolve().parents[1] / "examples" / "workloads" / "mixed.jsonl"
SETTINGS = LaunchSettings(binary="llama-server", model="m.gguf", host="127.0.0.1", port=8080,
                          ctx_size=2048, parallel=1)
positive = st.floats(1.0, 500.0)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(positive, positive), min_size=2, max_size=10), st.floats(0.1, 10.0))
def test_paired_ratio_is_scale_free_and_antisymmetric(pairs: list[tuple[float, float]],
                                                      scale: float) -> None:
    a = [x for x, _ in pairs]
    b = [y for _, y in pairs]
    forward = paired_ratio(a, b)
    scaled = paired_ratio([scale * x for x in a], [scale * y for y in b])
    backward = paired_ratio(b, a)
    assert math.isclose(forward.ratio, scaled.ratio, rel_tol=1e-6)
    assert math.isclose(forward.ratio * backward.ratio, 1.0, rel_tol=1e-6)
    assert forward.low <= forward.ratio <= forward.high


def test_paired_ratio_skips_rounds_without_both_readings() -> None:
    ratio = paired_ratio([80, math.nan, 79, 0.0], [50, 51, 49, 50])
    assert ratio.rounds == 2


@given(st.dictionaries(st.integers(0, 20), st.floats(0.0, 1.0), min_size=1, max_size=8),
       st.floats(0.001, 0.2))
def test_holm_rejects_a_prefix_of_the_sorted_p_values(p_values: dict[int, float],
                                                      alpha: float) -> None:
    rejected = holm(p_values, alpha)
    if rejected:
        assert max(p_values[k] for k in rejected) <= min(
            (p for k, p in p_values.items() if k not in rejected), default=1.0)
        assert min(p_values.values()) <= alpha / len(p_values)


@settings(max_examples=30, deadline=None)
@given(st.floats(0.001, 0.2), st.lists(st.integers(2, 40), min_size=1, max_size=6, unique=True))
def test_a_look_is_tested_between_bonferroni_and_the_whole_alpha(alpha: float,
                                                                  looks: list[int]) -> None:
    level = sequential_level(alpha, tuple(sorted(looks)))
    assert alpha / len(looks) <= level <= alpha
    if len(looks) == 1:
        assert level == alpha
    # Beyond what its simulation can place, the level is Bonferroni's: never too lenient.
    assert sequential_level(1e-6, (2, 4)) == 0.5e-6


def test_the_looks_hold_the_false_rejection_rate_at_alpha() -> None:
    """Paired t-tests under no effect on one stream of rounds, looked at after 4, 6, 8, 10
    and 12 rounds, each look at the sequential level (draws independent of its own)."""
    looks = (4, 6, 8, 10, 12)
    level = sequential_level(0.05, looks)
    rounds = np.random.default_rng(5).normal(size=(100_000, looks[-1]))
    crossed = np.zeros(len(rounds), dtype=bool)
    for n in looks:
        head = rounds[:, :n]
        t = head.mean(axis=1) / (head.std(axis=1, ddof=1) / math.sqrt(n))
        crossed |= scipy_stats.t.sf(t, n - 1) <= level
    assert 0.045 <= crossed.mean() <= 0.055
    assert level > 0.05 / len(looks) * 1.5  # far from Bonferroni: the looks overlap


def test_holm_tests_each_share_at_the_level_it_is_given() -> None:
    p_values = {"a": 0.012, "b": 0.03}
    assert holm(p_values, 0.05) == {"a", "b"}  # 0.012 <= 0.025, 0.03 <= 0.05
    assert holm(p_values, 0.05, level=lambda share: share / 3) == set()
    assert holm(p_values, 0.05, level=lambda share: share / 2) == {"a"}


def test_a_reading_far_below_its_median_or_under_outside_load_is_disturbed() -> None:
    readings = [[50, 51, 49, 50, 25.0], [80, 81, 79, 80, 80]]
    flagged = disturbed_readings(round_matrix(readings))
    assert flagged[4, 0] and not flagged[:4].any() and not flagged[4, 1]
    quiet = disturbed_readings(round_matrix([[50, 51, 49, 50, 48.5]]))
    assert not quiet.any()  # a 3% dip is noise, not interference
    outside = np.array([[0.0], [0.0], [0.4]])
    assert disturbed_readings(round_matrix([[50, 51, 50]]), outside)[2, 0]


def test_one_feasibility_rule() -> None:
    assert setup_feasible([True])
    assert setup_feasible([False, True])  # one disturbed launch does not drop a setup
    assert not setup_feasible([False, False, True])
    assert not setup_feasible([])


def test_the_strategys_pick_is_a_finalist_whatever_its_rank_by_single_readings() -> None:
    from autotune.store.repository import TrialRecord
    from autotune.study import choose_finalists

    def trial(number: int, config: SpecConfig, tokens_per_second: float) -> TrialRecord:
        return TrialRecord(number, number, "search", "complete", config, tokens_per_second,
                           True, [], [], [], None, None, 1.0, 10.0)

    fast, second, pick = (SpecConfig("ngram-mod", n) for n in (8, 12, 16))
    trials = [trial(0, BASELINE, 50.0), trial(1, fast, 80.0), trial(2, second, 78.0),
              trial(3, pick, 76.0)]
    assert choose_finalists(trials, pick, 2) == [pick, fast, BASELINE]
    assert choose_finalists(trials, None, 2) == [fast, second, BASELINE]


def test_least_bad_ranks_by_how_far_over_the_limit() -> None:
    from autotune.config import LimitsSpec

    limits = LimitsSpec(ttft_p95_ms=100)
    near = [{"requests": 4, "errors": 0, "ttft_p95_ms": 120}]
    far = [{"requests": 4, "errors": 0, "ttft_p95_ms": 900}]
    broken = [{"requests": 4, "errors": 1, "ttft_p95_ms": 50}]
    assert limit_excess(near, limits) < limit_excess(far, limits) < limit_excess(broken, limits)


def test_outside_load_window_reports_shares() -> None:
    window = InterferenceWindow()
    window.start()
    time.sleep(0.2)
    seen = window.stop()
    assert seen is not None and 0.0 <= seen.outside_cpu_share <= 1.0


def _workload(labels_weights: list[tuple[str, float]]) -> Workload:
    prompts = tuple(Prompt(index=i, label=label, max_tokens=8, temperature=0.0, weight=weight,
                           prompt=f"p{i}") for i, (label, weight) in enumerate(labels_weights))
    return Workload(prompts=prompts, sources=("test",))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.sampled_from([1.0, 2.0, 3.0])),
                min_size=1, max_size=12), st.integers(1, 12), st.integers(0, 6))
def test_a_launch_never_repeats_a_prompt_while_others_are_unsent(
        entries: list[tuple[str, float]], count: int, rotation: int) -> None:
    workload = _workload(entries)
    chosen = workload.schedule(count, rotation)
    assert len(chosen) == count
    distinct = len({p.index for p in chosen})
    assert distinct == min(count, len(entries))


def test_rounds_cover_every_class_in_proportion() -> None:
    workload = load_workload([str(MIXED)])
    sent = Counter(p.label for r in range(16) for p in workload.schedule(3, r))
    weights = workload.class_weights
    total = sum(weights.values())
    assert set(sent) == set(weights)  # tool-call and summarize too, not only code and chat
    for label, weight in weights.items():
        assert abs(sent[label] / 48 - weight / total) < 0.08


def test_level_counts_keep_each_prompt_to_one_request_per_launch() -> None:
    assert level_counts(6, [1], 12) == [6]
    assert sum(level_counts(6, [1, 4], 12)) <= 12
    assert level_counts(6, [1, 4], 12)[1] >= 4


def test_each_method_gets_its_own_length_flag() -> None:
    backend = get_backend("llama.cpp")

    def argv(config: SpecConfig) -> list[str]:
        return backend.launch_argv(SETTINGS, config)

    mod = argv(SpecConfig("ngram-mod", 8))
    assert mod[mod.index("--spec-ngram-mod-n-max") + 1] == "8"
    assert mod[mod.index("--spec-ngram-mod-n-min") + 1] == "6"
    assert "--spec-draft-n-max" not in mod
    simple = argv(SpecConfig("ngram-simple", 4))
    assert simple[simple.index("--spec-ngram-simple-size-m") + 1] == "4"
    drafter = argv(SpecConfig("draft-simple", 3, 0.0, "d.gguf"))
    assert drafter[drafter.index("--spec-draft-n-max") + 1] == "3"
    assert drafter[drafter.index("--spec-draft-p-min") + 1] == "0"  # always explicit


def test_the_baseline_is_the_server_as_it_starts_without_our_flags() -> None:
    argv = get_backend("llama.cpp").launch_argv(SETTINGS, BASELINE)
    for flag in ("--flash-attn", "--cache-type-k", "--cache-type-v", "--spec-type"):
        assert flag not in argv


def test_no_two_setups_of_the_embedded_space_launch_the_same_server() -> None:
    spec = load_spec(default_spec_path())
    grid = spec.space.to_space().grid()
    backend = get_backend("llama.cpp")
    rendered = {tuple(backend.launch_argv(SETTINGS, c)) for c in grid}
    assert len(rendered) == len(grid)


def test_bounds_saturate_instead_of_overflowing() -> None:
    ratio = paired_ratio([80, 90], [50, 51], alpha=1e-9)
    assert ratio.high == math.inf and ratio.low >= 0.0

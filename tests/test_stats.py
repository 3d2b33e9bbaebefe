import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from autotune.stats import compare, median_mad, percentile

samples = st.lists(st.floats(min_value=1.0, max_value=200.0), min_size=3, max_size=12)


@given(samples, st.floats(min_value=0, max_value=100))
def test_percentile_within_range(values: list[float], q: float) -> None:
    result = percentile(values, q)
    assert result is not None
    assert min(values) - 1e-9 <= result <= max(values) + 1e-9


@given(samples)
def test_a_setup_is_never_ahead_of_itself(values: list[float]) -> None:
    assert not compare(values, values).a_ahead


@settings(max_examples=50)
@given(samples, samples)
def test_ahead_is_antisymmetric(a: list[float], b: list[float]) -> None:
    assert not (compare(a, b).a_ahead and compare(b, a).a_ahead)


@given(samples, st.floats(min_value=1.3, max_value=3.0))
def test_a_clear_gain_is_detected(values: list[float], factor: float) -> None:
    base = np.full(6, 50.0) + np.linspace(-1, 1, 6)
    assert compare(list(base * factor), list(base)).a_ahead


def test_gain_below_the_minimum_is_a_tie() -> None:
    base = [50.0, 50.2, 49.9, 50.1, 50.0, 49.8]
    assert not compare([v * 1.01 for v in base], base, min_gain=0.02).a_ahead


def test_median_mad() -> None:
    assert median_mad([1, 2, 3, 4, 100]) == (3.0, 1.0)


def test_rounds_needed_matches_mann_whitneys_smallest_p() -> None:
    from autotune.stats import rounds_needed

    assert rounds_needed(0.05) == 4  # 3 vs 3: smallest p is 1/20 = 0.05, not below it
    assert rounds_needed(0.01) == 5
    high, low = [10.0, 11.0, 12.0, 13.0], [1.0, 2.0, 3.0, 4.0]
    assert compare(high, low).a_ahead and not compare(high[:3], low[:3]).a_ahead

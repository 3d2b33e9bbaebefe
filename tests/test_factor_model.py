"""Property tests for the log-additive model spec-model pools KV effects with."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies.factor_model import fit_factors

effects = st.lists(st.floats(-0.3, 0.3), min_size=2, max_size=4)


@settings(max_examples=50, deadline=None)
@given(drafting=effects, kv=effects, base=st.floats(10.0, 1000.0))
def test_noiseless_additive_data_is_recovered_exactly(drafting: list[float], kv: list[float],
                                                      base: float) -> None:
    truth = {(d, k): base * np.exp(drafting[d] + kv[k])
             for d, k in itertools.product(range(len(drafting)), range(len(kv)))}
    # Only a connected cross: every drafting level at the first KV, every KV at the first drafting.
    rows = [((d, k), value, 1.0) for (d, k), value in truth.items() if d == 0 or k == 0]
    fit = fit_factors(rows)
    assert fit is not None
    for (d, k), value in truth.items():  # including combinations never measured
        predicted, _ = fit.predict((d, k))
        assert np.isclose(predicted, value, rtol=1e-6)


def test_pooling_estimates_a_kv_effect_better_than_one_pair() -> None:
    rng = np.random.default_rng(0)
    pooled_errors, single_errors = [], []
    for _ in range(200):
        rows = [((d, k), 100.0 * (1.02 if k else 1.0) * np.exp(rng.normal(0, 0.05)), 1.0)
                for d in range(8) for k in range(2)]
        pooled, single = fit_factors(rows), fit_factors(rows[:2])
        assert pooled is not None and single is not None
        truth = np.log(1.02)
        pooled_errors.append(abs(np.log(pooled.predict((0, 1))[0] / pooled.predict((0, 0))[0]) - truth))
        single_errors.append(abs(np.log(single.predict((0, 1))[0] / single.predict((0, 0))[0]) - truth))
    # Eight drafting settings at both KV types: about sqrt(8) times less error than one pair.
    assert np.mean(pooled_errors) < 0.5 * np.mean(single_errors)


def test_heavier_readings_count_more() -> None:
    fit = fit_factors([(("a",), 100.0, 3.0), (("a",), 200.0, 1.0)])
    assert fit is not None
    value, _ = fit.predict(("a",))
    assert np.isclose(np.log(value), (3 * np.log(100) + np.log(200)) / 4)


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.floats(10.0, 1000.0), min_size=3, max_size=6),
       weight=st.floats(0.1, 10.0))
def test_a_tie_to_an_unmeasured_level_changes_nothing(values: list[float], weight: float) -> None:
    rows = [((i % 2,), value, 1.0) for i, value in enumerate(values)]
    plain, tied = fit_factors(rows), fit_factors(rows, [(0, "never measured", weight)])
    assert plain is not None and tied is not None
    assert np.allclose(plain.coefficients, tied.coefficients)
    assert np.allclose(plain.covariance, tied.covariance)


@settings(max_examples=50, deadline=None)
@given(lucky=st.floats(0.7, 1.3), weight=st.floats(0.1, 10.0))
def test_a_tie_pulls_a_single_reading_towards_its_neighbour(lucky: float, weight: float) -> None:
    # "a" read four times at 100, "b" once at 100 * lucky: the tie moves b's estimate towards
    # a's, never past it, and makes it surer at a given noise; a heavier tie moves it further.
    rows = [(("a",), 100.0, 1.0)] * 4 + [(("b",), 100.0 * lucky, 1.0)]
    plain, tied = fit_factors(rows), fit_factors(rows, [("a", "b", weight)])
    heavier = fit_factors(rows, [("a", "b", weight * 4)])
    assert plain is not None and tied is not None and heavier is not None
    gap = [abs(np.log(fit.predict(("b",))[0] / fit.predict(("a",))[0]))
           for fit in (plain, tied, heavier)]
    assert gap[0] + 1e-9 >= gap[1] >= gap[2] - 1e-9
    b = plain.levels[0].index("b")
    assert tied.covariance[b, b] / tied.sigma**2 < plain.covariance[b, b] / plain.sigma**2

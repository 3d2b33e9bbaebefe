"""Windowed live rates from /metrics scrapes, with counter resets."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from autotune.backends import SpecCounters, get_backend
from autotune.live import Scrape, window

PAGE = """# TYPE llamacpp:tokens_predicted_total counter
llamacpp:tokens_predicted_total {generated}
# TYPE llamacpp:spec_decode_num_drafts_total counter
llamacpp:spec_decode_num_drafts_total {drafts}
# TYPE llamacpp:spec_decode_num_draft_tokens_total counter
llamacpp:spec_decode_num_draft_tokens_total {drafted}
# TYPE llamacpp:spec_decode_num_accepted_tokens_total counter
llamacpp:spec_decode_num_accepted_tokens_total {accepted}
# TYPE llamacpp:spec_decode_num_accepted_tokens_per_pos_total counter
llamacpp:spec_decode_num_accepted_tokens_per_pos_total{{position="0"}} {first}
llamacpp:spec_decode_num_accepted_tokens_per_pos_total{{position="1"}} {second}
"""


def scrape(at: float, **values: float) -> Scrape:
    return Scrape(at, get_backend("llama.cpp").parse_metrics(PAGE.format(**values)))


def test_rates_acceptance_and_per_position_over_a_window() -> None:
    earlier = scrape(0.0, generated=100, drafts=10, drafted=40, accepted=30, first=10, second=8)
    later = scrape(10.0, generated=600, drafts=30, drafted=120, accepted=90, first=28, second=20)
    live = window(earlier, later)
    assert live is not None and not live.reset
    assert live.generated_tokens_per_second == 50.0
    assert live.acceptance == 0.75 and live.mean_accepted_length == 3.0
    assert live.per_position_acceptance == (0.9, 0.6)


def test_a_restart_counts_from_zero() -> None:
    earlier = scrape(0.0, generated=5000, drafts=100, drafted=400, accepted=300, first=90,
                     second=70)
    later = scrape(10.0, generated=200, drafts=5, drafted=20, accepted=10, first=4, second=3)
    live = window(earlier, later)
    assert live is not None and live.reset
    assert live.generated_tokens_per_second == 20.0 and live.acceptance == 0.5


@given(st.floats(min_value=0.1, max_value=1e4), st.floats(min_value=0, max_value=1e6),
       st.floats(min_value=0, max_value=1e6))
def test_rates_are_never_negative_and_scale_with_time(seconds: float, a: float, b: float) -> None:
    earlier = Scrape(0.0, SpecCounters(generated_tokens=a))
    later = Scrape(seconds, SpecCounters(generated_tokens=b))
    live = window(earlier, later)
    assert live is not None and live.generated_tokens_per_second >= 0
    expected = (b if b < a else b - a) / seconds
    assert math.isclose(live.generated_tokens_per_second, expected, rel_tol=1e-9, abs_tol=1e-9)
    assert window(later, later) is None

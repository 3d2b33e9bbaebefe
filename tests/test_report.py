"""The study's terminal table."""

from __future__ import annotations

from autotune.controller import progress_line
from autotune.report import results_table
from autotune.space import BASELINE, SpecConfig
from autotune.store.repository import TrialRecord


def _trial(number: int, config: SpecConfig, tokens_per_second: float) -> TrialRecord:
    summary = [{"decode_tokens_per_second": tokens_per_second * 1.1, "acceptance": 0.9,
                "ttft_p95_ms": 200.0, "tpot_p95_ms": 14.0}]
    return TrialRecord(number, number, "search", "complete", config, tokens_per_second, True,
                       [], summary, [], None, None, 1.0, 10.0)


def test_a_long_drafter_label_keeps_every_figure_under_its_heading() -> None:
    drafter = "/models/Qwen2.5-Coder-0.5B-Instruct-Q8_0.gguf"
    long = SpecConfig("draft-simple", 8, 0.6, drafter, "f16", "f16", "auto")
    assert len(long.describe()) > 52  # longer than the column once was
    table = results_table([_trial(0, BASELINE, 50.0), _trial(1, long, 80.0),
                           _trial(2, SpecConfig("ngram-mod", 12), 70.0)])
    header, _, *rows = table.splitlines()
    for heading in ("tok/s", "decode", "vs base", "ttft p95"):
        end = header.index(heading) + len(heading)  # figures are right-aligned under it
        for row in rows:
            assert row[end - 1] != " " and row[end] == " ", (heading, row)


def test_progress_lines_keep_their_figures_in_columns_whatever_the_label() -> None:
    drafter = "/models/Qwen2.5-Coder-0.5B-Instruct-Q8_0.gguf"
    failed = TrialRecord(3, 3, "search", "failed", SpecConfig("ngram-mod", 12), None, False,
                         [], [], [], "server exited with status 1", None, 1.0, 10.0)
    lines = [progress_line(_trial(0, BASELINE, 50.0), 1, 30),
             progress_line(_trial(1, SpecConfig("draft-simple", 8, 0.6, drafter), 80.0), 2, 30),
             progress_line(_trial(2, SpecConfig("ngram-mod", 12), 170.0), 3, 30),
             progress_line(failed, 4, 30)]
    ends = {line.index(" t/s") for line in lines[:3]}
    assert len(ends) == 1, lines
    labels = {line.index(config.describe()) for line, config in
              zip(lines, [BASELINE, SpecConfig("draft-simple", 8, 0.6, drafter),
                          SpecConfig("ngram-mod", 12), SpecConfig("ngram-mod", 12)])}
    assert len(labels) == 1, lines  # every label starts in one column, the failed one's too
    assert "FAILED" in lines[3] and lines[3].endswith("server exited with status 1")
    assert lines[3].startswith("[  4/30] #3 ")  # its number names its log: trial-003.log


def test_a_baseline_launch_outside_its_finish_rounds_is_named_under_the_table() -> None:
    ngram = SpecConfig("ngram-mod", 12)
    search = [_trial(0, BASELINE, 50.0), _trial(1, ngram, 90.0)]
    rounds = [TrialRecord(10 + i, 10 + i, "finish", "complete", BASELINE, value, True, [], [],
                          [], None, None, 1.0, 10.0, round=i) for i, value in enumerate([70., 74.])]
    table = results_table([*search, *rounds])
    assert "x1.80" in table  # the search's own ratio stays as measured...
    assert "(50.0 t/s); it read 70.0-74.0 t/s in the finish's rounds" in table  # ...and is named
    inside = [TrialRecord(12, 12, "finish", "complete", BASELINE, 49.0, True, [], [], [], None,
                          None, 1.0, 10.0, round=0), rounds[0]]
    assert "finish's rounds" not in results_table([*search, *inside])
    assert "finish's rounds" not in results_table(search)

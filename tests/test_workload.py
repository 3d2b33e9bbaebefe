import json
from pathlib import Path

import pytest

from autotune.errors import WorkloadError
from autotune.workload import load_workload, starter_workloads_dir


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "w.jsonl"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "has no prompts"),
        ("\n# only a comment\n", "has no prompts"),
        ('{"messages": [{"role": "user", "content": "hi"}]}\n{oops\n', "line 2: not valid JSON"),
        ('{"prompt": "a", "messages": []}\n', "exactly one of 'messages'"),
        ('{"messages": [{"content": "no role"}]}\n', "'messages' must be a non-empty list"),
        ('{"prompt": "a", "max_tokens": 0}\n', "'max_tokens' must be a positive integer"),
        ('{"prompt": "a", "tempreature": 1}\n', "unknown key 'tempreature'"),
        ('[1, 2]\n', "expected a JSON object"),
    ],
)
def test_bad_workloads_get_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(WorkloadError) as info:
        load_workload([write(tmp_path, text)])
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match="workload file not found"):
        load_workload([str(tmp_path / "nope.jsonl")])


def test_schedule_avoids_repeats_and_is_stable(tmp_path: Path) -> None:
    rows = [{"prompt": f"p{i}", "weight": w} for i, w in enumerate([1, 3, 2])]
    workload = load_workload([write(tmp_path, "".join(json.dumps(r) + "\n" for r in rows))])
    first = [p.prompt for p in workload.schedule(3)]
    assert first == ["p1", "p2", "p0"]  # heavier first, each once
    assert [p.prompt for p in workload.schedule(3)] == first
    assert workload.warmup_prompt().prompt not in {"p0", "p1", "p2"}


def test_starter_workloads_load() -> None:
    files = sorted(starter_workloads_dir().glob("*.jsonl"))
    assert len(files) >= 4
    workload = load_workload([str(f) for f in files])
    assert {"code", "chat", "tool-call", "summarize"} <= set(workload.labels)

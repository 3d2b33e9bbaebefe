"""Workload-representative prompts from JSONL files.

One JSON object a line::

    {"messages": [{"role": "user", "content": "..."}], "max_tokens": 96,
     "temperature": 0, "weight": 2, "class": "code"}

``prompt`` (a raw string, sent to the raw completion endpoint) may stand instead of
``messages``. ``class`` labels the kind of request so results break down per class.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autotune.errors import WorkloadError

_KNOWN_KEYS = {"messages", "prompt", "max_tokens", "temperature", "weight", "class", "id"}


@dataclass(frozen=True)
class Prompt:
    index: int
    label: str
    max_tokens: int
    temperature: float
    weight: float
    messages: tuple[dict[str, str], ...] | None = None
    prompt: str | None = None


@dataclass(frozen=True)
class Workload:
    prompts: tuple[Prompt, ...]
    sources: tuple[str, ...]

    @property
    def labels(self) -> list[str]:
        return sorted({p.label for p in self.prompts})

    @property
    def class_weights(self) -> dict[str, float]:
        """Each class's share of the traffic: the sum of its prompts' weights."""
        weights: dict[str, float] = {}
        for prompt in self.prompts:
            weights[prompt.label] = weights.get(prompt.label, 0.0) + prompt.weight
        return weights

    def _stream(self) -> Iterator[Prompt]:
        """Every prompt in turn, classes interleaved in proportion to their weights and the
        prompts of a class in proportion to theirs (smooth weighted round-robin, as nginx
        balances upstreams): any stretch of it is a stratified sample of the workload."""
        by_class: dict[str, list[Prompt]] = {}
        for prompt in self.prompts:
            by_class.setdefault(prompt.label, []).append(prompt)
        classes = sorted(by_class)
        class_weights = self.class_weights
        class_credit = dict.fromkeys(classes, 0.0)
        prompt_credit = {p.index: 0.0 for p in self.prompts}
        total = sum(class_weights.values())
        while True:
            for label in classes:
                class_credit[label] += class_weights[label]
            label = max(classes, key=lambda c: (class_credit[c], -classes.index(c)))
            class_credit[label] -= total
            members = by_class[label]
            for member in members:
                prompt_credit[member.index] += member.weight
            chosen = max(members, key=lambda m: (prompt_credit[m.index], -m.index))
            prompt_credit[chosen.index] -= class_weights[label]
            yield chosen

    def schedule(self, count: int, rotation: int = 0) -> list[Prompt]:
        """``count`` prompts for one server launch (or one finish round): a stratified stretch
        of the workload, the ``rotation``-th of its kind, so successive launches and rounds
        cover every class in proportion to its weight and every prompt in turn. Setups measured
        with the same rotation get the same prompts (the finish pairs them by round).

        No prompt is sent twice to one server while unsent ones remain: n-gram and draft caches
        remember a server's earlier outputs, so a repeat is answered from memory and inflates
        exactly the setups that keep such caches (llama.cpp issue #26100). Only a count larger
        than the workload repeats prompts; ``distinct_count`` lets callers avoid that."""
        stream = self._stream()
        for _ in range(max(0, rotation) * count):
            next(stream)
        chosen: list[Prompt] = []
        used: set[int] = set()
        distinct = len(self.prompts)
        # Past the workload's size repeats are unavoidable; the stream keeps their mix.
        for prompt in stream:
            if len(chosen) >= count:
                break
            if prompt.index in used and len(used) < distinct:
                continue
            used.add(prompt.index)
            chosen.append(prompt)
        return chosen

    @property
    def distinct_count(self) -> int:
        return len(self.prompts)

    def warmup_prompt(self) -> Prompt:
        """A neutral request that shares no text with the workload: it loads the model's
        pages and the server's caches without teaching any draft cache the measured answers."""
        chat = any(p.messages is not None for p in self.prompts)
        text = "List the days of the week, one per line."
        return Prompt(
            index=-1, label="warmup", max_tokens=16, temperature=0.0, weight=1.0,
            messages=({"role": "user", "content": text},) if chat else None,
            prompt=None if chat else text,
        )


def starter_workloads_dir() -> Path:
    """Where the starter workloads live: ``examples/workloads`` in a checkout, shipped inside
    the package in a wheel."""
    checkout = Path(__file__).resolve().parents[1] / "examples" / "workloads"
    if checkout.is_dir():
        return checkout
    # A data-only folder is a namespace package, for which resources.files() returns a
    # MultiplexedPath whose str() is not a path; the import system's own location is.
    spec = importlib.util.find_spec("autotune.workloads")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise WorkloadError("the starter workloads are missing from this install; reinstall "
                            "autotune or give workload.files")
    return Path(locations[0])


def resolve_workload_path(name: str) -> Path:
    if name.startswith("embedded:"):
        return starter_workloads_dir() / f"{name.removeprefix('embedded:')}.jsonl"
    return Path(name)


def _fail(source: str, line_no: int, message: str) -> WorkloadError:
    return WorkloadError(f"workload {source} line {line_no}: {message}")


def _parse_line(data: Any, source: str, line_no: int, index: int, max_tokens: int | None) -> Prompt:
    if not isinstance(data, dict):
        raise _fail(source, line_no, "expected a JSON object with 'messages' or 'prompt'")
    unknown = set(data) - _KNOWN_KEYS
    if unknown:
        raise _fail(source, line_no, f"unknown key {sorted(unknown)[0]!r}; allowed: "
                    f"{', '.join(sorted(_KNOWN_KEYS))}")
    messages = data.get("messages")
    prompt = data.get("prompt")
    if (messages is None) == (prompt is None):
        raise _fail(source, line_no, "give exactly one of 'messages' (chat) or 'prompt' (raw text)")
    if messages is not None:
        ok = isinstance(messages, list) and messages and all(
            isinstance(m, dict) and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str) for m in messages
        )
        if not ok:
            raise _fail(source, line_no, "'messages' must be a non-empty list of "
                        "{\"role\": ..., \"content\": ...} objects")
    elif not isinstance(prompt, str) or not prompt:
        raise _fail(source, line_no, "'prompt' must be a non-empty string")
    tokens = data.get("max_tokens", 128) if max_tokens is None else max_tokens
    if not isinstance(tokens, int) or tokens < 1:
        raise _fail(source, line_no, f"'max_tokens' must be a positive integer (got {tokens!r})")
    temperature = data.get("temperature", 0.0)
    if not isinstance(temperature, (int, float)) or temperature < 0:
        raise _fail(source, line_no, f"'temperature' must be >= 0 (got {temperature!r})")
    weight = data.get("weight", 1.0)
    if not isinstance(weight, (int, float)) or weight <= 0:
        raise _fail(source, line_no, f"'weight' must be > 0 (got {weight!r})")
    try:  # valid JSON can still hold text no server can be sent (a lone surrogate, "\ud800")
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as error:
        bad = repr(error.object[error.start:error.end])
        raise _fail(source, line_no, f"text {bad} is not valid Unicode (a lone surrogate); "
                    "fix or remove it") from None
    label = data.get("class", "default")
    if not isinstance(label, str) or not label:
        raise _fail(source, line_no, "'class' must be a non-empty string")
    return Prompt(
        index=index, label=label, max_tokens=tokens, temperature=float(temperature),
        weight=float(weight),
        messages=tuple(dict(m) for m in messages) if messages is not None else None,
        prompt=prompt,
    )


def load_workload(files: Sequence[str], *, max_tokens: int | None = None) -> Workload:
    if not files:
        raise WorkloadError("workload.files is empty; list at least one JSONL file")
    prompts: list[Prompt] = []
    for name in files:
        path = resolve_workload_path(name)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise WorkloadError(f"workload file not found: {path}; fix workload.files") from None
        except UnicodeDecodeError:
            raise WorkloadError(f"workload {path} is not UTF-8 text; save it as UTF-8 JSONL") from None
        found = 0
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as error:
                raise _fail(str(path), line_no, f"not valid JSON ({error.msg}); "
                            "each line must be one JSON object") from None
            prompts.append(_parse_line(data, str(path), line_no, len(prompts), max_tokens))
            found += 1
        if found == 0:
            raise WorkloadError(f"workload {path} has no prompts; add JSONL lines with 'messages'")
    return Workload(prompts=tuple(prompts), sources=tuple(str(f) for f in files))

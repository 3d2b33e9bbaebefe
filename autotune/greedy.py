"""Greedy (temperature 0) outputs of one setup, and how two sets of them differ. The gate's
correctness signal and the tuner's quality guard both compare setups this way: drafting must
not change a single token, and a quantized KV cache's cost is the share of outputs it changes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from autotune.backends import Backend, LaunchSettings
from autotune.errors import AutotuneError, LaunchError
from autotune.launcher import free_port, start_server, url_host, wait_healthy
from autotune.space import SpecConfig
from autotune.workload import Prompt


class OutputsError(AutotuneError):
    """Greedy outputs could not be read (a server that does not start, say)."""


@dataclass(frozen=True)
class GreedyOutputs:
    build: str | None  # the server's /props build_info
    tokens: list[list[int]]  # each answer, tokenized by the same server
    texts: list[str]


@dataclass(frozen=True)
class OutputComparison:
    prompt_index: int
    label: str
    identical: bool
    first_divergence: int | None  # token position where the outputs first differ
    edit_distance: int  # tokens inserted, deleted or replaced to turn one into the other
    reference_tokens: int
    tokens: int
    reference_excerpt: str = ""  # the text from a little before the divergence
    excerpt: str = ""


def first_divergence(reference: Sequence[int], other: Sequence[int]) -> int | None:
    """Index of the first token where the two differ (the shorter one's length when one is
    a prefix of the other); ``None`` when they are the same."""
    for position, (a, b) in enumerate(zip(reference, other, strict=False)):
        if a != b:
            return position
    return None if len(reference) == len(other) else min(len(reference), len(other))


def token_edit_distance(reference: Sequence[int], other: Sequence[int]) -> int:
    """Levenshtein distance over tokens (two rows of the usual table)."""
    previous = list(range(len(other) + 1))
    for i, a in enumerate(reference, start=1):
        current = [i]
        for j, b in enumerate(other, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (a != b)))
        previous = current
    return previous[-1]


def compare_outputs(prompts: Sequence[Prompt], reference: GreedyOutputs,
                    other: GreedyOutputs) -> list[OutputComparison]:
    comparisons = []
    for prompt, ref, ref_text, tokens, text in zip(prompts, reference.tokens, reference.texts,
                                                   other.tokens, other.texts, strict=True):
        position = first_divergence(ref, tokens)
        cut = next((i for i, (a, b) in enumerate(zip(ref_text, text, strict=False)) if a != b),
                   min(len(ref_text), len(text)))
        shown = position is not None
        comparisons.append(OutputComparison(
            prompt_index=prompt.index, label=prompt.label, identical=not shown,
            first_divergence=position, edit_distance=token_edit_distance(ref, tokens),
            reference_tokens=len(ref), tokens=len(tokens),
            reference_excerpt=ref_text[max(0, cut - 20):cut + 30] if shown else "",
            excerpt=text[max(0, cut - 20):cut + 30] if shown else ""))
    return comparisons


def greedy_outputs(backend: Backend, settings: LaunchSettings, config: SpecConfig,
                   prompts: Sequence[Prompt], *, log_path: Path, startup_timeout_s: float,
                   request_timeout_s: float) -> GreedyOutputs:
    """Start ``config`` once (on a free port of ``settings.host``), ask every prompt at
    temperature 0, not streamed, and stop it."""
    port = free_port(settings.host)
    settings = LaunchSettings(**{**settings.__dict__, "port": port})
    base_url = f"http://{url_host(settings.host)}:{port}"
    server = start_server(backend.launch_argv(settings, config), base_url=base_url,
                          log_path=log_path)
    try:
        wait_healthy(server, health_path=backend.health_path, timeout_s=startup_timeout_s,
                     error_line=backend.startup_error)
        with httpx.Client(timeout=request_timeout_s) as client:
            build = _build_info(client, base_url)
            tokens, texts = [], []
            for prompt in prompts:
                text = _greedy_text(client, base_url, backend.chat_path, prompt)
                texts.append(text)
                tokens.append(_tokenize(client, base_url, text))
    except (LaunchError, httpx.HTTPError, KeyError, ValueError) as error:
        raise OutputsError(f"{config.describe()}: greedy outputs could not be read: "
                           f"{error}") from None
    finally:
        server.stop()
    return GreedyOutputs(build, tokens, texts)


def _build_info(client: httpx.Client, base_url: str) -> str | None:
    try:
        props: dict[str, Any] = client.get(base_url + "/props").json()
    except (httpx.HTTPError, ValueError):
        return None
    value = props.get("build_info")
    return str(value) if value is not None else None


def _greedy_text(client: httpx.Client, base_url: str, chat_path: str, prompt: Prompt) -> str:
    if prompt.messages is not None:
        reply = client.post(base_url + chat_path, json={
            "messages": list(prompt.messages), "max_tokens": prompt.max_tokens,
            "temperature": 0.0, "seed": 0}).json()
        return str(reply["choices"][0]["message"]["content"] or "")
    reply = client.post(base_url + "/completion", json={
        "prompt": prompt.prompt, "n_predict": prompt.max_tokens, "temperature": 0.0}).json()
    return str(reply["content"])


def _tokenize(client: httpx.Client, base_url: str, text: str) -> list[int]:
    response = client.post(base_url + "/tokenize", json={"content": text})
    response.raise_for_status()
    return [int(t) for t in response.json()["tokens"]]

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
class TokenChoice:
    id: int
    logprob: float
    text: str


@dataclass(frozen=True)
class GreedyOutputs:
    build: str | None  # the server's /props build_info
    tokens: list[list[int]]  # each answer, tokenized by the same server
    texts: list[str]
    # Per answer, when asked for: at each token the server's likeliest tokens there, as it
    # listed them; None for an answer whose log-probabilities the server did not give, or whose
    # token ids do not line up with the tokenized text (nothing could be looked up safely).
    choices: list[list[list[TokenChoice]] | None] | None = None


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
    # At the divergence, by the reference's own log-probabilities (when it gave them): its
    # token, this output's token, and how much likelier (nats) the reference found its own.
    # A near-tie is a gap within ``near_tie_nats``: two tokens the reference itself nearly
    # could not tell apart, where the rounding of a batched verification can tip the choice.
    # None: cannot tell (no usable log-probabilities). A token that is not among the
    # reference's likeliest there is far: near_tie False, with no gap.
    reference_token: str = ""
    token: str = ""
    logprob_gap: float | None = None
    near_tie: bool | None = None


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
                    other: GreedyOutputs, *, near_tie_nats: float = 0.0
                    ) -> list[OutputComparison]:
    """Each prompt's answers compared token by token; at a divergence, the reference's own
    log-probabilities (when it gave them) say whether it was a near-tie."""
    comparisons = []
    choices = reference.choices or [None] * len(reference.tokens)
    for prompt, ref, ref_text, tokens, text, at in zip(
            prompts, reference.tokens, reference.texts, other.tokens, other.texts, choices,
            strict=True):
        position = first_divergence(ref, tokens)
        cut = next((i for i, (a, b) in enumerate(zip(ref_text, text, strict=False)) if a != b),
                   min(len(ref_text), len(text)))
        shown = position is not None
        tie: dict[str, Any] = {}
        if position is not None and at is not None and position < min(len(ref), len(tokens)):
            tie = tie_at(at[position], tokens[position], near_tie_nats)
        comparisons.append(OutputComparison(
            prompt_index=prompt.index, label=prompt.label, identical=not shown,
            first_divergence=position, edit_distance=token_edit_distance(ref, tokens),
            reference_tokens=len(ref), tokens=len(tokens),
            reference_excerpt=ref_text[max(0, cut - 20):cut + 30] if shown else "",
            excerpt=text[max(0, cut - 20):cut + 30] if shown else "", **tie))
    return comparisons


def tie_at(choices: Sequence[TokenChoice], token: int, near_tie_nats: float) -> dict[str, Any]:
    """The near-tie fields of a divergence where the reference weighed ``choices`` and the
    other output took ``token``. A token outside the reference's listed choices is far."""
    if not choices:
        return {}
    chosen = max(choices, key=lambda c: c.logprob)
    taken = next((c for c in choices if c.id == token), None)
    if taken is None:
        return {"reference_token": chosen.text, "near_tie": False}
    gap = chosen.logprob - taken.logprob
    return {"reference_token": chosen.text, "token": taken.text, "logprob_gap": gap,
            "near_tie": gap <= near_tie_nats}


def greedy_outputs(backend: Backend, settings: LaunchSettings, config: SpecConfig,
                   prompts: Sequence[Prompt], *, log_path: Path, startup_timeout_s: float,
                   request_timeout_s: float, top_logprobs: int = 0) -> GreedyOutputs:
    """Start ``config`` once (on a free port of ``settings.host``), ask every prompt at
    temperature 0, not streamed, and stop it. ``top_logprobs``: also ask for that many
    likeliest tokens at each position (the gate asks the run that does not draft: its
    probabilities are the ones that say whether a divergence was a near-tie)."""
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
            choices: list[list[list[TokenChoice]] | None] = []
            for prompt in prompts:
                text, listed = _greedy_text(client, base_url, backend.chat_path, prompt,
                                            top_logprobs)
                texts.append(text)
                tokens.append(_tokenize(client, base_url, text))
                choices.append(_choices(listed, tokens[-1]))
    except (LaunchError, httpx.HTTPError, KeyError, ValueError) as error:
        raise OutputsError(f"{config.describe()}: greedy outputs could not be read: "
                           f"{error}") from None
    finally:
        server.stop()
    return GreedyOutputs(build, tokens, texts, choices if top_logprobs else None)


def _build_info(client: httpx.Client, base_url: str) -> str | None:
    try:
        props: dict[str, Any] = client.get(base_url + "/props").json()
    except (httpx.HTTPError, ValueError):
        return None
    value = props.get("build_info")
    return str(value) if value is not None else None


def _greedy_text(client: httpx.Client, base_url: str, chat_path: str, prompt: Prompt,
                 top_logprobs: int) -> tuple[str, Any]:
    """The answer's text, and the server's per-token log-probabilities when asked (OpenAI's
    ``logprobs.content`` for chat; llama-server's ``completion_probabilities`` otherwise)."""
    if prompt.messages is not None:
        body: dict[str, Any] = {"messages": list(prompt.messages),
                                "max_tokens": prompt.max_tokens, "temperature": 0.0, "seed": 0}
        if top_logprobs:
            body.update(logprobs=True, top_logprobs=top_logprobs)
        choice = client.post(base_url + chat_path, json=body).json()["choices"][0]
        listed = (choice.get("logprobs") or {}).get("content") if top_logprobs else None
        return str(choice["message"]["content"] or ""), listed
    body = {"prompt": prompt.prompt, "n_predict": prompt.max_tokens, "temperature": 0.0}
    if top_logprobs:
        body["n_probs"] = top_logprobs
    reply = client.post(base_url + "/completion", json=body).json()
    return str(reply["content"]), reply.get("completion_probabilities") if top_logprobs else None


def _choices(listed: Any, tokens: Sequence[int]) -> list[list[TokenChoice]] | None:
    """Per-token choices from the server's log-probabilities, only when its token ids are
    exactly ``tokens`` (the text tokenized again): a divergence position then indexes both."""
    if not isinstance(listed, list) or len(listed) != len(tokens):
        return None
    try:
        if [int(entry["id"]) for entry in listed] != list(tokens):
            return None
        return [[TokenChoice(int(c["id"]), float(c["logprob"]), str(c.get("token", "")))
                 for c in entry["top_logprobs"]] for entry in listed]
    except (KeyError, TypeError, ValueError):
        return None


def _tokenize(client: httpx.Client, base_url: str, text: str) -> list[int]:
    response = client.post(base_url + "/tokenize", json={"content": text})
    response.raise_for_status()
    return [int(t) for t in response.json()["tokens"]]

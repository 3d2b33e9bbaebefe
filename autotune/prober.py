"""Measure a running server under the workload: async httpx, streamed requests, one
``RequestSample`` per request, and the server's ``/metrics`` read before and after."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from autotune.backends import Backend, SpecCounters
from autotune.errors import ProbeError
from autotune.interference import InterferenceWindow
from autotune.measurements import LevelResult, RequestSample
from autotune.workload import Prompt, Workload


def _request_body(prompt: Prompt, knobs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        **(knobs or {}),  # per-request draft parameters, where the server reads them
        "max_tokens": prompt.max_tokens,
        "temperature": prompt.temperature,
        "stream": True,
    }
    if prompt.messages is not None:
        body["messages"] = list(prompt.messages)
        body["stream_options"] = {"include_usage": True}
    else:
        body["prompt"] = prompt.prompt
        body["n_predict"] = prompt.max_tokens
    return body


def _chunk_text(chunk: dict[str, Any]) -> str:
    if "content" in chunk and isinstance(chunk["content"], str):  # llama.cpp /completion
        return chunk["content"]
    text = ""
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        text += (delta.get("content") or "") + (delta.get("reasoning_content") or "")
        text += choice.get("text") or ""
    return text


async def send_one(
    client: httpx.AsyncClient,
    backend: Backend,
    base_url: str,
    prompt: Prompt,
    *,
    concurrency: int,
    warmup: bool,
    window_start: float,
    retry: bool = True,
    knobs: Mapping[str, Any] | None = None,
) -> RequestSample:
    """One streamed request. A transport-level failure (a reset keep-alive connection, say)
    is tried once more on a fresh connection before it counts as an error: with the default
    ``max_error_rate = 0`` one stale socket would otherwise make a whole setup infeasible."""
    if prompt.messages is None and backend.completion_path is None:
        raise ProbeError(f"{backend.name} has no raw-prompt endpoint; use 'messages' prompts")
    path = backend.chat_path if prompt.messages is not None else str(backend.completion_path)
    started = time.perf_counter()
    first_token: float | None = None
    pieces = 0
    final: dict[str, Any] = {}
    usage_tokens: int | None = None
    common = dict(prompt_index=prompt.index, label=prompt.label, concurrency=concurrency,
                  warmup=warmup, started_s=started - window_start)
    try:
        async with aconnect_sse(client, "POST", base_url + path, json=_request_body(prompt, knobs)) as sse:
            if sse.response.status_code != 200:
                body = (await sse.response.aread()).decode(errors="replace")[:200]
                raise ProbeError(f"HTTP {sse.response.status_code}: {body}")
            async for event in sse.aiter_sse():
                if event.data.strip() == "[DONE]":
                    break
                chunk = json.loads(event.data)
                if "error" in chunk:
                    raise ProbeError(f"server error: {chunk['error']}")
                if _chunk_text(chunk):
                    pieces += 1
                    if first_token is None:
                        first_token = time.perf_counter()
                if "timings" in chunk:
                    final = chunk
                usage = chunk.get("usage")
                if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
                    usage_tokens = usage["completion_tokens"]
                    final = final or chunk
    except (httpx.HTTPError, ProbeError, json.JSONDecodeError) as error:
        failed = RequestSample(**common, e2e_s=time.perf_counter() - started,  # type: ignore[arg-type]
                               error=f"{type(error).__name__}: {error}"[:300])
        transport = isinstance(error, httpx.TransportError) and not isinstance(
            error, httpx.TimeoutException)  # a timeout retried would only double the wait
        if not (retry and transport):
            return failed
        async with httpx.AsyncClient(timeout=client.timeout) as fresh:
            again = await send_one(fresh, backend, base_url, prompt, concurrency=concurrency,
                                   warmup=warmup, window_start=window_start, retry=False,
                                   knobs=knobs)
        if again.error is None:
            return dataclasses.replace(again, retried_error=failed.error)
        return dataclasses.replace(
            again, error=f"{again.error} (retried once; first try: {failed.error})"[:300],
            retried_error=failed.error)
    ended = time.perf_counter()
    timings = backend.parse_timings(final) if final else None
    tokens = usage_tokens
    if tokens is None and timings is not None:
        tokens = timings.predicted_tokens
    if tokens is None:
        tokens = pieces
    ttft = (first_token - started) if first_token is not None else None
    tpot = (ended - first_token) / (tokens - 1) if first_token is not None and tokens > 1 else None
    return RequestSample(
        **common,  # type: ignore[arg-type]
        e2e_s=ended - started,
        ttft_s=ttft,
        tpot_s=tpot,
        generated_tokens=tokens,
        prompt_tokens=timings.prompt_tokens if timings else None,
        draft_tokens=timings.draft_tokens if timings else None,
        draft_accepted=timings.draft_accepted if timings else None,
        server_tokens_per_second=timings.predicted_per_second if timings else None,
    )


async def read_counters(client: httpx.AsyncClient, backend: Backend, base_url: str) -> SpecCounters:
    try:
        response = await client.get(base_url + "/metrics")
    except httpx.HTTPError:
        return SpecCounters()
    if response.status_code != 200:
        return SpecCounters()
    try:
        return backend.parse_metrics(response.text)
    except ValueError:  # a page that is not Prometheus text: no counters, not a failure
        return SpecCounters()


async def probe_level(
    client: httpx.AsyncClient,
    backend: Backend,
    base_url: str,
    prompts: Sequence[Prompt],
    *,
    concurrency: int,
    warmup: Sequence[Prompt] = (),
    knobs: Mapping[str, Any] | None = None,
) -> LevelResult:
    """Warm-up requests first (recorded, marked, excluded from aggregates), then the measured
    prompts through ``concurrency`` workers."""
    window_start = time.perf_counter()
    samples: list[RequestSample] = []
    for prompt in warmup:
        samples.append(await send_one(client, backend, base_url, prompt, concurrency=concurrency,
                                      warmup=True, window_start=window_start, knobs=knobs))
    before = await read_counters(client, backend, base_url)
    window = InterferenceWindow()
    window.start()
    queue: asyncio.Queue[Prompt] = asyncio.Queue()
    for prompt in prompts:
        queue.put_nowait(prompt)
    measured: list[RequestSample] = []
    window_start = time.perf_counter()

    async def worker() -> None:
        while True:
            try:
                prompt = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            measured.append(await send_one(client, backend, base_url, prompt,
                                           concurrency=concurrency, warmup=False,
                                           window_start=window_start, knobs=knobs))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - window_start
    interference = window.stop()
    after = await read_counters(client, backend, base_url)
    return LevelResult(concurrency, tuple(samples + measured), elapsed, after.minus(before),
                       interference)


def level_counts(requests: int, levels: Sequence[int], distinct: int) -> list[int]:
    """Requests per concurrency level for one launch: ``requests`` per slot, scaled down so
    the launch sends each prompt at most once (each level keeps at least one request per slot;
    only a workload too small even for that repeats prompts)."""
    wanted = [requests * level for level in levels]
    total = sum(wanted)
    if total <= distinct:
        return wanted
    scale = distinct / total
    return [max(level, int(count * scale)) for count, level in zip(wanted, levels, strict=True)]


def probe(
    backend: Backend,
    base_url: str,
    workload: Workload,
    *,
    concurrency_levels: Sequence[int],
    requests: int,
    warmup_requests: int,
    timeout_s: float,
    rotation: int = 0,
    knobs: Mapping[str, Any] | None = None,
) -> list[LevelResult]:
    """Measure every concurrency level in turn (blocking wrapper for the controller). The
    launch's prompts are one stratified stretch of the workload (``rotation`` picks which), so
    no prompt reaches this server twice while others are unsent."""

    async def run() -> list[LevelResult]:
        limits = httpx.Limits(max_connections=max(concurrency_levels) + 2)
        timeout = httpx.Timeout(timeout_s, connect=5.0)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            results = []
            counts = level_counts(requests, concurrency_levels, workload.distinct_count)
            stretch = workload.schedule(sum(counts), rotation)
            start = 0
            for level, count in zip(concurrency_levels, counts, strict=True):
                prompts = stretch[start:start + count]
                start += count
                warm = [workload.warmup_prompt()] * warmup_requests
                results.append(await probe_level(client, backend, base_url, prompts,
                                                 concurrency=level, warmup=warm, knobs=knobs))
            return results

    return asyncio.run(run())

"""Transport faults in the prober, against a FAULT-INJECTING socket server (faults only: it
drops connections as a stale keep-alive socket does, and otherwise answers one SSE stream)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pathlib import Path

import httpx

from autotune.backends import get_backend
from autotune.measurements import RequestSample
from autotune.prober import send_one
from autotune.store import repository
from autotune.store.session import open_store
from autotune.space import SpecConfig
from autotune.store.models import TrialState
from autotune.workload import Prompt

PROMPT = Prompt(index=0, label="chat", max_tokens=4, temperature=0.0, weight=1.0,
                messages=({"role": "user", "content": "hi"},))
STREAM = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
          + b"data: " + json.dumps({"choices": [{"delta": {"content": "hello"}}]}).encode()
          + b"\n\ndata: " + json.dumps({"choices": [], "usage": {"completion_tokens": 1}}).encode()
          + b"\n\ndata: [DONE]\n\n")


def read_request(connection: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            return
        body += chunk


@contextmanager
def fault_injecting_sse_server(drops: int) -> Iterator[str]:
    """Drops the first ``drops`` connections without an answer, then streams one reply."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(5)

    def serve() -> None:
        for index in range(drops + 1):
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                read_request(connection)  # all of it: closing on unread bytes sends a reset
                if index >= drops:
                    connection.sendall(STREAM)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        thread.join(timeout=5)


def send(base_url: str) -> RequestSample:
    async def run() -> RequestSample:
        async with httpx.AsyncClient(timeout=5) as client:
            return await send_one(client, get_backend("llama.cpp"), base_url, PROMPT,
                                  concurrency=1, warmup=False, window_start=0.0)

    return asyncio.run(run())


def test_a_dropped_connection_is_retried_once_and_the_first_failure_is_kept(
        tmp_path: Path) -> None:
    with fault_injecting_sse_server(drops=1) as base_url:
        sample = send(base_url)
    assert sample.error is None and sample.generated_tokens == 1
    assert sample.retried_error is not None
    assert sample.retried_error.startswith(("RemoteProtocolError", "ReadError"))
    # ... and it reaches the database with the trial.
    store = open_store(str(tmp_path / "r.db"))
    study = repository.create_study(store, name="s", server_kind="llama.cpp", strategy="random",
                                    seed=0, trials_budget=1, spec={})
    trial_id, _ = repository.start_trial(store, study.id, phase="search", config=SpecConfig(),
                                         launch_argv=[])
    repository.finish_trial(store, trial_id, state=TrialState.FAILED, samples=[(0, sample)])
    [stored] = repository.trial_samples(store, trial_id)
    assert stored["error"] is None and stored["retried_error"] == sample.retried_error


def test_a_second_drop_counts_as_an_error_and_records_both() -> None:
    with fault_injecting_sse_server(drops=2) as base_url:
        sample = send(base_url)
    error = sample.error
    assert error is not None and "retried once; first try:" in error
    assert error.startswith(("RemoteProtocolError", "ReadError"))  # closed, or reset
    assert sample.retried_error is not None

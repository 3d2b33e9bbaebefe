"""Transport faults in the prober, against a FAULT-INJECTING socket server (faults only: it
drops connections as a stale keep-alive socket does, and otherwise answers one SSE stream)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from autotune.backends import get_backend
from autotune.prober import send_one
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


def send(base_url: str) -> str | None:
    async def run() -> str | None:
        async with httpx.AsyncClient(timeout=5) as client:
            sample = await send_one(client, get_backend("llama.cpp"), base_url, PROMPT,
                                    concurrency=1, warmup=False, window_start=0.0)
        return sample.error

    return asyncio.run(run())


def test_a_dropped_connection_is_retried_once_on_a_fresh_one() -> None:
    with fault_injecting_sse_server(drops=1) as base_url:
        assert send(base_url) is None


def test_a_second_drop_counts_as_an_error_and_records_both() -> None:
    with fault_injecting_sse_server(drops=2) as base_url:
        error = send(base_url)
    assert error is not None and "retried once; first try:" in error
    assert error.startswith(("RemoteProtocolError", "ReadError"))  # closed, or reset

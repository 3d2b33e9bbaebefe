"""SIMULATION served over HTTP: a stand-in that speaks llama-server's flags, endpoints,
``timings`` and ``/metrics`` so the whole controller can tune a simulated GPU-scale landscape.

It is never a real server and says so: in its log, ``/props``, ``/metrics`` and every response.
Launched by autotune for ``server.binary = "simulated:<preset>"`` (or by hand)::

    autotune-sim-server --sim-preset dc-gpu-31b-mtp --port 8080 \\
        --spec-type draft-mtp --spec-draft-model mtp-q8_0.gguf --spec-draft-n-max 3

Each request streams at the landscape's true per-sequence tokens/s for this setup, times a
per-launch and a per-request noise factor; ``--sim-speedup`` divides every wait (launch and
generation), so measured tokens/s are the simulated figure times the speedup. Draft counts come
from sampling the same per-position acceptance the benchmark uses.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from autotune.sim.flags import build_parser, config_from
from autotune.sim.model import Landscape, drafting_profile, true_tokens_per_second
from autotune.sim.presets import PRESETS
from autotune.space import SpecConfig, drafts
from strategies.acceptance import position_terms

BANNER = "SIMULATION"
PROMPT_SPEED_FACTOR = 20.0  # prompt tokens/s relative to generation: a batched forward pass


@dataclass
class Counters:
    """What ``/metrics`` reports, guarded by one lock (requests run on threads)."""

    prompt_tokens: int = 0
    generated_tokens: int = 0
    requests: int = 0
    drafts: int = 0
    draft_tokens: int = 0
    accepted_tokens: int = 0
    accepted_per_position: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class Generation:
    tokens: int
    step_sizes: tuple[int, ...]  # tokens emitted by each verify step
    drafts: int
    draft_tokens: int
    accepted_per_position: tuple[int, ...]


class SimulatedServer:
    def __init__(self, landscape: Landscape, config: SpecConfig, *, speedup: float, parallel: int,
                 model: str, seed: int | None) -> None:
        self.landscape = landscape
        self.config = config
        self.speedup = speedup
        self.parallel = parallel
        self.model = model
        self.rng = np.random.default_rng(seed)
        self.rng_lock = threading.Lock()
        self.started = time.monotonic()
        self.counters = Counters()
        # Run-to-run noise: one factor per launch, a smaller one per request.
        self.launch_factor = float(np.exp(self.rng.normal(0.0, landscape.noise)))
        self.tokens_per_second = (
            true_tokens_per_second(landscape, config) / landscape.concurrency
        )

    @property
    def ready(self) -> bool:
        return time.monotonic() - self.started >= self.landscape.launch_seconds / self.speedup

    def generate(self, max_tokens: int) -> Generation:
        n = self.config.draft_max
        if not drafts(self.config.method) or not n:
            return Generation(max_tokens, (1,) * max_tokens, 0, 0, ())
        with self.rng_lock:
            uniforms = self.rng.random((max_tokens, n))
        acceptance, p_min, _ = drafting_profile(self.landscape, self.config)
        # Per position: P(confidence >= p_min) and P(drafted and accepted), as in the model.
        survive, accepted_p = position_terms(acceptance[:n], p_min)
        steps: list[int] = []
        per_position = [0] * n
        n_drafts = n_draft_tokens = produced = 0
        for row in uniforms:
            if produced >= max_tokens:
                break
            # One uniform per position decides both events, so accepted implies drafted;
            # drafting stops at the first low-confidence token, acceptance at the first miss.
            drafted = int(np.argmin(row < survive)) if not (row < survive).all() else n
            if drafted < (self.config.draft_min or 0):
                drafted = 0  # a draft shorter than n-min is dropped unverified
            accepted_mask = row[:drafted] < accepted_p[:drafted]
            accepted = int(np.argmin(accepted_mask)) if not accepted_mask.all() else drafted
            # The reply stops at max_tokens: tokens accepted past it are not counted, so a
            # step is one token plus the accepted ones, as the knob probe reads it.
            accepted = min(accepted, max_tokens - produced - 1)
            for i in range(accepted):
                per_position[i] += 1
            if drafted:
                n_drafts += 1
                n_draft_tokens += drafted
            emitted = min(1 + accepted, max_tokens - produced)
            steps.append(emitted)
            produced += emitted
        return Generation(produced, tuple(steps), n_drafts, n_draft_tokens, tuple(per_position))

    def request_speed(self) -> float:
        with self.rng_lock:
            factor = float(np.exp(self.rng.normal(0.0, self.landscape.noise / 2)))
        return self.tokens_per_second * self.launch_factor * factor * self.speedup

    def record(self, prompt_tokens: int, generation: Generation) -> None:
        c = self.counters
        with c.lock:
            c.requests += 1
            c.prompt_tokens += prompt_tokens
            c.generated_tokens += generation.tokens
            c.drafts += generation.drafts
            c.draft_tokens += generation.draft_tokens
            c.accepted_tokens += sum(generation.accepted_per_position)
            width = max(len(c.accepted_per_position), len(generation.accepted_per_position))
            c.accepted_per_position += [0] * (width - len(c.accepted_per_position))
            for i, count in enumerate(generation.accepted_per_position):
                c.accepted_per_position[i] += count

    def metrics_text(self) -> str:
        c = self.counters
        with c.lock:
            lines = [
                f"# {BANNER}: autotune.sim preset {self.landscape.name}, not a real llama-server",
                "# TYPE llamacpp:prompt_tokens_total counter",
                f"llamacpp:prompt_tokens_total {c.prompt_tokens}",
                "# TYPE llamacpp:tokens_predicted_total counter",
                f"llamacpp:tokens_predicted_total {c.generated_tokens}",
                "# TYPE llamacpp:requests_processing gauge",
                "llamacpp:requests_processing 0",
            ]
            if drafts(self.config.method):
                lines += [
                    "# TYPE llamacpp:spec_decode_num_drafts_total counter",
                    f"llamacpp:spec_decode_num_drafts_total {c.drafts}",
                    "# TYPE llamacpp:spec_decode_num_draft_tokens_total counter",
                    f"llamacpp:spec_decode_num_draft_tokens_total {c.draft_tokens}",
                    "# TYPE llamacpp:spec_decode_num_accepted_tokens_total counter",
                    f"llamacpp:spec_decode_num_accepted_tokens_total {c.accepted_tokens}",
                    "# TYPE llamacpp:spec_decode_num_accepted_tokens_per_pos_total counter",
                ]
                lines += [
                    f'llamacpp:spec_decode_num_accepted_tokens_per_pos_total{{position="{i}"}} {n}'
                    for i, n in enumerate(c.accepted_per_position)
                ]
        return "\n".join(lines) + "\n"

    def props(self) -> dict[str, Any]:
        return {
            "total_slots": self.parallel,
            "model_path": self.model,
            "build_info": f"autotune-sim ({BANNER} of preset {self.landscape.name})",
            "simulation": True,
            "speculative": drafts(self.config.method),
        }


def _prompt_tokens(body: dict[str, Any]) -> int:
    if isinstance(body.get("messages"), list):
        text = " ".join(str(m.get("content", "")) for m in body["messages"] if isinstance(m, dict))
    else:
        text = str(body.get("prompt", ""))
    return max(1, len(text) // 4)


def _max_tokens(body: dict[str, Any]) -> int:
    for key in ("max_tokens", "n_predict", "max_completion_tokens"):
        value = body.get(key)
        if isinstance(value, int) and value > 0:
            return min(value, 4096)
    return 128


class Handler(BaseHTTPRequestHandler):
    server_version = "autotune-sim"
    sim: SimulatedServer  # set on the class by serve()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # the real server does not log every request either

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _loading(self) -> bool:
        if self.sim.ready:
            return False
        self._json(503, {"error": {"code": 503, "message": "Loading model",
                                   "type": "unavailable_error"}})
        return True

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if self.path == "/health":
            if not self._loading():
                self._json(200, {"status": "ok"})
        elif self.path == "/metrics":
            data = self.sim.metrics_text().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path == "/props":
            self._json(200, self.sim.props())
        elif self.path in ("/v1/models", "/models"):
            self._json(200, {"object": "list", "data": [
                {"id": Path(self.sim.model).name, "object": "model", "owned_by": "autotune-sim"}]})
        else:
            self._json(404, {"error": {"code": 404, "message": "File Not Found",
                                       "type": "not_found_error"}})

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        if self.path not in ("/completion", "/v1/completions", "/v1/chat/completions"):
            self._json(404, {"error": {"code": 404, "message": "File Not Found",
                                       "type": "not_found_error"}})
            return
        if self._loading():
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body is not an object")
        except ValueError as error:
            self._json(400, {"error": {"code": 400, "message": f"invalid JSON: {error}",
                                       "type": "invalid_request_error"}})
            return
        self._complete(body, chat=self.path == "/v1/chat/completions")

    def _complete(self, body: dict[str, Any], *, chat: bool) -> None:
        sim = self.sim
        prompt_tokens = _prompt_tokens(body)
        generation = sim.generate(_max_tokens(body))
        speed = sim.request_speed()
        started = time.perf_counter()
        prompt_s = prompt_tokens / (speed * PROMPT_SPEED_FACTOR)
        deadline = started + prompt_s
        decode_started = deadline
        chunks: list[bytes] = []
        stream = bool(body.get("stream"))
        if stream:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
        for emitted in generation.step_sizes:
            deadline += emitted / speed
            time.sleep(max(0.0, deadline - time.perf_counter()))
            text = "tok " * emitted
            if stream:
                self._event(_chunk(text, chat=chat))
            else:
                chunks.append(text.encode())
        sim.record(prompt_tokens, generation)
        predicted_ms = (time.perf_counter() - decode_started) * 1000.0
        timings = {
            "prompt_n": prompt_tokens, "prompt_ms": prompt_s * 1000.0,
            "predicted_n": generation.tokens, "predicted_ms": predicted_ms,
            "predicted_per_second": generation.tokens / max(predicted_ms / 1000.0, 1e-9),
        }
        if generation.draft_tokens:
            timings["draft_n"] = generation.draft_tokens
            timings["draft_n_accepted"] = sum(generation.accepted_per_position)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": generation.tokens,
                 "total_tokens": prompt_tokens + generation.tokens}
        final = _chunk("", chat=chat, finish=True) | {"timings": timings, "usage": usage,
                                                      "simulation": True}
        if stream:
            self._event(final)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        else:
            text = b"".join(chunks).decode()
            final = _chunk(text, chat=chat, finish=True, message=True) | {
                "timings": timings, "usage": usage, "simulation": True}
            self._json(200, final)

    def _event(self, payload: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
        self.wfile.flush()


def _chunk(text: str, *, chat: bool, finish: bool = False, message: bool = False) -> dict[str, Any]:
    if not chat:
        return {"content": text, "stop": finish}
    part = {"message": {"role": "assistant", "content": text}} if message else {
        "delta": {"content": text} if text else {}}
    return {"object": "chat.completion" if message else "chat.completion.chunk",
            "model": "autotune-sim",
            "choices": [{"index": 0, **part, "finish_reason": "length" if finish else None}]}


def serve(argv: Sequence[str] | None = None) -> None:
    args, unknown = build_parser(BANNER).parse_known_args(argv)
    landscape = PRESETS[args.sim_preset]
    config = config_from(args, landscape)
    sim = SimulatedServer(landscape, config, speedup=args.sim_speedup, parallel=args.parallel,
                          model=args.model, seed=args.sim_seed)
    print(f"{BANNER}: autotune.sim preset '{landscape.name}' ({landscape.description}); "
          f"not a real llama-server. speedup x{args.sim_speedup:g}", file=sys.stderr, flush=True)
    if unknown:
        print(f"{BANNER}: ignoring flags the simulation does not model: {' '.join(unknown)}",
              file=sys.stderr, flush=True)
    handler = type("BoundHandler", (Handler,), {"sim": sim})
    httpd = ThreadingHTTPServer((args.host, args.port), handler)
    httpd.daemon_threads = True
    print(f"main: server is listening on http://{args.host}:{args.port}", file=sys.stderr,
          flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


def main() -> None:
    serve()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""FAULT-INJECTING test server: the real llama-server, except for the starts it is told to fail.

It exists only to inject faults in tests; every other start runs the real server (exec, same
pid). Configured by environment, since the tuner passes only llama-server's own flags:

- ``AUTOTUNE_FAULT_REAL``: the real llama-server binary.
- ``AUTOTUNE_FAULT_STATE``: a folder where it counts starts.
- ``AUTOTUNE_FAULT_FAIL``: comma-separated ``KIND:N`` entries, KIND ``baseline`` (no
  ``--spec-type``) or ``drafting``: the N-th start of that kind (from 1) exits 1 at once with an
  error line, as a server that cannot bind or load would.
- ``AUTOTUNE_FAULT_WORKERS``: N: every start first forks N idle worker processes that stay in
  the server's process group, as vLLM's and SGLang's engine and tokenizer workers do.
- ``AUTOTUNE_FAULT_DIE``: ``KIND:N`` entries: that start runs the real server, and 1.5 s after
  it answers /health kills it and exits 3 with an error line, as a server that crashes while
  it streams answers would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


# An idle worker that ends by itself after 10 minutes even if nothing stops it.
WORKER = "import time; time.sleep(600)"


def main() -> None:
    real = os.environ["AUTOTUNE_FAULT_REAL"]
    kind = "drafting" if "--spec-type" in sys.argv[1:] else "baseline"
    state = Path(os.environ["AUTOTUNE_FAULT_STATE"])
    state.mkdir(parents=True, exist_ok=True)
    counter = state / f"{kind}.starts"
    count = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(count))
    wanted = {entry.strip() for entry in os.environ.get("AUTOTUNE_FAULT_FAIL", "").split(",")}
    if f"{kind}:{count}" in wanted:
        print(f"main: error: injected start failure ({kind} start {count}; FAULT-INJECTING "
              "test server)", file=sys.stderr, flush=True)
        raise SystemExit(1)
    for _ in range(int(os.environ.get("AUTOTUNE_FAULT_WORKERS") or 0)):
        subprocess.Popen([sys.executable, "-c", WORKER, "fault-injecting-worker"])
    dying = {entry.strip() for entry in os.environ.get("AUTOTUNE_FAULT_DIE", "").split(",")}
    if f"{kind}:{count}" in dying:
        die_while_serving(real, sys.argv[1:])
    os.execv(real, [real, *sys.argv[1:]])


def die_while_serving(real: str, args: list[str]) -> None:
    server = subprocess.Popen([real, *args])
    url = f"http://{args[args.index('--host') + 1]}:{args[args.index('--port') + 1]}/health"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    break
        except OSError:
            pass
        time.sleep(0.2)
    time.sleep(1.5)
    server.kill()
    server.wait()
    print("main: error: injected crash while serving (FAULT-INJECTING test server)",
          file=sys.stderr, flush=True)
    raise SystemExit(3)


if __name__ == "__main__":
    main()

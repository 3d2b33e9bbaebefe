"""Each server runs under a small supervisor that leads its process group, so no worker of a
multi-process server (vLLM and SGLang fork engine and tokenizer processes) outlives the tuner.

``PR_SET_PDEATHSIG`` reaches only a process's direct child: with the server itself as the
child, a SIGKILL of the tuner killed the server and orphaned its workers. The supervisor is the
direct child; the kernel sends it SIGTERM when the tuner dies, and it then stops every process
of its group (TERM, then KILL after a grace period). It also stops the group when the server
exits by itself, and exits with the server's code so the launcher sees what the server did.

    python -m autotune.supervise SERVER [ARGS...]

It starts once per launch, so it imports only the launcher (standard library and psutil).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from types import FrameType

from autotune.launcher import stop_group

# Stopping is a TERM to the whole group, then a KILL after this long: long enough for a server
# to exit cleanly, short enough that nothing of a killed tuner's lingers.
GRACE_S = 3.0
_PR_SET_PDEATHSIG = 1


def _on_stop(signum: int, frame: FrameType | None) -> None:
    signal.signal(signum, signal.SIG_IGN)
    stop_group(os.getpgid(0), grace_s=GRACE_S)
    sys.exit(128 + signum)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m autotune.supervise SERVER [ARGS...]", file=sys.stderr)
        return 2
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _on_stop)
    if os.getppid() != parent:  # the tuner died before the line above took effect
        return 128 + signal.SIGTERM
    try:
        server = subprocess.Popen(argv)  # noqa: S603 - an argument list, never a shell
    except OSError as error:
        print(f"main: error: cannot start {argv[0]}: {error.strerror}", file=sys.stderr,
              flush=True)
        return 127
    code = server.wait()
    stop_group(os.getpgid(0), grace_s=2.0)  # workers the server left behind
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

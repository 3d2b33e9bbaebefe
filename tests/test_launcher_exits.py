"""How a server's death is reported: a signal is named with what usually sends it, since the
server's own last log line does not say (a SIGILL'd llama-server's last line is an ordinary
start-up message)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from autotune.errors import LaunchError
from autotune.launcher import describe_exit, start_server, wait_healthy


def test_plain_exit_codes_stay_codes() -> None:
    assert describe_exit(1) == "code 1"
    assert describe_exit(0) == "code 0"
    assert describe_exit(255) == "code 255"


def test_signals_are_named_with_their_usual_cause() -> None:
    assert describe_exit(128 + signal.SIGILL).startswith(f"code {128 + signal.SIGILL} (SIGILL: ")
    assert "GGML_NATIVE=OFF" in describe_exit(128 + signal.SIGILL)
    assert "out-of-memory" in describe_exit(-signal.SIGKILL)
    assert describe_exit(128 + signal.SIGUSR1) == f"code {128 + signal.SIGUSR1} (SIGUSR1)"


def test_a_server_killed_by_sigill_at_start_is_reported_as_such(tmp_path: Path) -> None:
    # A FAULT-INJECTING stand-in: prints a start-up line, then dies of SIGILL as a llama-server
    # built for another CPU does.
    fault = tmp_path / "fault-injecting-sigill-server"
    # No core file: it would land in the test's working folder.
    fault.write_text(f"#!{sys.executable}\nimport os, resource, signal\n"
                     "resource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"
                     "print('init: llama threadpool init, n_threads = 2', flush=True)\n"
                     "os.kill(os.getpid(), signal.SIGILL)\n")
    fault.chmod(0o755)
    server = start_server([str(fault)], base_url="http://127.0.0.1:9", log_path=tmp_path / "log")
    with pytest.raises(LaunchError) as raised:
        wait_healthy(server, health_path="/health", timeout_s=30, error_line=lambda _: None)
    message = str(raised.value)
    assert message.startswith(f"server exited at start with code {128 + signal.SIGILL} (SIGILL")
    assert "threadpool init" in message  # the server's own last line is still quoted

"""Server process lifecycle: start on 127.0.0.1, wait for health, keep the log, stop the tree.

No server outlives autotune:
- a normal exit, an exception or Ctrl-C stops every live server (``finally`` + ``atexit``);
- SIGTERM and SIGHUP raise ``Terminated``, which unwinds like Ctrl-C so the same clean-up runs;
- SIGKILL of the tuner cannot run any clean-up, so on Linux each server is started with
  ``PR_SET_PDEATHSIG`` = SIGKILL: the kernel kills it when its parent dies. As a last line,
  each launch records pid + start time in the store and ``--resume`` reaps survivors.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from autotune.errors import LaunchError, PortInUseError

_PR_SET_PDEATHSIG = 1
_LIVE: set[ServerProcess] = set()


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def host_family(host: str) -> tuple[socket.AddressFamily, str]:
    """The address family and literal address of ``host`` (IPv4, IPv6 or a name)."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise LaunchError(f"server.host {host!r} does not resolve ({error.strerror}); use an "
                          "address such as 127.0.0.1 or ::1") from None
    return family, str(address[0])


def url_host(host: str) -> str:
    """``host`` as it goes into a URL: IPv6 literals in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def free_port(host: str = "127.0.0.1") -> int:
    family, address = host_family(host)
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def ensure_port_free(host: str, port: int) -> None:
    family, address = host_family(host)
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # Servers bind with SO_REUSEADDR, so a port our last server left in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            raise PortInUseError(
                f"port {port} on {host} is already in use; set server.port to a free port "
                "or to 0 to let autotune pick one"
            ) from None


def tail_lines(path: Path, count: int = 40) -> list[str]:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            return list(deque(handle, maxlen=count))
    except FileNotFoundError:
        return []


def stop_tree(pid: int, *, grace_s: float = 10.0) -> None:
    """TERM the process and its descendants, then KILL whatever is left after ``grace_s``."""
    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    terminate_then_kill(family, grace_s)


def terminate_then_kill(processes: list[psutil.Process], grace_s: float) -> None:
    """TERM every process, then KILL whatever is left after ``grace_s``."""
    for proc in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)


def stop_group(group: int, *, grace_s: float = 10.0, started_after: float | None = None) -> None:
    """TERM, then KILL, every process of process group ``group`` (a server's supervisor
    leads one), also when its leader is gone: workers of a multi-process server stay in it."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) != group or proc.pid == os.getpid():
                continue
            if started_after is not None and proc.create_time() < started_after - 0.5:
                continue  # an older process in a reused group id is not ours
            members.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    terminate_then_kill(members, grace_s)


def reap_stale(pid: int | None, create_time: float | None) -> bool:
    """Stop a server left by a killed tuner: its supervisor's tree if that exact process still
    runs, and whatever is left of its process group either way."""
    if not pid or create_time is None:
        return False
    found = False
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) <= 0.5:  # else the pid was reused
            stop_tree(pid, grace_s=5.0)
            found = True
    except psutil.NoSuchProcess:
        pass
    stop_group(pid, grace_s=5.0, started_after=create_time)
    return found


@dataclass
class ServerProcess:
    argv: list[str]
    log_path: Path
    base_url: str
    popen: subprocess.Popen[bytes]
    started_at: float

    def __hash__(self) -> int:
        return id(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def create_time(self) -> float | None:
        try:
            return float(psutil.Process(self.pid).create_time())
        except psutil.NoSuchProcess:
            return None

    def log_excerpt(self, count: int = 30) -> str:
        return "".join(tail_lines(self.log_path, count))

    def stop(self) -> None:
        _LIVE.discard(self)
        if self.popen.poll() is None:
            stop_tree(self.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        stop_group(self.pid, grace_s=2.0)  # anything of its group the tree walk missed


def server_binary_path(binary: str) -> str:
    """The executable file ``binary`` names (a path, or a name on PATH): checked before a
    study starts, so a wrong path costs no study row, and again at every launch."""
    found = binary if os.sep in binary else (shutil.which(binary) or binary)
    if not Path(found).is_file():
        raise LaunchError(f"server binary not found: {binary}; set server.binary to its path")
    if not os.access(found, os.X_OK):
        raise LaunchError(f"server binary {found} is not executable; chmod +x it or set "
                          "server.binary to the right file")
    return found


def start_server(
    argv: Sequence[str],
    *,
    base_url: str,
    log_path: Path,
    env: Mapping[str, str] | None = None,
) -> ServerProcess:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    binary = server_binary_path(argv[0])
    # The supervisor leads the server's process group (see autotune.supervise).
    command = [sys.executable, "-m", "autotune.supervise", binary, *argv[1:]]
    with log_path.open("wb") as log:
        try:
            popen = subprocess.Popen(  # noqa: S603 - an argument list, never a shell
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,  # Ctrl-C reaches us, and we stop the server in order
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        except FileNotFoundError:
            raise LaunchError(
                f"server binary not found: {binary}; set server.binary to its path"
            ) from None
    server = ServerProcess(list(argv), log_path, base_url, popen, time.monotonic())
    _LIVE.add(server)
    return server


# Signals whose cause the server's own last log line does not say, with what usually sends them.
_SIGNAL_CAUSES = {
    signal.SIGILL: "an instruction this CPU does not run: a server built for another CPU, or "
                   "AVX-512/AMX that a virtual machine does not enable (llama.cpp #28756); "
                   "rebuild it portable, for llama.cpp with -DGGML_NATIVE=OFF",
    signal.SIGKILL: "killed from outside, most often by the kernel's out-of-memory killer",
    signal.SIGSEGV: "a crash in the server",
}


def describe_exit(code: int) -> str:
    """A server's exit status as a person reads it. The supervisor, like a shell, reports a
    server killed by signal N as 128 + N; ``Popen`` reports -N."""
    number = -code if code < 0 else code - 128 if code > 128 else 0
    try:
        killer = signal.Signals(number)
    except ValueError:
        return f"code {code}"
    cause = _SIGNAL_CAUSES.get(killer)
    return f"code {code} ({killer.name}{': ' + cause if cause else ''})"


def wait_healthy(
    server: ServerProcess,
    *,
    health_path: str,
    timeout_s: float,
    error_line: Callable[[Sequence[str]], str | None],
) -> float:
    """Block until ``health_path`` answers 200; return seconds since start.

    A server that exits first becomes a ``LaunchError`` quoting its own error line."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=httpx.Timeout(2.0, connect=1.0)) as client:
        while True:
            code = server.popen.poll()
            if code is not None:
                lines = tail_lines(server.log_path, 60)
                reason = error_line(lines) or (lines[-1].strip() if lines else "no output")
                raise LaunchError(
                    f"server exited at start with {describe_exit(code)}: {reason}",
                    log_excerpt="".join(lines[-30:]),
                )
            with contextlib.suppress(httpx.HTTPError):
                if client.get(server.base_url + health_path).status_code == 200:
                    return time.monotonic() - server.started_at
            if time.monotonic() > deadline:
                excerpt = server.log_excerpt()
                server.stop()
                raise LaunchError(
                    f"server did not answer {health_path} within {timeout_s:g} s; "
                    "raise server.startup_timeout_s if it loads slowly",
                    log_excerpt=excerpt,
                )
            time.sleep(0.2)


def stop_all() -> None:
    for server in list(_LIVE):
        server.stop()


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so every ``finally`` stops its server
    and the CLI prints the same line."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated(signum)


def install_cleanup() -> None:
    """Stop live servers at exit and on SIGTERM/SIGHUP. Call once from the main thread."""
    atexit.register(stop_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):
            signal.signal(sig, _on_sigterm)

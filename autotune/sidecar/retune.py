"""Retuning on a canary: a bounded ``autotune tune`` in a child process, against a server it
starts itself on another port with the same model, never the production server.

A child process rather than a thread: the study keeps the tuner's own tested clean-up (its
servers die with it, a SIGTERM leaves its trial to be marked interrupted), a crash in it cannot
take the sidecar down, and stopping it is one signal to its process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from autotune.store import repository as repo
from autotune.store.session import Store

Log = Callable[[str], None]
APPLY_TIMEOUT_S = 600.0  # the user's apply command runs in the loop's step, at most this long


@dataclass(frozen=True)
class RetuneResult:
    study: str
    trigger: str
    exit_code: int
    recommendation: dict[str, Any] | None
    seconds: float
    log_path: Path


class Retuner:
    def __init__(self, *, spec_path: Path, store: Store, store_location: str, base_name: str,
                 log_dir: Path, trials: int | None, log: Log) -> None:
        self.spec_path = spec_path
        self.store = store
        self.store_location = store_location
        self.base_name = base_name
        self.log_dir = log_dir
        self.trials = trials
        self.log = log
        self.child: subprocess.Popen[bytes] | None = None
        self.study: str | None = None
        self.trigger = ""
        self.started = 0.0
        self.log_path = log_dir / "retune.log"
        self.count = 0

    @property
    def running(self) -> bool:
        return self.child is not None

    def argv(self, study: str) -> list[str]:
        argv = [sys.executable, "-m", "autotune", "tune", str(self.spec_path), "--name", study,
                "--store", self.store_location]
        if self.trials is not None:
            argv += ["--trials", str(self.trials)]
        return argv

    def start(self, trigger: str) -> bool:
        """Start a retune; ``False`` while one runs."""
        if self.child is not None:
            return False
        self.count += 1
        self.study = f"{self.base_name}-retune-{time.strftime('%Y%m%d-%H%M%S')}-{self.count}"
        self.trigger = trigger
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"{self.study}.log"
        argv = self.argv(self.study)
        self.log(f"retune ({trigger}): study {self.study!r} on a canary; log {self.log_path}")
        with self.log_path.open("wb") as out:
            self.child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        self.started = time.monotonic()
        return True

    def poll(self) -> RetuneResult | None:
        """The result once the child has exited; ``None`` while it runs (or none runs)."""
        if self.child is None or self.child.poll() is None:
            return None
        return self._finish(self.child.returncode)

    def _finish(self, exit_code: int) -> RetuneResult:
        assert self.study is not None
        self.child = None
        study = repo.find_study(self.store, self.study)
        if study is not None:  # a trial the child left running is recorded as interrupted
            repo.interrupt_running(self.store, study.id)
        recommendation = study.recommendation if study and exit_code == 0 else None
        result = RetuneResult(self.study, self.trigger, exit_code, recommendation,
                              time.monotonic() - self.started, self.log_path)
        self.log(f"retune {self.study!r} ended with exit {exit_code} after "
                 f"{result.seconds:.0f} s" + ("" if recommendation else
                                                 f"; no recommendation, see {self.log_path}"))
        return result

    def stop(self, grace_s: float = 30.0) -> RetuneResult | None:
        """Stop a running retune: SIGTERM lets the child stop its canary and exit; what is
        left of its process group after ``grace_s`` is killed."""
        child = self.child
        if child is None:
            return None
        group = child.pid  # start_new_session: the child leads its own group
        try:  # its canary servers run in their own sessions: remember them before they orphan
            descendants = psutil.Process(child.pid).children(recursive=True)
        except psutil.Error:
            descendants = []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        try:
            child.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            child.wait()
        _, alive = psutil.wait_procs(descendants, timeout=grace_s)
        for process in alive:  # the child's own clean-up should have stopped these
            with contextlib.suppress(psutil.Error):
                process.kill()
        return self._finish(child.returncode)


def apply_argv(template: Sequence[str], command: Sequence[str]) -> list[str]:
    """The user's apply command with each ``{argv}`` element replaced by the recommended
    launch's arguments, one element each: never a shell string built from data."""
    argv: list[str] = []
    for part in template:
        if part == "{argv}":
            argv.extend(command)
        else:
            argv.append(part)
    return argv


def run_apply(template: Sequence[str], recommendation: dict[str, Any], log: Log,
              timeout_s: float = APPLY_TIMEOUT_S) -> int | None:
    """Run the opt-in apply command; its exit code, or ``None`` when it could not run."""
    argv = apply_argv(template, recommendation.get("command") or [])
    log(f"apply: running {argv!r}")
    env = dict(os.environ, AUTOTUNE_LAUNCH_COMMAND=recommendation.get("command_shell", ""))
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, env=env,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        log(f"apply: failed to run: {error}")
        return None
    for line in (done.stdout + done.stderr).splitlines()[-20:]:
        log(f"apply: {line}")
    log(f"apply: exit {done.returncode}")
    return done.returncode

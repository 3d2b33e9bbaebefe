"""A study has one owner at a time: a lease in the database, renewed by a heartbeat.

Optuna's RDB storage gives ``optimize()`` a heartbeat but not ask/tell; without one, a second
``tune --resume`` on a live study marked the first tuner's trial interrupted and the first
crashed. The owner is refused to others while its heartbeat is fresh (``LEASE_S``) or, on the
same host, while its process lives; a dead owner's lease is taken over at once on its own host
(the pid is gone) and after ``LEASE_S`` from another host.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psutil

from autotune.errors import AutotuneError, SpecError
from autotune.store import repository as repo
from autotune.store.repository import StudyOwner, StudyRecord
from autotune.store.session import Store

LEASE_S = 30.0
HEARTBEAT_S = 5.0


def _alive_here(owner: StudyOwner) -> bool:
    if owner.pid is None:
        return False
    try:
        process = psutil.Process(owner.pid)
        return owner.create_time is None or abs(process.create_time() - owner.create_time) < 0.5
    except psutil.NoSuchProcess:
        return False


def _holds(owner: StudyOwner, host: str) -> bool:
    """Whether ``owner`` still holds the study, seen from ``host``."""
    if owner.token is None:
        return False
    if owner.host == host:
        return _alive_here(owner)
    fresh = owner.heartbeat_at is not None and (
        datetime.now(UTC).replace(tzinfo=None) - owner.heartbeat_at
        < timedelta(seconds=LEASE_S))
    return fresh


@contextlib.contextmanager
def study_lease(store: Store, study: StudyRecord) -> Iterator[None]:
    """Own ``study`` while the block runs, or refuse with one line naming the owner."""
    host = socket.gethostname()
    me = psutil.Process(os.getpid())
    token = uuid.uuid4().hex
    owner = repo.study_owner(store, study.id)
    if _holds(owner, host):
        since = owner.since.strftime("%Y-%m-%d %H:%M:%S UTC") if owner.since else "?"
        raise SpecError(f"study {study.name!r} is being tuned by pid {owner.pid} on "
                        f"{owner.host} since {since}; wait for it to finish, or start another "
                        "study with --name NEW")
    if not repo.swap_owner(store, study.id, seen=owner.token, token=token, host=host,
                           pid=me.pid, create_time=me.create_time()):
        raise SpecError(f"study {study.name!r} was taken by another tuner just now; wait for it "
                        "to finish, or start another study with --name NEW")
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(AutotuneError):
                repo.heartbeat(store, study.id, token)

    thread = threading.Thread(target=beat, name="autotune-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=HEARTBEAT_S + 1)
        with contextlib.suppress(AutotuneError):
            repo.swap_owner(store, study.id, seen=token, token=None)

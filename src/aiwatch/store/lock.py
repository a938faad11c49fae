"""The run lock: one writing aiwatch process per database at a time.

A ``filelock`` lock on ``<database>.lock``: an OS lock (``flock`` on Unix, ``msvcrt`` on Windows) that
the kernel releases when a process dies, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from ..errors import StoreBusy

log = logging.getLogger(__name__)


@contextmanager
def write_lock(path: str | Path, timeout: float) -> Iterator[None]:
    """Hold the run lock of the database at ``path``; a second holder waits up to ``timeout``
    seconds, then gets StoreBusy."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path.with_name(path.name + ".lock"), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning("%s: another aiwatch run is writing; waiting up to %gs", path, timeout)
        try:
            lock.acquire(timeout=timeout, poll_interval=0.2)
        except Timeout:
            raise StoreBusy(f"{path}: another aiwatch run is writing this database "
                            f"(waited {timeout:g}s; set storage.lock_timeout to wait longer)") from None
    try:
        yield
    finally:
        lock.release()

"""Time: the current UTC time, run ids, and where a run's seconds went."""

from __future__ import annotations

import resource
import secrets
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterator


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_run_id(now: datetime, prefix: str = "") -> str:
    """A run id that sorts by time: ``20261127T143129Z-8e498f`` (``prefix`` for maintenance runs)."""
    return prefix + now.strftime("%Y%m%dT%H%M%SZ") + ("" if prefix else "-" + secrets.token_hex(3))


def peak_rss_mb() -> float:
    """This process's peak resident memory, in MB. On Linux from VmHWM, the high-water mark of
    the process's own memory map: ``getrusage`` keeps the peak of the process it was forked
    from across ``exec``, so a run started by a large parent would report the parent's size."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class StageClock:
    """Seconds spent per named part of the work, added up across threads."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, key: str, seconds: float) -> None:
        with self._lock:
            self.seconds[key] = self.seconds.get(key, 0.0) + seconds

    @contextmanager
    def timed(self, key: str, cpu: bool = False) -> Iterator[None]:
        """Add the block's wall time, or with ``cpu`` the calling thread's CPU time (the honest
        measure for work done on many threads that take turns holding the GIL)."""
        now = time.thread_time if cpu else time.perf_counter
        start = now()
        try:
            yield
        finally:
            self.add(key, now() - start)

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.seconds.items()}

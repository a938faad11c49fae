"""Work the app starts but does not do itself: a run, or a re-score after a theme is saved.

Each is an ``aiwatch`` command in a child process, so the app's own connections never meet the
job's in one process (DuckDB refuses two kinds of connection to one file in a process), and a
crash of the job cannot take the app down. One job at a time; a run is refused while another
process holds the run lock. Its output goes to a log file beside the database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Sequence

from ..clock import utcnow
from ..errors import AiwatchError, StoreBusy
from ..store import write_lock

LOG_TAIL = 4000  # characters of the job's output shown


class JobRefused(AiwatchError):
    """A job cannot start now (one is running, or a run holds the database)."""


@dataclass(frozen=True)
class JobState:
    kind: str  # "run" or "rescore"
    what: str  # the command, in words
    started_at: datetime
    running: bool
    returncode: int | None
    log_tail: str


class Jobs:
    """Starts aiwatch commands in the background, one at a time, and says how they went."""

    def __init__(self, config_path: Path | None, database: Path, command: Sequence[str] | None = None):
        self.config_path = Path(config_path).resolve() if config_path else None
        self.database = Path(database)
        self.command = list(command or [sys.executable, "-m", "aiwatch"])
        self.log_path = self.database.with_name(self.database.name + ".web-job.log")
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._kind = self._what = ""
        self._started: datetime | None = None

    def _args(self, args: Sequence[str]) -> list[str]:
        return self.command + list(args) + (["--config", str(self.config_path)] if self.config_path else [])

    def start(self, kind: str, args: Sequence[str], *, refuse_when_locked: bool = True) -> JobState:
        """Start ``aiwatch ARGS`` in the background; JobRefused when it cannot start now."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                raise JobRefused(f"a {self._kind} started here is still going ({self._what}); wait for it to finish")
            if refuse_when_locked:
                try:
                    with write_lock(self.database, 0):
                        pass
                except StoreBusy:
                    raise JobRefused("another aiwatch run is writing this database; start one when it has "
                                     "finished") from None
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "wb") as log:
                self._proc = subprocess.Popen(self._args(args), stdout=log, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, env=dict(os.environ),
                                              cwd=self.config_path.parent if self.config_path else None)
            self._kind, self._what, self._started = kind, "aiwatch " + " ".join(args), utcnow()
        return self.state()

    def state(self) -> JobState | None:
        """The latest job started here, or None."""
        with self._lock:
            if self._proc is None or self._started is None:
                return None
            code = self._proc.poll()
            try:
                tail = self.log_path.read_text("utf-8", errors="replace")[-LOG_TAIL:]
            except OSError:
                tail = ""
            return JobState(kind=self._kind, what=self._what, started_at=self._started, running=code is None,
                            returncode=code, log_tail=tail)

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the current job (tests, and the app's shutdown)."""
        proc = self._proc
        return proc.wait(timeout) if proc is not None else None

"""The database as the app uses it: opened per request, read-only for reading, and a short
write for a judgement.

DuckDB lets one process write a file at a time, and within one process every connection to a
file must be opened alike (read-only or not). So the app never holds the file between requests
(a run can take it at any moment), and inside the app reads share the file while a write has it
alone. A write waits WRITE_WAIT seconds at most for a run's transaction to end; past that it
raises StoreBusy, which the app shows as a page saying the judgement was not saved.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import StoreBusy, StoreError
from ..store import Store

READ_WAIT = 10.0  # a run's transactions are short; a read waits this long for one to end
WRITE_WAIT = 5.0  # a judgement waits this long, then says it was not saved


class Database:
    """One database file, opened per use; reads in parallel, a write alone (within this process)."""

    def __init__(self, path: Path, read_wait: float = READ_WAIT, write_wait: float = WRITE_WAIT):
        self.path = Path(path)
        self.read_wait = read_wait
        self.write_wait = write_wait
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    def migrate(self) -> None:
        """Bring an older database up to this aiwatch's schema now, before requests read it in
        parallel (a read-only open would otherwise migrate it under a reader's nose)."""
        if self.path.exists():
            try:
                with self.write():
                    pass
            except StoreBusy:
                pass  # a run holds it: the run migrates it

    @property
    def exists(self) -> bool:
        return self.path.exists()

    @contextmanager
    def read(self) -> Iterator[Store]:
        """A read-only connection for the length of the block."""
        if not self.path.exists():
            raise StoreError(f"{self.path}: no database yet; run `aiwatch run` (or `aiwatch demo`) first")
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1
        try:
            # migrated when the app started (see migrate), so no second open to check the schema
            with Store.open(self.path, read_only=True, lock_timeout=self.read_wait) as store:
                yield store
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[Store]:
        """A writing connection for a short change; StoreBusy when a run holds the file too long."""
        if not self.path.exists():
            raise StoreError(f"{self.path}: no database yet; run `aiwatch run` (or `aiwatch demo`) first")
        with self._cond:
            while self._writer or self._readers:
                self._cond.wait()
            self._writer = True
        try:
            with Store.open(self.path, lock_timeout=self.write_wait) as store:
                yield store
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()

"""Progress of long stages: a bar on a terminal, log lines otherwise.

The library reports through :func:`track`; the CLI chooses how it is shown with
:func:`use_bars`. Without it, progress goes to the ``aiwatch.progress`` logger, which is what
Prefect's run logs pick up.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger(__name__)
_bars = False
LOG_MIN_TOTAL = 100  # smaller stages finish too fast for progress lines to help


def use_bars(enabled: bool) -> None:
    global _bars
    _bars = enabled


class _Tracker:
    def __init__(self, label: str, total: int):
        self.label, self.total, self.done = label, total, 0
        self._next_log = 0.25
        self._bar = None
        if _bars and total > 0:
            from tqdm import tqdm
            self._bar = tqdm(total=total, desc=label, unit="item", leave=False, file=sys.stderr)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif (self.total >= LOG_MIN_TOTAL and self.done / self.total >= self._next_log
              and self.done < self.total):
            log.info("%s: %d/%d", self.label, self.done, self.total)
            self._next_log += 0.25

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextmanager
def track(label: str, total: int) -> Iterator[_Tracker]:
    tracker = _Tracker(label, total)
    try:
        yield tracker
    finally:
        tracker.close()

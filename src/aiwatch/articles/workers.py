"""Extraction in worker processes (``extract.processes``).

Extraction is Python on lxml trees: on threads it runs one page at a time under the GIL, and
eight fetching threads taking turns with the GIL were measured slower still than one thread.
Worker processes extract on every core (measured 2.3x the pages per second of eight threads on
2 cores). They also contain what a hostile page can do to a parser: a worker that dies (a
native crash, the kernel's out-of-memory killer) costs the pages it held, not the run. Those
pages are tried once more, each in a worker of its own, so the one page that kills its worker
again is recorded as a failure naming it (like any other page that cannot be extracted) and
the pages that were merely in flight beside it are not.

The pool is made on the first page a process extracts and lives as long as the process (an
unchanged day starts none), so a long-lived process (``aiwatch web``, the test suite) pays the
start once. Workers come from a fork server that has imported the extractors already, so a new
worker costs a fork, not the imports. Where a process cannot have children (a daemonic Dask
worker) or ``extract.processes = -1``, pages are extracted on the fetching thread, as before.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from ..config import Config, ExtractSettings
from ..errors import AiwatchError
from ..http import Fetched

log = logging.getLogger(__name__)

_PRELOAD = ["aiwatch.articles.preload"]  # the extractors, imported and warmed once in the fork server
_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_size = 0


class ExtractionCrashed(AiwatchError):
    """A page stopped the extraction worker twice."""


def process_count(config: Config) -> int:
    """Worker processes to extract with; 0 means on the calling thread."""
    wanted = config.extract.processes
    if wanted < 0 or multiprocessing.current_process().daemon:
        return 0  # daemonic processes may not have children (Dask's workers are daemonic)
    return wanted or os.cpu_count() or 1


def _alive(pid: int) -> bool:
    if os.path.isdir("/proc/self"):  # Linux: a killed run is a zombie until reaped, and gone for us
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except OSError:
        return True


def _watch(parent: int) -> None:
    while _alive(parent):
        time.sleep(1.0)
    os._exit(0)


def _worker_start(parent: int) -> None:
    # Ctrl-C is the run's to handle: it stops the fetching and shuts the pool down, and a worker
    # finishes its page instead of sending a KeyboardInterrupt back into a fetching thread.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker waits for pages on a queue it also holds the writing end of, so a run that is
    # killed (SIGKILL, a native crash) would leave it and the fork server waiting for ever: it
    # watches the run's process and leaves with it.
    threading.Thread(target=_watch, args=(parent,), name="aiwatch-watch-run", daemon=True).start()


def _new_pool(size: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=size, mp_context=_context(), initializer=_worker_start,
                               initargs=(os.getpid(),))


def _context():
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


def _get_pool(size: int) -> ProcessPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != size:
            if _pool is not None:
                _pool.shutdown(wait=False, cancel_futures=True)
            _pool, _pool_size = _new_pool(size), size
        return _pool


def _discard(pool: ProcessPoolExecutor) -> None:
    """Drop a broken pool (once, whichever thread sees it first); the next page makes a new one."""
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


def shutdown() -> None:
    """Stop the workers (they also stop when the process exits)."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def _extract_here(settings: ExtractSettings, fetched: Fetched, entry_title: str, feed_text: str):
    from .build import page_text
    start = time.thread_time()  # this thread's CPU: here a fetching thread, there the worker's task
    return page_text(settings, fetched, entry_title, feed_text), time.thread_time() - start


def extract_page(config: Config, fetched: Fetched, entry_title: str, feed_text: str):
    """``build.page_text`` of a fetched page, in a worker process when there are any; returns it
    with the CPU seconds the extraction took."""
    size = process_count(config)
    if size == 0:
        return _extract_here(config.extract, fetched, entry_title, feed_text)
    pool = _get_pool(size)
    try:
        return pool.submit(_extract_here, config.extract, fetched, entry_title, feed_text).result()
    except BrokenProcessPool:
        _discard(pool)  # every page in flight lost its worker, not only the page that killed it
        log.warning("extraction worker stopped while %s was being extracted; trying it again on its own",
                    fetched.url)
    with _new_pool(1) as alone:
        try:
            return alone.submit(_extract_here, config.extract, fetched, entry_title, feed_text).result()
        except BrokenProcessPool:
            pass
    raise ExtractionCrashed("the extraction worker process stopped on this page twice, the second time "
                            "extracting it alone (a crash in a parser, or out of memory)")

"""The embed stage: every stored passage without a vector gets one, in committed chunks.

:func:`embed_passages` runs after the articles stage; :class:`EmbedBehind` does the same work on
background threads while the articles stage is still fetching (``embed.overlap``). Either way the
work left to do is read from the database, so a crash loses at most one chunk.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from contextvars import copy_context
from contextlib import nullcontext
from datetime import datetime
from typing import Callable, Iterator

import numpy as np

from ..clock import utcnow
from ..config import Config
from ..progress import track
from ..store import Store, open_store
from .embed import embedder_for, model_id

log = logging.getLogger(__name__)

FanOut = Callable[[Callable, list[tuple]], Iterator]


def serial(fn: Callable, arglists: list[tuple]) -> Iterator:
    """Run ``fn`` over each argument tuple in turn, yielding results as they come."""
    for args in arglists:
        yield fn(*args)


def embed_chunk(config: Config, items: list[tuple[str, str]], now: datetime, threads: int | None = None,
                store: Store | None = None) -> int:
    """Embed one chunk of (text_hash, text) and store the vectors; one transaction."""
    embedder = embedder_for(config, threads)  # loaded once per process
    vectors = embedder.embed([t for _, t in items])
    with nullcontext(store) if store is not None else open_store(config) as target:
        target.save_embeddings([h for h, _ in items], vectors, embedder.model_id, now)
    return len(items)


def embed_passages(config: Config, now: datetime | None = None, fan_out: FanOut = serial) -> int:
    """Embed every stored passage that has no embedding yet; returns how many were embedded.

    The work is cut into chunks, each stored in its own transaction. ``fan_out`` runs the
    chunks: in turn here, or across Dask workers in the flow.
    """
    now = now or utcnow()
    model = model_id(config.embed.backend)
    with open_store(config) as store:
        pending = store.texts_without_embedding(model)
    if not pending:
        log.info("embed: nothing new to embed")
        return 0
    chunk = max(config.embed.batch_size * 8, 64)
    chunks = [pending[i:i + chunk] for i in range(0, len(pending), chunk)]
    done = 0
    with track("embed", len(pending)) as bar:
        for count in fan_out(embed_chunk, [(config, part, now) for part in chunks]):
            done += count
            bar.advance(count)
    log.info("embed: %d passages embedded with %s", done, model)
    return done


class EmbedBehind:
    """Embeds stored passages on background threads while the caller goes on fetching and
    extracting. Extraction is Python (one core at a time, under the GIL); the model's
    inference releases the GIL. One worker per core, each running the model single-threaded:
    measured faster than one worker with a 2-thread model, whose threads wait on each other
    whenever the extracting thread takes a core. A bounded queue keeps memory flat; the embed
    stage afterwards picks up anything left (a failure here is logged and left to it).

    The workers never touch the database: they hand their vectors back, and the caller stores
    them (:meth:`save`) on its own thread and connection, between batches. Two cursors of one
    DuckDB connection inserting with ON CONFLICT from two threads can crash the process
    (duckdb/duckdb#21126, open on DuckDB 2.0); with this split, every DuckDB call of a run is
    made from one thread at a time."""

    def __init__(self, config: Config, now: datetime, workers: int | None = None):
        self.config, self.now = config, now
        self.done = 0
        self.failed: str | None = None
        self._submitted: set[str] = set()
        self._lock = threading.Lock()
        self._made: list[tuple[list[str], np.ndarray, str]] = []  # (hashes, vectors, model) not yet stored
        self._queue: queue.Queue = queue.Queue(maxsize=4)
        torch = config.embed.backend == "torch"  # torch runs one call at a time: one worker, its own threads
        self._model_threads = None if torch else 1
        count = 1 if torch else (workers or config.embed.threads or os.cpu_count() or 1)
        self._threads = [threading.Thread(target=copy_context().run, args=(self._work,), name=f"aiwatch-embed-{i}",
                                          daemon=True)
                         for i in range(count)]
        for t in self._threads:
            t.start()

    def submit(self, items: list[tuple[str, str]]) -> None:
        items = [(h, t) for h, t in items if h not in self._submitted]  # a text shared by two batches
        self._submitted.update(h for h, _ in items)
        for start in range(0, len(items), 64):
            if self.failed is None:
                self._queue.put(items[start:start + 64])

    def _work(self) -> None:
        while (items := self._queue.get()) is not None:
            if self.failed is not None:
                continue
            try:
                embedder = embedder_for(self.config, self._model_threads)  # loaded once per process
                vectors = embedder.embed([t for _, t in items])
                with self._lock:
                    self._made.append(([h for h, _ in items], vectors, embedder.model_id))
            except Exception as exc:  # noqa: BLE001 - the embed stage retries and reports it
                self.failed = f"{type(exc).__name__}: {exc}"
                log.warning("embed while fetching stopped (%s); the embed stage will finish the work", self.failed)

    def save(self, store: Store) -> int:
        """Store the vectors made so far, on the caller's thread and connection; returns how many."""
        with self._lock:
            made, self._made = self._made, []
        for hashes, vectors, model in made:
            store.save_embeddings(hashes, vectors, model, self.now)
            self.done += len(hashes)
        return sum(len(h) for h, _, _ in made)

    def _stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()

    def drain(self) -> list[tuple[list[str], np.ndarray, str]]:
        """Wait for the workers and hand back what they made, (hashes, vectors, model) per chunk,
        stored nowhere: a shard's builder writes them to Parquet, away from the database."""
        self._stop()
        with self._lock:
            made, self._made = self._made, []
        return made

    def close(self, store: Store | None = None) -> int:
        """Wait for the workers, store what they made (in ``store``, else a connection of its own),
        and return how many passages were embedded in all."""
        self._stop()
        try:
            with nullcontext(store) if store is not None else open_store(self.config) as target:
                self.save(target)
        except Exception as exc:  # noqa: BLE001 - closing on the way out of an error: the embed stage redoes it
            log.warning("vectors made while fetching were not stored (%s: %s); the embed stage will redo them",
                        type(exc).__name__, exc)
        return self.done

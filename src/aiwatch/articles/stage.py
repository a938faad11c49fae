"""The articles stage: fetch and extract each new entry's page, find copies, store articles.

Entries are fetched in batches, in turns across hosts, on a thread pool; the next batch is
fetched while the current one is deduplicated and stored in one transaction, so a crash loses
at most a batch and readers get in between batches.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager, nullcontext
from contextvars import copy_context
from dataclasses import dataclass, field
from datetime import datetime
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence
from urllib.parse import urlsplit

from ..clock import StageClock, utcnow
from ..config import Config
from ..http import HttpClient
from ..ingest.robots import RobotsPolicy
from ..progress import track
from ..records import BuiltArticle, Failure, FeedEntry
from ..relevance.embed import model_id
from ..relevance.embedding import EmbedBehind
from ..store import open_store
from ..urls import site_of
from .build import build_article
from .dedup import DedupResult, dedup_batch
from .retry import retry_due_pages, schedule_retries

log = logging.getLogger(__name__)

ARTICLE_BATCH = 50


@dataclass(frozen=True)
class ArticlesResult:
    stored: int
    duplicates: int
    failures: tuple[Failure, ...]
    seconds: dict[str, float] = field(default_factory=dict)  # fetch, extract, dedup, store
    embedded: int = 0  # passages embedded while the pages were still being fetched


def interleave_hosts(entries: Sequence[FeedEntry]) -> list[FeedEntry]:
    """The entries in turns across their pages' hosts. A feed lists pages of one site, and
    each host gets at most ``fetch.per_host`` requests at a time, ``fetch.host_delay`` apart:
    in feed order a batch would wait on one host while the others sit idle."""
    by_host: dict[str, list[FeedEntry]] = {}
    for e in entries:
        by_host.setdefault(urlsplit(e.link or "").hostname or "", []).append(e)
    queues = list(by_host.values())
    out: list[FeedEntry] = []
    for turn in range(max((len(q) for q in queues), default=0)):
        out.extend(q[turn] for q in queues if turn < len(q))
    return out


@contextmanager
def stop_on_interrupt(pool: ThreadPoolExecutor, client: HttpClient | None) -> Iterator[None]:
    """On Ctrl-C, drop the queued page fetches at once and make the ones in flight fail fast,
    instead of waiting for every queued page."""
    try:
        yield
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        if client is not None:
            client.close()
        raise


def outlet_of(config: Config, entry: FeedEntry, feed_titles: dict[str, str | None]) -> str:
    """The outlet an entry is shown under: the configured name, the feed's title, or the site."""
    for f in config.feeds:
        if f.url == entry.feed_url and f.name:
            return f.name
    return feed_titles.get(entry.feed_url) or site_of(entry.link or entry.feed_url)


def store_built(config: Config, store, built: Sequence[BuiltArticle], run_id: str, now: datetime,
                hashes: dict[tuple[str, str], str], clock: StageClock, *,
                want_missing: bool = False) -> tuple[DedupResult, list[str]]:
    """One batch of built articles into the database: copies found, articles, passages, MinHash
    signatures, failures and page retries saved. Idempotent: a batch stored twice adds nothing.
    Returns the dedup decisions and (with ``want_missing``) the originals' passage hashes that
    still lack a vector. Both the in-process stage and the shard merge store through here."""
    with clock.timed("dedup"):
        result = dedup_batch(store, built, now, chunk_words=config.embed.chunk_words,
                             max_chunks=config.embed.max_chunks, entry_hashes=hashes)
    with clock.timed("store"):
        store.mark_entries_seen(result.already_stored)
        store.save_articles(result.to_store, result.passages, run_id, hashes)
        store.save_minhash(result.signatures)
        store.record_failures(run_id, [b.failure for b in built if b.failure is not None], now)
        kept = {s.article.article_id for s in result.to_store}
        schedule_retries(store, [(b.article.article_id, b.failure) for b in built
                                 if b.failure is not None and b.article.article_id in kept], now)
        todo: list[str] = []
        if want_missing:
            originals = {s.article.article_id for s in result.to_store if s.duplicate_of is None}
            todo = store.missing_embeddings(sorted({p.text_hash for p in result.passages
                                                    if p.article_id in originals}), model_id(config.embed.backend))
    return result, todo


def fetch_articles(config: Config, run_id: str, entries: Sequence[FeedEntry],
                   now: datetime | None = None, fan_out: Callable | None = None) -> ArticlesResult:
    """Fetch and extract the new entries' pages, dedup copies, store articles and passages.

    With ``embed.overlap`` the stored passages are embedded by background workers meanwhile.
    With ``storage.shards`` the pages are fetched, extracted and embedded in shards, run by
    ``fan_out`` (see :mod:`aiwatch.articles.shards`), and merged here."""
    now = now or utcnow()
    if config.storage.shards:
        return _fetch_in_shards(config, run_id, entries, now, fan_out)
    overlap = config.embed.overlap and bool(entries)
    # A connection per batch, so readers get in between; every DuckDB call is made on this
    # thread (the embedding workers only compute vectors, stored here between batches).
    with open_store(config) as store:
        titles = store.feed_titles()
    failures: list[Failure] = []
    stored = duplicates = 0
    clock = StageClock()
    hashes = {(e.feed_url, e.entry_id): e.entry_hash for e in entries}
    behind = EmbedBehind(config, now) if overlap else None
    try:
        with (HttpClient.from_config(config) if config.fetch.articles else nullcontext()) as client, \
                track("articles", len(entries)) as bar, \
                ThreadPoolExecutor(max_workers=config.fetch.concurrency) as pool, \
                stop_on_interrupt(pool, client):
            robots = RobotsPolicy(client) if client is not None and config.fetch.robots else None

            def submit(batch: Sequence[FeedEntry]) -> list:
                return [pool.submit(copy_context().run, build_article, config, client, e, outlet_of(config, e, titles), now, robots,
                                    clock) for e in batch]

            order = interleave_hosts(entries)
            batches = [order[i:i + ARTICLE_BATCH] for i in range(0, len(order), ARTICLE_BATCH)]
            ahead = submit(batches[0]) if batches else []
            for number, batch in enumerate(batches):
                # the next batch is fetched while this one is deduplicated and stored (at most
                # two batches of pages in memory)
                futures, ahead = ahead, (submit(batches[number + 1]) if number + 1 < len(batches) else [])
                built: list[BuiltArticle] = []
                for entry, fut in zip(batch, futures):
                    bar.advance()
                    try:
                        b = fut.result()
                    except Exception as exc:  # noqa: BLE001 - build_article guards the page; this is the last net
                        log.debug("entry %s: unexpected error", entry.entry_id, exc_info=True)
                        failures.append(Failure("article", entry.link or entry.entry_id,
                                                f"unexpected error: {type(exc).__name__}: {exc}", entry.feed_url))
                        log.warning("article %s: %s", failures[-1].url, failures[-1].error)
                        continue  # not marked seen: the next run tries the entry again
                    if b.failure is not None:
                        failures.append(b.failure)
                        log.warning("article %s: %s", b.failure.url, b.failure.error)
                    built.append(b)
                with open_store(config) as store:
                    result, todo = store_built(config, store, built, run_id, now, hashes, clock,
                                               want_missing=behind is not None)
                    duplicates += result.duplicates
                    if behind is not None:
                        with clock.timed("store"):
                            behind.save(store)  # the vectors the workers made meanwhile
                stored += len(result.to_store)
                if behind is not None:
                    texts = {p.text_hash: p.text for p in result.passages}
                    behind.submit([(h, texts[h]) for h in todo])
            if client is not None:
                with clock.timed("retry"):
                    _, _, retry_failures = retry_due_pages(config, run_id, now, client, robots, clock)
                failures += retry_failures
                if retry_failures:
                    with open_store(config) as store:
                        store.record_failures(run_id, retry_failures, now)
    finally:
        embedded = behind.close() if behind is not None else 0
    log.info("articles: %d stored (%d copies of earlier ones), %d page failures%s",
             stored, duplicates, len(failures), f"; {embedded} passages embedded meanwhile" if behind else "")
    return ArticlesResult(stored, duplicates, tuple(failures), dict(clock.seconds), embedded)


def _fetch_in_shards(config: Config, run_id: str, entries: Sequence[FeedEntry], now: datetime,
                     fan_out: Callable | None) -> ArticlesResult:
    from .shards import run_shards, settled_serial

    if config.prefect.shard_deployment:  # the work pool's workers build them, wherever the flow runs
        from ..flow import pool_fan_out  # the one module that imports Prefect

        fan_out = pool_fan_out(config)
    with open_store(config) as store:
        titles = store.feed_titles()
    result = run_shards(config, run_id, entries, [outlet_of(config, e, titles) for e in entries], now,
                        fan_out or settled_serial)
    failures = list(result.failures)
    seconds = dict(result.seconds)
    if config.fetch.articles:  # pages that failed on an earlier run, fetched again here
        clock = StageClock()
        with HttpClient.from_config(config) as client, clock.timed("retry"):
            robots = RobotsPolicy(client) if config.fetch.robots else None
            failures += retry_due_pages(config, run_id, now, client, robots, clock)[2]
        for key, value in clock.seconds.items():
            seconds[key] = seconds.get(key, 0.0) + value
    with open_store(config) as store:  # keyed by run, stage and URL: what a merge recorded stays once
        store.record_failures(run_id, failures, now)
    log.info("articles: %d stored (%d copies of earlier ones), %d page failures; %d shards%s, %d passages embedded "
             "on the workers", result.stored, result.duplicates, len(failures), result.shards,
             f" and {result.leftover} left by an earlier run" if result.leftover else "", result.embedded)
    return ArticlesResult(result.stored, result.duplicates, tuple(failures), seconds, result.embedded)

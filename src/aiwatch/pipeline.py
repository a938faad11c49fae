"""The daily job as a sequence of plain stage functions.

Each stage takes the config, the run id and records, opens the database by path, does its work
in committed batches and returns a small record. The state of the work lives in DuckDB (which
entries were seen, which passages lack an embedding, which articles lack a score for a theme
version), so a run repeated, or resumed after a crash, does exactly the missing work.

:func:`run_pipeline` runs the stages in order. The Prefect flow (:mod:`aiwatch.flow`) runs the
same function with each stage wrapped as a task, so there is one definition of the job.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import resource
import secrets
import threading
import time
from contextlib import contextmanager, nullcontext
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator, Sequence
from urllib.parse import urljoin, urlsplit

import numpy as np

from .config import Config
from .dates import choose_published, declared_date
from .dedup import THRESHOLD as NEAR_DUPLICATE, band_keys, signature, similarity
from .embed import embedder_for, model_id as embedder_model_id
from .errors import AiwatchError, FeedError, FetchError
from .extract import extract_article, strip_leading_title
from .feeds import FEED_ACCEPT, parse_feed
from .http import HttpClient
from .progress import track
from .robots import RobotsPolicy
from .records import Article, Failure, FeedEntry, FeedOutcome, Match, Passage, RunStats, StoredPage
from .score import ThemeVectors, score_article, theme_texts
from .store import Store, write_lock
from .text import content_hash, passages, text_hash
from .urls import canonical_url, site_of, url_key

log = logging.getLogger(__name__)

Stage = Callable[[Callable], Callable]
ARTICLE_BATCH = 50


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


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_run_id(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


STORE_WAIT = 60.0  # a stage waits this long for a reader (e.g. `aiwatch query`) to let go


def open_store(config: Config) -> Store:
    return Store.open(config.database, lock_timeout=STORE_WAIT)


# -- records returned by the stages -----------------------------------------------------

@dataclass(frozen=True)
class FeedsResult:
    outcomes: tuple[FeedOutcome, ...]
    new_entries: tuple[FeedEntry, ...]
    entries_seen: int

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


@dataclass(frozen=True)
class ArticlesResult:
    stored: int
    duplicates: int
    failures: tuple[Failure, ...]
    seconds: dict[str, float] = field(default_factory=dict)  # fetch, extract, dedup, store
    embedded: int = 0  # passages embedded while the pages were still being fetched


@dataclass(frozen=True)
class ScoreResult:
    scored: int
    flagged: int


@dataclass(frozen=True)
class RunResult:
    stats: RunStats
    status: str
    digest_files: tuple[Path, ...] = ()
    flagged: tuple[tuple[str, str, float], ...] = field(default_factory=tuple)  # (theme, title, score)

    @property
    def all_feeds_failed(self) -> bool:
        s = self.stats
        return s.feeds_failed > 0 and s.feeds_failed == s.feeds_total - s.feeds_deferred


# -- stages -----------------------------------------------------------------------------

def start_run(config: Config, now: datetime | None = None) -> str:
    now = now or utcnow()
    run_id = new_run_id(now)
    with open_store(config) as store:
        store.check_model(embedder_model_id(config["embed.backend"]))
        store.start_run(run_id, now)
        store.sync_themes(config.themes, now)
    log.info("run %s started: %d feeds, %d themes, database %s",
             run_id, len(config.feeds), len(config.themes), config.database)
    return run_id


def _fetch_one_feed(client: HttpClient, url: str, state) -> FeedOutcome:
    try:
        fetched = client.fetch(url, etag=state.etag if state else None,
                               last_modified=state.last_modified if state else None, accept=FEED_ACCEPT)
    except FetchError as exc:
        return FeedOutcome(url, "failed", error=exc.reason, http_status=exc.status)
    if fetched.not_modified:
        return FeedOutcome(url, "not_modified", http_status=304)
    try:
        parsed = parse_feed(fetched)
    except FeedError as exc:
        return FeedOutcome(url, "failed", error=exc.reason, http_status=fetched.status)
    return FeedOutcome(url, "ok", entries=parsed.entries, warning=parsed.warning,
                       etag=fetched.headers.get("etag"), last_modified=fetched.headers.get("last-modified"),
                       http_status=fetched.status, title=parsed.title)


def _entry_url(entry: FeedEntry) -> str:
    return canonical_url(entry.link) if entry.link else f"urn:aiwatch:{entry.feed_url}#{entry.entry_id}"


BACKOFF_SLACK = timedelta(minutes=30)  # a daily run a little early still fetches a feed due today


def _is_due(state, now: datetime) -> bool:
    return state is None or state.next_fetch_at is None or state.next_fetch_at <= now + BACKOFF_SLACK


def _with_overlap(outcome: FeedOutcome, state, new_entries: int) -> FeedOutcome:
    """Add the overlap with the previous fetch; warn when a full feed shares nothing with it."""
    if outcome.status != "ok":
        return outcome
    ids = {e.entry_id for e in outcome.entries}
    prev = set(state.last_entry_ids) if state else set()
    overlap = len(ids & prev) / len(ids) if ids and prev else None
    warning = outcome.warning
    if overlap == 0 and len(ids) >= len(prev):
        gap = ("none of its entries were in the previous fetch: items were probably missed "
               "between runs; fetch this feed more often")
        warning = f"{warning}; {gap}" if warning else gap
    return replace(outcome, overlap=overlap, new_entries=new_entries, warning=warning)


def fetch_feeds(config: Config, run_id: str, now: datetime | None = None, *, force: bool = False) -> FeedsResult:
    """Fetch every due feed (conditional GET), parse it, record its health, return the new entries.

    A feed backing off after failures is skipped until it is due again (``force`` fetches it
    anyway). New entries are those never seen, plus seen ones the feed has since edited.
    """
    now = now or utcnow()
    urls = [f.url for f in config.feeds]
    with open_store(config) as store:
        states = store.feed_states(urls)
    due = [u for u in urls if force or _is_due(states.get(u), now)]
    outcomes: list[FeedOutcome] = [FeedOutcome(u, "deferred") for u in urls if u not in set(due)]
    for o in outcomes:
        log.info("feed %s: backing off after %d failures, next try after %s", o.feed_url,
                 states[o.feed_url].consecutive_failures, f"{states[o.feed_url].next_fetch_at:%Y-%m-%d %H:%M}")
    fetched: list[FeedOutcome] = []
    with HttpClient.from_config(config) as client, track("feeds", len(due)) as bar, \
            ThreadPoolExecutor(max_workers=min(config["fetch.concurrency"], max(1, len(due)))) as pool:
        for fut in [pool.submit(_fetch_one_feed, client, u, states.get(u)) for u in due]:
            fetched.append(fut.result())
            bar.advance()
    entries = [e for o in fetched for e in o.entries]
    with open_store(config) as store:
        seen = store.seen_entries([(e.feed_url, e.entry_id) for e in entries])
        known = store.known_urls([_entry_url(e) for e in entries])
    new: list[FeedEntry] = []
    batch_urls: set[str] = set()
    unchanged_backfill, edited = [], 0
    new_per_feed: dict[str, int] = {}
    for e in entries:
        if e.is_empty:
            continue
        key, url = (e.feed_url, e.entry_id), _entry_url(e)
        if key in seen:
            old_hash = seen[key]
            if old_hash is None:  # seen before entry hashes were kept: record it, don't redo it
                unchanged_backfill.append((e.feed_url, e.entry_id, url_key(url), e.entry_hash))
            elif old_hash != e.entry_hash and url not in batch_urls:
                batch_urls.add(url)
                new.append(e)
                edited += 1
            continue
        new_per_feed[e.feed_url] = new_per_feed.get(e.feed_url, 0) + 1
        if url in known:
            unchanged_backfill.append((e.feed_url, e.entry_id, known[url], e.entry_hash))
            continue
        if url in batch_urls:
            continue
        batch_urls.add(url)
        new.append(e)
    fetched = [_with_overlap(o, states.get(o.feed_url), new_per_feed.get(o.feed_url, 0)) for o in fetched]
    for o in fetched:
        if o.status == "failed":
            log.warning("feed %s: %s", o.feed_url, o.error)
        elif o.warning:
            log.warning("feed %s: %s", o.feed_url, o.warning)
    outcomes = fetched + outcomes
    failures = [Failure("feed", o.feed_url, o.error or "failed", o.feed_url)
                for o in outcomes if o.status == "failed"]
    with open_store(config) as store:
        store.record_feed_outcomes(outcomes, {f.url: f.name for f in config.feeds}, now,
                                   backoff_hours=config["health.backoff_hours"])
        store.record_failures(run_id, failures, now)
        store.mark_entries_seen(unchanged_backfill)
    count = {s: sum(1 for o in outcomes if o.status == s) for s in ("ok", "not_modified", "failed", "deferred")}
    log.info("feeds: %d ok, %d not modified, %d failed, %d backing off; %d entries, %d new, %d edited",
             count["ok"], count["not_modified"], count["failed"], count["deferred"], len(entries),
             len(new) - edited, edited)
    return FeedsResult(tuple(outcomes), tuple(new), len(entries))


def _outlet(config: Config, entry: FeedEntry, feed_titles: dict[str, str | None]) -> str:
    for f in config.feeds:
        if f.url == entry.feed_url and f.name:
            return f.name
    return feed_titles.get(entry.feed_url) or site_of(entry.link or entry.feed_url)


@dataclass(frozen=True)
class PageText:
    """What a fetched page contributes to an article."""

    text: str | None  # None: keep the feed's text
    title: str | None
    author: str | None
    language: str | None
    date: datetime | None
    error: str | None  # why the page's text was not used
    extraction_failed: bool
    extractor: str | None
    notes: tuple[str, ...]
    canonical: str | None  # the page's rel=canonical, when it points to the same site
    site_name: str | None = None


_CANONICAL = re.compile(rb"""<link\b[^>]*\brel\s*=\s*["']?canonical["']?[^>]*>""", re.IGNORECASE)
_HREF = re.compile(rb"""\bhref\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


def same_site_canonical(html: bytes, page_url: str) -> str | None:
    """The page's ``<link rel="canonical">``, canonicalised, when it stays on the page's site."""
    head = html[:200_000]
    for tag in _CANONICAL.findall(head):
        m = _HREF.search(tag)
        if not m:
            continue
        target = urljoin(page_url, m.group(1).decode("utf-8", "replace").strip())
        if urlsplit(target).scheme in ("http", "https") and site_of(target) == site_of(page_url):
            return canonical_url(target)
    return None


def page_text(config: Config, fetched, entry_title: str, feed_text: str) -> PageText:
    """Extract a fetched page and decide whether its text beats the feed's."""
    extracted = extract_article(fetched)
    canonical = same_site_canonical(fetched.content, fetched.url)
    declared = declared_date(fetched.content)
    if extracted is None:
        return PageText(None, None, None, None, declared, "no text could be extracted from the page", True,
                        None, (), canonical)
    text = strip_leading_title(extracted.text, entry_title)
    extractor, notes = extracted.extractor, extracted.rejected
    if len(text) >= config["extract.min_chars"] or len(text) > len(feed_text):
        return PageText(text, extracted.title, extracted.author, extracted.language, declared or extracted.date,
                        None, False, extractor, notes, canonical, extracted.sitename)
    return PageText(None, extracted.title, extracted.author, extracted.language, declared or extracted.date,
                    f"page text too short ({len(text)} chars), used the feed's content", False, extractor,
                    notes + (f"{extractor}: {len(text)} chars, shorter than the feed's text",), canonical,
                    extracted.sitename)


def build_article(config: Config, client: HttpClient | None, entry: FeedEntry, outlet: str,
                  now: datetime, robots: RobotsPolicy | None = None,
                  clock: StageClock | None = None) -> tuple[Article, list[str], Failure | None]:
    """Fetch and extract one entry's page, falling back to the feed's own text.

    Returns the article, the other URLs it was reached under (the feed's link, the URL after
    redirects, its same-site rel=canonical), and a failure to record (or None).
    """
    feed_text = entry.content if len(entry.content) > len(entry.summary) else entry.summary
    url = entry.link or _entry_url(entry)
    canonical = _entry_url(entry)
    aliases: list[str] = []
    page: PageText | None = None
    stored: StoredPage | None = None
    page_error = failure = None
    if client is not None and entry.link and robots is not None and not robots.allowed(entry.link):
        page_error = "disallowed by robots.txt, used the feed's content"
    elif client is not None and entry.link:
        try:
            clock = clock or StageClock()
            with clock.timed("fetch"):
                fetched = client.fetch(entry.link)
            stored = StoredPage(fetched.url, fetched.content_type, fetched.content)
            with clock.timed("extract", cpu=True):
                page = page_text(config, fetched, entry.title, feed_text)
            page_error = page.error
            if page.extraction_failed:
                failure = Failure("extract", entry.link, page.error, entry.feed_url)
            final = canonical_url(fetched.url)
            if page.canonical and page.canonical != canonical:
                aliases.append(canonical)
                canonical = page.canonical  # one id for the article, whichever URL reached it
            if final != canonical:
                aliases.append(final)
        except FetchError as exc:
            page_error = exc.reason
            failure = Failure("article", entry.link, exc.reason, entry.feed_url)
        except AiwatchError as exc:  # pragma: no cover - defensive: bad input from the page
            page_error = str(exc)
            failure = Failure("article", entry.link, str(exc), entry.feed_url)
    use_page = page is not None and page.text is not None
    text = page.text if use_page else feed_text
    published, date_source, date_flags = choose_published(entry.published, page.date if page else None, now)
    article = Article(
        article_id=url_key(canonical), url=url, canonical_url=canonical, feed_url=entry.feed_url,
        entry_id=entry.entry_id, title=entry.title or (page.title if page else None) or "(untitled)", text=text,
        text_source="page" if use_page else "feed", author=entry.author or (page.author if page else None),
        published_at=published, fetched_at=now, language=page.language if page else None,
        content_hash=content_hash(text) if text else "", outlet=outlet, page_error=page_error,
        date_source=date_source, date_flags=date_flags,
        extractor=(page.extractor if use_page else "feed"), extraction_notes=page.notes if page else (),
        page=stored, site_name=page.site_name if page else None,
    )
    return article, aliases, failure


def reextract(config: Config, since: datetime | None = None, now: datetime | None = None) -> tuple[int, int]:
    """Extract the stored raw pages again (after an upgrade or a settings change), without
    fetching. Changed texts replace the old ones; their passages are embedded and scored anew.
    Returns (pages checked, articles changed)."""
    from .http import Fetched
    now = now or utcnow()
    run_id = "reextract-" + now.strftime("%Y%m%dT%H%M%SZ")
    checked, rows, psg = 0, [], []
    with open_store(config) as store:
        for aid, url, ctype, html in store.stored_pages(since):
            checked += 1
            row = store.article_for_update(aid)
            if row is None:
                continue
            (a_url, canon, feed_url, entry_id, title, text, source, author, published, fetched_at, language,
             outlet, page_error, date_source, date_flags) = row
            page = page_text(config, Fetched(url, url, 200, {"content-type": ctype}, html), title or "", "")
            if page.text is None or page.text == text:
                continue
            article = Article(aid, a_url, canon, feed_url, entry_id, title, page.text, "page", author, published,
                              fetched_at, page.language or language, content_hash(page.text), outlet, None,
                              date_source, tuple(date_flags or ()), page.extractor, page.notes)
            rows.append((article, None, ()))
            for no, ptext in enumerate(passages(title, page.text, max_words=config["embed.chunk_words"],
                                                max_passages=config["embed.max_chunks"])):
                psg.append(Passage(aid, no, ptext, text_hash(ptext)))
        if rows:
            store.save_articles(rows, psg, run_id)
    if rows:
        embed_passages(config, run_id, now)
        score_articles(config, run_id, now)
    log.info("reextract: %d stored pages checked, %d articles changed", checked, len(rows))
    return checked, len(rows)


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


class EmbedBehind:
    """Embeds stored passages on background threads while the caller goes on fetching and
    extracting. Extraction is Python (one core at a time, under the GIL); the model's
    inference releases the GIL. One worker per core, each running the model single-threaded:
    measured faster than one worker with a 2-thread model, whose threads wait on each other
    whenever the extracting thread takes a core. A bounded queue keeps memory flat; the embed
    stage afterwards picks up anything left (a failure here is logged and left to it)."""

    def __init__(self, config: Config, now: datetime, store: Store, workers: int | None = None):
        self.config, self.now, self.store = config, now, store
        self.done = 0
        self.failed: str | None = None
        self._submitted: set[str] = set()
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue(maxsize=4)
        torch = config["embed.backend"] == "torch"  # torch runs one call at a time: one worker, its own threads
        self._model_threads = None if torch else 1
        count = 1 if torch else (workers or config["embed.threads"] or os.cpu_count() or 1)
        self._threads = [threading.Thread(target=self._work, name=f"aiwatch-embed-{i}", daemon=True)
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
        with self._lock:
            own = Store(self.store.con.cursor(), self.store.path, read_only=False)  # this thread's connection
        try:
            while (items := self._queue.get()) is not None:
                if self.failed is not None:
                    continue
                try:
                    count = embed_chunk(self.config, items, self.now, threads=self._model_threads, store=own)
                    with self._lock:
                        self.done += count
                except Exception as exc:  # noqa: BLE001 - the embed stage retries and reports it
                    self.failed = f"{type(exc).__name__}: {exc}"
                    log.warning("embed while fetching stopped (%s); the embed stage will finish the work",
                                self.failed)
        finally:
            own.close()

    def close(self) -> int:
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()
        return self.done


def fetch_articles(config: Config, run_id: str, entries: Sequence[FeedEntry],
                   now: datetime | None = None) -> ArticlesResult:
    """Fetch and extract the new entries' pages, dedup copies, store articles and passages.

    With ``embed.overlap`` the stored passages are embedded by background workers meanwhile."""
    now = now or utcnow()
    overlap = config["embed.overlap"] and bool(entries)
    # With overlap, one connection for the whole stage and a cursor of it per embedding
    # worker (DuckDB closing and reopening the file while another thread connects was seen
    # to crash the process). Without, a connection per batch, so readers get in between.
    shared = open_store(config) if overlap else None
    with nullcontext(shared) if shared is not None else open_store(config) as store:
        titles = dict(store.query("SELECT feed_url, title FROM core.feeds")[1])
    fetch_pages = config["fetch.articles"]
    failures: list[Failure] = []
    stored = duplicates = 0
    clock = StageClock()
    hashes = {(e.feed_url, e.entry_id): e.entry_hash for e in entries}
    model = embedder_model_id(config["embed.backend"])
    behind = EmbedBehind(config, now, shared) if shared is not None else None
    try:
        with (HttpClient.from_config(config) if fetch_pages else nullcontext()) as client, \
                track("articles", len(entries)) as bar, \
                ThreadPoolExecutor(max_workers=config["fetch.concurrency"]) as pool:
            robots = RobotsPolicy(client) if client is not None and config["fetch.robots"] else None
            def submit(batch: Sequence[FeedEntry]) -> list:
                return [pool.submit(build_article, config, client, e, _outlet(config, e, titles), now, robots,
                                    clock) for e in batch]

            order = interleave_hosts(entries)
            batches = [order[i:i + ARTICLE_BATCH] for i in range(0, len(order), ARTICLE_BATCH)]
            ahead = submit(batches[0]) if batches else []
            for number, batch in enumerate(batches):
                # the next batch is fetched while this one is deduplicated and stored (at most
                # two batches of pages in memory)
                futures, ahead = ahead, (submit(batches[number + 1]) if number + 1 < len(batches) else [])
                built = []
                for fut in futures:
                    article, aliases, failure = fut.result()
                    bar.advance()
                    if failure is not None:
                        failures.append(failure)
                        log.warning("article %s: %s", failure.url, failure.error)
                    built.append((article, aliases))
                with nullcontext(shared) if shared is not None else open_store(config) as store:
                    rows, psg, minhash_rows, dups = _dedup_batch(store, config, built, hashes, now, clock)
                    duplicates += dups
                    with clock.timed("store"):
                        store.save_articles(rows, psg, run_id, hashes)
                        store.save_minhash(minhash_rows)
                        store.record_failures(run_id, [f for f in failures if f.url in {a.url for a, _ in built}],
                                              now)
                        originals = {a.article_id for a, dup, _ in rows if dup is None}
                        todo = store.missing_embeddings(
                            sorted({p.text_hash for p in psg if p.article_id in originals}), model) if behind else []
                stored += len(rows)
                if behind is not None:
                    texts = {p.text_hash: p.text for p in psg}
                    behind.submit([(h, texts[h]) for h in todo])
    finally:
        embedded = behind.close() if behind is not None else 0
        if shared is not None:
            shared.close()
    log.info("articles: %d stored (%d copies of earlier ones), %d page failures%s",
             stored, duplicates, len(failures), f"; {embedded} passages embedded meanwhile" if behind else "")
    return ArticlesResult(stored, duplicates, tuple(failures), dict(clock.seconds), embedded)


def _dedup_batch(store: Store, config: Config, built, hashes, now: datetime, clock: StageClock):
    """Decide for each built article of a batch: another URL of a stored article (marked seen,
    not stored), an exact or near copy of an earlier article, or an original. Returns the rows
    to store, their passages, the MinHash rows of the originals and the count of copies."""
    with clock.timed("dedup"):
        known = store.known_urls([c for a, al in built for c in al])
        firsts = store.first_copy_of([a.content_hash for a, _ in built if a.content_hash])
        sigs = {a.article_id: (signature(a.text) if a.text else None) for a, _ in built}
        keys = {aid: band_keys(sig) if sig is not None else [] for aid, sig in sigs.items()}
        candidates = store.minhash_candidates(sorted({k for ks in keys.values() for k in ks}))
        rows, psg, minhash_rows = [], [], []
        duplicates = 0
        batch_sigs: list[tuple[str, np.ndarray]] = []
        # earliest copy first, so within a batch a reprint links to the original
        for article, aliases in sorted(built, key=lambda b: (b[0].published_at or now, b[0].url)):
            if any(known.get(al) not in (None, article.article_id) for al in aliases):
                # reached under another URL of an article we already have: same article
                other = next(known[al] for al in aliases if known.get(al))
                store.mark_entries_seen([(article.feed_url, article.entry_id, other,
                                          hashes.get((article.feed_url, article.entry_id)))])
                continue
            dup_of = firsts.get(article.content_hash) if article.content_hash else None
            sig, article_keys = sigs[article.article_id], keys[article.article_id]
            if dup_of is None and sig is not None:  # not an exact copy: a near one?
                dup_of = _near_copy(sig, article_keys, candidates) or next(
                    (aid for aid, other in batch_sigs if similarity(sig, other) >= NEAR_DUPLICATE), None)
            if dup_of == article.article_id:
                dup_of = None
            if dup_of is None:
                if article.content_hash:
                    firsts[article.content_hash] = article.article_id
                if sig is not None:
                    batch_sigs.append((article.article_id, sig))
                    minhash_rows.append((article.article_id, sig, article_keys))
            else:
                duplicates += 1
            rows.append((article, dup_of, aliases))
            for no, ptext in enumerate(passages(article.title, article.text,
                                                max_words=config["embed.chunk_words"],
                                                max_passages=config["embed.max_chunks"])):
                psg.append(Passage(article.article_id, no, ptext, text_hash(ptext)))
    return rows, psg, minhash_rows, duplicates


def _near_copy(sig: np.ndarray, keys: list[str], candidates: dict[str, list[tuple]]) -> str | None:
    """The earliest stored original sharing an LSH bucket whose signature is near enough."""
    seen: dict[str, tuple] = {}
    for key in keys:
        for aid, other, when in candidates.get(key, ()):
            seen.setdefault(aid, (when, aid, other))
    for _, aid, other in sorted(seen.values(), key=lambda c: c[:2]):  # oldest first
        if similarity(sig, other) >= NEAR_DUPLICATE:
            return aid
    return None


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


def embed_passages(config: Config, run_id: str, now: datetime | None = None, fan_out: FanOut = serial) -> int:
    """Embed every stored passage that has no embedding yet; returns how many were embedded.

    The work is cut into chunks, each stored in its own transaction, so a crash loses at most
    one chunk. ``fan_out`` runs the chunks: in turn here, or across Dask workers in the flow.
    """
    now = now or utcnow()
    model_id = embedder_model_id(config["embed.backend"])
    with open_store(config) as store:
        pending = store.texts_without_embedding(model_id)
    if not pending:
        log.info("embed: nothing new to embed")
        return 0
    chunk = max(config["embed.batch_size"] * 8, 64)
    chunks = [pending[i:i + chunk] for i in range(0, len(pending), chunk)]
    done = 0
    with track("embed", len(pending)) as bar:
        for count in fan_out(embed_chunk, [(config, part, now) for part in chunks]):
            done += count
            bar.advance(count)
    log.info("embed: %d passages embedded with %s", done, model_id)
    return done


def reembed(config: Config, now: datetime | None = None) -> tuple[int, int, int]:
    """Switch a database to the configured embedding backend: embed every stored passage with
    it, drop the other backends' vectors, and score the articles again with the new vectors.
    Returns (passages embedded, vectors dropped, article-theme pairs scored)."""
    now = now or utcnow()
    model = embedder_model_id(config["embed.backend"])
    embedded = embed_passages(config, "reembed", now)
    with open_store(config) as store:
        dropped = store.drop_other_models(model)
        store.sync_themes(config.themes, now)
        for theme in config.themes:
            store.clear_scores(theme)
    scored = score_articles(config, "reembed-" + now.strftime("%Y%m%dT%H%M%SZ"), now).scored
    log.info("reembed: %d passages embedded with %s, %d other vectors dropped", embedded, model, dropped)
    return embedded, dropped, scored


_WORDS = re.compile(r"\w+")


def title_overlap(a: str, b: str) -> float:
    """Jaccard overlap of two headlines' words."""
    x, y = set(_WORDS.findall(a.casefold())), set(_WORDS.findall(b.casefold()))
    return len(x & y) / len(x | y) if x and y else 0.0


def group_stories(config: Config, run_id: str, now: datetime | None = None) -> int:
    """Put each new article into a story: the story whose first article it is most like, within
    ``stories.window_hours`` of it, or a story of its own.

    Articles are compared with a story's *first* article only, never with its later members,
    so distinct events cannot chain into one story; and only with stories of the same time
    window, so the cost grows with the articles of a few days, not with the whole archive.
    Returns how many articles were placed.
    """
    window = timedelta(hours=config["stories.window_hours"]).total_seconds()
    threshold = config["stories.threshold"]
    model = embedder_model_id(config["embed.backend"])
    with open_store(config) as store:
        todo = store.ungrouped_articles(model)
        if not todo:
            return 0
        seeds = store.story_seeds(todo[0][2] - timedelta(seconds=window), todo[-1][2] + timedelta(seconds=window),
                                  model)
        placed = _place_in_stories(todo, seeds, window, threshold)
        store.save_story_members(placed)
    joined = sum(1 for a, s, _ in placed if a != s)
    log.info("stories: %d articles placed, %d joined an existing story", len(placed), joined)
    return len(placed)


def _place_in_stories(todo, seeds, window: float, threshold: float, block: int = 256) -> list[tuple[str, str, float]]:
    """(article, story, similarity) for each article of ``todo`` (oldest first).

    Similarities to the seeds are computed a block of articles at a time as one matrix
    product; the headline overlap (worth at most 0.25) is computed only for seeds whose
    cosine could still reach the threshold with it. An article that joins no story becomes a
    seed for the articles after it, in the same block too.
    """
    dim = len(todo[0][3])
    capacity = max(len(seeds) + len(todo), 1)
    vectors = np.zeros((capacity, dim), dtype=np.float32)
    times = np.zeros(capacity, dtype=np.float64)
    ids: list[str] = []
    titles: list[str] = []

    def add_seed(aid: str, title: str, when: datetime, vec: np.ndarray) -> None:
        vectors[len(ids)] = vec
        times[len(ids)] = when.timestamp()
        ids.append(aid)
        titles.append(title)

    for sid, s_title, s_when, s_vec in seeds:
        add_seed(sid, s_title, s_when, s_vec)
    placed = []
    for start in range(0, len(todo), block):
        part = todo[start:start + block]
        known = len(ids)
        sims = np.stack([v for _, _, _, v in part]) @ vectors[:known].T  # (block, seeds known before it)
        for row, (aid, title, when, vec) in enumerate(part):
            t = when.timestamp()
            cos = np.concatenate([sims[row], vectors[known:len(ids)] @ vec])  # + seeds from this block
            near = (np.abs(times[:len(ids)] - t) <= window) & (cos >= threshold - 0.25)
            best, best_sim = None, threshold
            for j in np.flatnonzero(near):
                sim = float(cos[j]) + 0.25 * title_overlap(title, titles[j])
                if sim >= best_sim:
                    best, best_sim = ids[j], sim
            if best is None:
                add_seed(aid, title, when, vec)
                placed.append((aid, aid, 1.0))
            else:
                placed.append((aid, best, round(best_sim, 4)))
    return placed


def _theme_vectors(store: Store, embedder, themes, now) -> list[ThemeVectors]:
    texts = sorted({t for th in themes for t in theme_texts(th)})
    hashes = {t: text_hash(t) for t in texts}
    have = store.embeddings_for(list(hashes.values()), embedder.model_id)
    missing = [t for t in texts if hashes[t] not in have]
    if missing:
        vecs = embedder.embed(missing)
        store.save_embeddings([hashes[t] for t in missing], vecs, embedder.model_id, now)
        have.update({hashes[t]: v for t, v in zip(missing, vecs)})
    by_text = {t: have[hashes[t]] for t in texts}
    return ThemeVectors.build_all(themes, by_text)


def score_articles(config: Config, run_id: str, now: datetime | None = None,
                   only: Sequence[str] | None = None) -> ScoreResult:
    """Score every unscored article against each theme version (or the themes named in
    ``only``); flag those over the threshold."""
    now = now or utcnow()
    scored = flagged = 0
    with open_store(config) as store:
        store.sync_themes(config.themes, now)
        todo = {t.name: store.articles_to_score(t) for t in config.themes if not only or t.name in only}
        if not any(todo.values()):
            log.info("score: nothing new to score")
            return ScoreResult(0, 0)
        embedder = embedder_for(config)
        tvs = _theme_vectors(store, embedder, config.themes, now)
        for tv in (tv for tv in tvs if tv.theme.name in todo):
            ids = todo[tv.theme.name]
            judged = {aid: ok for aid, _, ok in store.feedback(tv.theme.name)}
            if judged:
                tv = tv.with_feedback(*store.feedback_examples(tv.theme.name, embedder.model_id))
            for start in range(0, len(ids), 500):
                part = ids[start:start + 500]
                rows = store.passages_for(part)
                vecs = store.embeddings_for([r[3] for r in rows], embedder.model_id)
                by_article: dict[str, list[tuple[int, str, str]]] = {}
                for aid, no, text, h in rows:
                    by_article.setdefault(aid, []).append((no, text, h))
                matches = []
                for aid, items in by_article.items():
                    if any(h not in vecs for _, _, h in items):
                        continue  # not fully embedded yet (e.g. after a crash): the next run scores it
                    mat = np.stack([vecs[h] for _, _, h in items])
                    result = score_article(mat, [t for _, t, _ in items], tv)
                    no, text, _ = items[result.best]
                    is_flagged = judged.get(aid, result.score >= tv.theme.threshold)  # the user has the last word
                    matches.append(Match(aid, tv.theme.name, tv.theme.version, round(result.score, 4),
                                         is_flagged, text, no, result.nearest, result.terms))
                    flagged += is_flagged
                store.save_scores(matches, run_id, now)
                scored += len(matches)
    log.info("score: %d article-theme scores, %d flagged", scored, flagged)
    return ScoreResult(scored, flagged)


def write_digest(config: Config, run_id: str, now: datetime | None = None) -> tuple[Path, ...]:
    """The run's digest: the stories no earlier digest listed, written to digest.dir in the
    configured formats, then delivered by email and webhook (earlier failed deliveries first)."""
    from .delivery import deliver, retry_failed
    from .digest import collect_digest, record_digest, write_digest_files
    now = now or utcnow()
    with open_store(config) as store:
        data = collect_digest(store, config, now, run_id=run_id)
        files = write_digest_files(data, config.digest_dir, config["digest.formats"], store, config)
        record_digest(store, data, files)  # the files are written first: a failed send loses nothing
        retry_failed(store, config, now)
        deliver(store, config, data, now)
    return tuple(files)


def finish_run(config: Config, run_id: str, stats: RunStats, status: str, now: datetime | None = None,
               error: str | None = None) -> None:
    with open_store(config) as store:
        store.finish_run(stats, status, now or utcnow(), error)


def _rounded(timer: StageClock) -> dict[str, float]:
    return {k: round(v, 3) for k, v in timer.seconds.items()}


def _identity(fn: Callable) -> Callable:
    return fn


def run_pipeline(config: Config, *, now: datetime | None = None, stage: Stage = _identity,
                 with_digest: bool = True) -> RunResult:
    """Run the whole job once: feeds, articles, embed, score, digest.

    ``stage`` wraps each stage function before it is called; the Prefect flow passes a wrapper
    that turns each into a task. Library callers use the plain functions.
    """
    with write_lock(config.database, config["storage.lock_timeout"]):
        return _run_locked(config, now, stage, with_digest)


def _run_locked(config: Config, now: datetime | None, stage: Stage, with_digest: bool) -> RunResult:
    clock = (lambda: now) if now else utcnow
    timer = StageClock()

    def timed(name: str, fn: Callable) -> Callable:
        def call(*args, **kwargs):
            with timer.timed(name):
                return stage(fn)(*args, **kwargs)
        return call

    run_id = stage(start_run)(config, clock())
    stats = RunStats(run_id=run_id, feeds_total=len(config.feeds))
    try:
        feeds = timed("feeds", fetch_feeds)(config, run_id, clock())
        stats = replace(stats, feeds_ok=feeds.count("ok"), feeds_not_modified=feeds.count("not_modified"),
                        feeds_failed=feeds.count("failed"), feeds_deferred=feeds.count("deferred"),
                        entries_seen=feeds.entries_seen)
        arts = timed("articles", fetch_articles)(config, run_id, feeds.new_entries, clock())
        for key, seconds in arts.seconds.items():
            timer.add(key, seconds)
        timer.add("embed_overlapped", arts.embedded)
        stats = replace(stats, articles_new=arts.stored, articles_failed=len(arts.failures))
        embedded = timed("embed", embed_passages)(config, run_id, clock())
        stats = replace(stats, passages_embedded=embedded + arts.embedded)
        timed("stories", group_stories)(config, run_id, clock())
        scores = timed("score", score_articles)(config, run_id, clock())
        stats = replace(stats, articles_scored=scores.scored, flagged=scores.flagged)
    except Exception as exc:
        stage(finish_run)(config, run_id, replace(stats, stage_seconds=_rounded(timer)), "failed", clock(),
                          str(exc) if isinstance(exc, AiwatchError) else f"{type(exc).__name__}: {exc}")
        raise
    if stats.feeds_failed and stats.feeds_failed == stats.feeds_total - stats.feeds_deferred:
        status = "failed"
    elif stats.feeds_failed or stats.articles_failed:
        status = "partial"
    else:
        status = "ok"
    stage(finish_run)(config, run_id, replace(stats, stage_seconds=_rounded(timer)), status, clock())
    # After the run is recorded, so the digest shows its final statistics; a digest that
    # fails to render can be made again with `aiwatch digest --run RUN_ID`.
    files = timed("digest", write_digest)(config, run_id, clock()) if with_digest else ()
    stats = replace(stats, stage_seconds=_rounded(timer))
    with open_store(config) as store:
        store.record_run_timings(run_id, stats.stage_seconds, peak_rss_mb())
        flagged = store.query(
            "SELECT theme, title, score FROM matches WHERE run_id = ? ORDER BY theme, score DESC",
            [run_id])[1]
    log.info("run %s finished (%s): %d new articles, %d flagged", run_id, status, stats.articles_new,
             stats.flagged)
    return RunResult(stats, status, tuple(files), tuple(flagged))

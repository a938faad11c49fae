"""The feeds stage: fetch every due feed (conditional GET), parse it, record its health, and
hand on the entries never seen before and the ones the feed has edited since."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Sequence

from ..clock import utcnow
from ..config import Config
from ..errors import FeedError, FetchError
from ..http import HttpClient
from ..progress import track
from ..records import DroppedEntries, Failure, FeedEntry, FeedOutcome, FeedState, SeenEntry, describe_drops
from ..store import open_store
from ..urls import url_key
from .parse import FEED_ACCEPT, MAX_ENTRIES, NOTHING_TO_READ, parse_feed

log = logging.getLogger(__name__)

BACKOFF_SLACK = timedelta(minutes=30)  # a daily run a little early still fetches a feed due today


@dataclass(frozen=True)
class FeedsResult:
    outcomes: tuple[FeedOutcome, ...]
    new_entries: tuple[FeedEntry, ...]
    entries_seen: int
    # (feed_url, etag, last_modified) of the feeds that listed new entries: stored only once the
    # articles stage has stored them (:func:`keep_validators`), so a run that dies before that
    # fetches those feeds in full again instead of getting a 304 that hides the entries
    validators: tuple[tuple[str, str | None, str | None], ...] = ()

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


SAME_LINK = "same link as an earlier entry of the feed"


def fetch_one_feed(client: HttpClient, url: str, state: FeedState | None,
                   max_entries: int = MAX_ENTRIES) -> FeedOutcome:
    """One feed fetched (conditionally, with the stored validators) and parsed.

    Never raises: whatever goes wrong, even a bug, is a failed outcome naming the reason, so
    that one bad feed never ends the run.
    """
    try:
        return _fetch_and_parse(client, url, state, max_entries)
    except Exception as exc:
        log.debug("feed %s: unexpected error", url, exc_info=True)
        return FeedOutcome(url, "failed", error=f"unexpected error: {type(exc).__name__}: {exc}")


def _fetch_and_parse(client: HttpClient, url: str, state: FeedState | None, max_entries: int) -> FeedOutcome:
    try:
        fetched = client.fetch(url, etag=state.etag if state else None,
                               last_modified=state.last_modified if state else None, accept=FEED_ACCEPT)
    except FetchError as exc:
        return FeedOutcome(url, "failed", error=exc.reason, http_status=exc.status)
    if fetched.not_modified:
        return FeedOutcome(url, "not_modified", http_status=304)
    try:
        parsed = parse_feed(fetched, max_entries=max_entries)
    except FeedError as exc:
        return FeedOutcome(url, "failed", error=exc.reason, http_status=fetched.status)
    return FeedOutcome(url, "ok", entries=parsed.entries, warning=parsed.warning,
                       etag=fetched.headers.get("etag"), last_modified=fetched.headers.get("last-modified"),
                       http_status=fetched.status, title=parsed.title,
                       dropped=parsed.dropped + _not_kept(parsed.entries))


def _not_kept(entries: tuple[FeedEntry, ...]) -> tuple[DroppedEntries, ...]:
    """Entries the parser read that will not become articles: nothing to read, or a link that an
    earlier entry of the same feed already has (the article is the same)."""
    empty = sum(1 for e in entries if e.is_empty)
    urls = [e.canonical_url for e in entries if not e.is_empty]
    repeated = len(urls) - len(set(urls))
    return tuple(DroppedEntries(reason=reason, count=n)
                 for reason, n in ((NOTHING_TO_READ, empty), (SAME_LINK, repeated)) if n)


def is_due(state: FeedState | None, now: datetime) -> bool:
    return state is None or state.next_fetch_at is None or state.next_fetch_at <= now + BACKOFF_SLACK


def with_overlap(outcome: FeedOutcome, state: FeedState | None, new_entries: int) -> FeedOutcome:
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
    """Fetch every due feed, parse it, record its health, return the new and edited entries.

    A feed backing off after failures is skipped until it is due again (``force`` fetches it
    anyway). New entries are those never seen, plus seen ones the feed has since edited.
    """
    now = now or utcnow()
    urls = [f.url for f in config.feeds]
    with open_store(config) as store:
        states = store.feed_states(urls)
    due = [u for u in urls if force or is_due(states.get(u), now)]
    deferred = [FeedOutcome(u, "deferred") for u in urls if u not in set(due)]
    for o in deferred:
        state = states[o.feed_url]
        log.info("feed %s: backing off after %d failures, next try after %s", o.feed_url,
                 state.consecutive_failures, f"{state.next_fetch_at:%Y-%m-%d %H:%M}")
    fetched: list[FeedOutcome] = []
    with HttpClient.from_config(config) as client, track("feeds", len(due)) as bar, \
            ThreadPoolExecutor(max_workers=min(config.fetch.concurrency, max(1, len(due)))) as pool:
        # each thread runs in a copy of the caller's context, so the flow's logging context (and its
        # run logs) follow the work into the pool
        for fut in [pool.submit(copy_context().run, fetch_one_feed, client, u, states.get(u), config.fetch.max_feed_entries)
                    for u in due]:
            fetched.append(fut.result())
            bar.advance()
    entries = [e for o in fetched for e in o.entries]
    with open_store(config) as store:
        seen = store.seen_entries([(e.feed_url, e.entry_id) for e in entries])
        known = store.known_urls([e.canonical_url for e in entries])
    new: list[FeedEntry] = []
    batch_urls: set[str] = set()
    backfill: list[SeenEntry] = []
    edited = 0
    new_per_feed: dict[str, int] = {}
    for e in entries:
        if e.is_empty:
            continue
        key, url = (e.feed_url, e.entry_id), e.canonical_url
        if key in seen:
            old_hash = seen[key]
            if old_hash is None:  # seen before entry hashes were kept: record it, don't redo it
                backfill.append(SeenEntry(e.feed_url, e.entry_id, url_key(url), e.entry_hash))
            elif old_hash != e.entry_hash and url not in batch_urls:
                batch_urls.add(url)
                new.append(e)
                edited += 1
            continue
        new_per_feed[e.feed_url] = new_per_feed.get(e.feed_url, 0) + 1
        if url in known:
            backfill.append(SeenEntry(e.feed_url, e.entry_id, known[url], e.entry_hash))
            continue
        if url in batch_urls:
            continue
        batch_urls.add(url)
        new.append(e)
    fetched = [with_overlap(o, states.get(o.feed_url), new_per_feed.get(o.feed_url, 0)) for o in fetched]
    for o in fetched:
        if o.status == "failed":
            log.warning("feed %s: %s", o.feed_url, o.error)
        elif o.warning:
            log.warning("feed %s: %s", o.feed_url, o.warning)
        if o.dropped:  # a feed's own empty or repeated items are its business; any other loss is news
            level = logging.INFO if all(d.reason in (NOTHING_TO_READ, SAME_LINK) for d in o.dropped) else logging.WARNING
            log.log(level, "feed %s: %d entries read, %s", o.feed_url, len(o.entries), describe_drops(o.dropped))
    outcomes = fetched + deferred
    failures = [Failure("feed", o.feed_url, o.error or "failed", o.feed_url) for o in outcomes if o.status == "failed"]
    pending = {e.feed_url for e in new}
    held = tuple((o.feed_url, o.etag, o.last_modified) for o in outcomes if o.status == "ok" and o.feed_url in pending)

    def kept_back(o: FeedOutcome) -> FeedOutcome:
        if o.status != "ok" or o.feed_url not in pending:
            return o
        state = states.get(o.feed_url)
        return replace(o, etag=state.etag if state else None, last_modified=state.last_modified if state else None)

    with open_store(config) as store:
        store.record_feed_outcomes([kept_back(o) for o in outcomes], {f.url: f.name for f in config.feeds}, now,
                                   backoff_hours=config.health.backoff_hours)
        store.record_failures(run_id, failures, now)
        store.mark_entries_seen(backfill)
    count = {s: sum(1 for o in outcomes if o.status == s) for s in ("ok", "not_modified", "failed", "deferred")}
    log.info("feeds: %d ok, %d not modified, %d failed, %d backing off; %d entries, %d new, %d edited",
             count["ok"], count["not_modified"], count["failed"], count["deferred"], len(entries),
             len(new) - edited, edited)
    return FeedsResult(tuple(outcomes), tuple(new), len(entries), held)


def keep_validators(config: Config, validators: Sequence[tuple[str, str | None, str | None]]) -> None:
    """Store the conditional-GET validators held back by :func:`fetch_feeds`, once the articles
    stage has stored (or recorded the failure of) every new entry they listed."""
    if validators:
        with open_store(config) as store:
            store.save_feed_validators(validators)

"""Pages that failed for a reason that may pass, fetched again on later runs with backoff.

An article whose page timed out, answered 5xx or hit an unexpected error is stored at once with
the feed's text (nothing is lost), and its page is scheduled: the next runs fetch it again after
``RETRY_AFTER × 2^(attempts-1)``, at most ``MAX_ATTEMPTS`` times. When the page comes back, its text
replaces the feed's and the article is embedded and scored again; a retry never re-crashes a run.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Sequence

from ..clock import StageClock
from ..config import Config
from ..http import HttpClient
from ..ingest.robots import RobotsPolicy
from ..records import ArticleToStore, Failure, FeedEntry, PageRetry, Passage
from ..store import Store, open_store
from .build import article_passages, build_article

log = logging.getLogger(__name__)

RETRY_AFTER = timedelta(hours=1)
MAX_ATTEMPTS = 5
MAX_PER_RUN = 200  # a run after a long outage does not spend itself on old pages


def schedule_retries(store: Store, failed: Sequence[tuple[str, Failure]], now: datetime) -> None:
    """Schedule (article id, failure) pairs whose failure may pass; give up after MAX_ATTEMPTS."""
    failed = [(aid, f) for aid, f in failed if f.retry]
    if not failed:
        return
    before = {r.article_id: r.attempts for r in store.page_retries([aid for aid, _ in failed])}
    rows, given_up = [], []
    for aid, f in failed:
        attempts = before.get(aid, 0) + 1
        if attempts > MAX_ATTEMPTS:
            given_up.append(aid)
            log.info("page %s: giving up after %d attempts (%s); the article keeps the feed's text",
                     f.url, MAX_ATTEMPTS, f.error)
            continue
        rows.append(PageRetry(article_id=aid, url=f.url, feed_url=f.feed_url, attempts=attempts,
                              next_attempt_at=now + RETRY_AFTER * 2 ** (attempts - 1), last_error=f.error))
    store.schedule_page_retries(rows)
    store.drop_page_retries(given_up)


def retry_due_pages(config: Config, run_id: str, now: datetime, client: HttpClient,
                    robots: RobotsPolicy | None, clock: StageClock) -> tuple[int, int, list[Failure]]:
    """Fetch the pages due for another try; returns (tried, recovered, failures to record)."""
    with open_store(config) as store:
        due = store.page_retries(due_by=now, limit=MAX_PER_RUN)
        stored = {r.article_id: store.article(r.article_id) for r in due}
    if not due:
        return 0, 0, []
    updates: list[ArticleToStore] = []
    passages: list[Passage] = []
    failed: list[tuple[str, Failure]] = []
    recovered: list[str] = []
    for r in due:
        old = stored.get(r.article_id)
        if old is None:  # pruned meanwhile
            recovered.append(r.article_id)
            continue
        entry = FeedEntry(feed_url=old.feed_url, entry_id=old.entry_id, link=r.url, title=old.title,
                          summary=old.text if old.text_source == "feed" else "", content="",
                          published=old.published_at, author=old.author)
        built = build_article(config, client, entry, old.outlet, now, robots, clock)
        if built.failure is not None and built.failure.retry:
            failed.append((r.article_id, built.failure))
            continue
        recovered.append(r.article_id)
        new = built.article
        if new.text_source == "page" and new.text != old.text:
            updated = replace(old, text=new.text, text_source="page", language=new.language or old.language,
                              content_hash=new.content_hash, page_error=None, extractor=new.extractor,
                              extraction_notes=new.extraction_notes, page=new.page, site_name=new.site_name)
            updates.append(ArticleToStore(updated))
            passages += article_passages(updated, config.embed.chunk_words, config.embed.max_chunks)
    with open_store(config) as store:
        store.save_articles(updates, passages, run_id)  # changed texts: re-embedded and re-scored
        store.drop_page_retries(recovered)
        schedule_retries(store, failed, now)
    log.info("articles: %d failed pages tried again, %d came back with text", len(due), len(updates))
    return len(due), len(updates), [f for _, f in failed]

"""Frozen records passed between stages."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class FeedEntry:
    """One feed item, normalised."""

    feed_url: str
    entry_id: str  # guid, or a stable hash when the feed gives none
    link: str | None
    title: str
    summary: str  # plain text
    content: str  # plain text of the feed's full content, if it carries one
    published: datetime | None
    author: str | None = None

    @property
    def is_empty(self) -> bool:
        """Nothing to read and nowhere to go (no title, text or link): not worth an article."""
        return not (self.link or self.summary or self.content) and self.title == "(untitled)"

    @property
    def entry_hash(self) -> str:
        """Hash of what the feed says about the entry: a change means the entry was edited."""
        blob = "\x1f".join([self.link or "", self.title, self.summary, self.content])
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True)
class ParsedFeed:
    url: str
    title: str | None
    entries: tuple[FeedEntry, ...]
    warning: str | None = None  # a bozo feed that still yielded entries


@dataclass(frozen=True)
class Article:
    """An article ready to store: the best text we could get and where it came from."""

    article_id: str
    url: str
    canonical_url: str
    feed_url: str
    entry_id: str
    title: str
    text: str
    text_source: str  # "page" (extracted) or "feed" (the feed's own content)
    author: str | None
    published_at: datetime | None
    fetched_at: datetime
    language: str | None
    content_hash: str
    outlet: str
    page_error: str | None = None  # why the page text was not used, when it was not
    date_source: str | None = None  # feed | page | first_seen (see aiwatch.dates)
    date_flags: tuple[str, ...] = ()
    extractor: str | None = None  # what produced the text: an extractor's name, or "feed"
    extraction_notes: tuple[str, ...] = ()  # why earlier extractors were rejected
    page: "StoredPage | None" = None  # the raw page, kept compressed for re-extraction
    site_name: str | None = None


@dataclass(frozen=True)
class StoredPage:
    url: str
    content_type: str
    html: bytes


@dataclass(frozen=True)
class Passage:
    article_id: str
    passage_no: int  # 0 = title + lead
    text: str
    text_hash: str


@dataclass(frozen=True)
class Failure:
    stage: str  # "feed", "article", ...
    url: str
    error: str
    feed_url: str | None = None


@dataclass(frozen=True)
class FeedOutcome:
    feed_url: str
    status: str  # "ok", "not_modified", "failed"
    entries: tuple[FeedEntry, ...] = ()
    error: str | None = None
    warning: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    http_status: int | None = None
    title: str | None = None
    overlap: float | None = None  # share of this fetch's entries that the previous fetch had
    new_entries: int = 0  # entries not seen before


@dataclass(frozen=True)
class Match:
    article_id: str
    theme: str
    theme_version: str
    score: float
    flagged: bool
    passage: str
    passage_no: int
    nearest_example: str | None = None
    terms: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunStats:
    run_id: str
    feeds_total: int = 0
    feeds_ok: int = 0
    feeds_not_modified: int = 0
    feeds_failed: int = 0
    feeds_deferred: int = 0
    entries_seen: int = 0
    articles_new: int = 0
    articles_failed: int = 0
    passages_embedded: int = 0
    articles_scored: int = 0
    flagged: int = 0
    failures: tuple[Failure, ...] = field(default_factory=tuple)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # see runs.stage_seconds

"""Frozen records passed between the stages and returned by the store, built by keyword."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np

from .urls import canonical_url

# -- the feeds stage ---------------------------------------------------------------------


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
    # The link is shared with other entries of the feed that are not the same item (a
    # microblog's day page with one anchor per post, a podcast's home page): the page is
    # not this entry's own, so the article is the feed's text, under the entry's own id.
    shared_link: bool = False

    @property
    def is_empty(self) -> bool:
        """Nothing to read and nowhere to go (no title, text or link): not worth an article."""
        return not (self.link or self.summary or self.content) and self.title == "(untitled)"

    @property
    def canonical_url(self) -> str:
        """The entry's article URL, canonicalised; without a link of its own, an ``urn:`` made
        of the feed and the entry id (hashed: a URL's fragment would be cut off its identity)."""
        if self.link and not self.shared_link:
            return canonical_url(self.link)
        key = hashlib.sha256(f"{self.feed_url}\x1f{self.entry_id}".encode("utf-8", "replace")).hexdigest()[:24]
        return f"urn:aiwatch:entry:{key}"

    @property
    def entry_hash(self) -> str:
        """Hash of what the feed says about the entry: a change means the entry was edited."""
        blob = "\x1f".join([self.link or "", self.title, self.summary, self.content])
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True)
class DroppedEntries:
    """Entries of a feed that aiwatch did not keep, and why (one reason, one line)."""

    reason: str  # "over the 1,000-entry cap", "nothing to read (no title, link or text)", ...
    count: int

    def __str__(self) -> str:
        return f"{self.count} dropped ({self.reason})"


def describe_drops(drops: tuple[DroppedEntries, ...]) -> str | None:
    """"3 dropped (over the 1,000-entry cap); 1 dropped (...)", or None when nothing was dropped."""
    return "; ".join(str(d) for d in drops if d.count) or None


@dataclass(frozen=True)
class ParsedFeed:
    url: str
    title: str | None
    entries: tuple[FeedEntry, ...]
    warning: str | None = None  # a bozo feed that still yielded entries
    dropped: tuple[DroppedEntries, ...] = ()  # entries of the document not in ``entries``


@dataclass(frozen=True)
class FeedState:
    """What the store remembers of a feed between runs."""

    feed_url: str
    etag: str | None
    last_modified: str | None
    consecutive_failures: int
    next_fetch_at: datetime | None = None
    last_entry_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeedOutcome:
    feed_url: str
    status: str  # "ok", "not_modified", "failed", "deferred"
    entries: tuple[FeedEntry, ...] = ()
    error: str | None = None
    warning: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    http_status: int | None = None
    title: str | None = None
    overlap: float | None = None  # share of this fetch's entries that the previous fetch had
    new_entries: int = 0  # entries not seen before
    dropped: tuple[DroppedEntries, ...] = ()  # entries of the feed not kept, by reason

    @property
    def dropped_count(self) -> int:
        return sum(d.count for d in self.dropped)


@dataclass(frozen=True)
class SeenEntry:
    """An entry handled before: which article it became, and the entry hash it had then."""

    feed_url: str
    entry_id: str
    article_id: str
    entry_hash: str | None


# -- the articles stage ------------------------------------------------------------------


@dataclass(frozen=True)
class StoredPage:
    """A raw page as fetched, kept compressed for re-extraction."""

    url: str
    content_type: str
    html: bytes
    article_id: str = ""  # set when read back from the store


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
    date_source: str | None = None  # feed | page | first_seen (see aiwatch.articles.dates)
    date_flags: tuple[str, ...] = ()
    extractor: str | None = None  # what produced the text: an extractor's name, or "feed"
    extraction_notes: tuple[str, ...] = ()  # why earlier extractors were rejected; whether extra ones ran
    extraction_agreement: float | None = None  # extract.method agree: the text's agreement with the other extractors
    page: StoredPage | None = None  # the raw page, kept compressed for re-extraction
    site_name: str | None = None


@dataclass(frozen=True)
class Failure:
    stage: str  # "feed", "article", "extract", ...
    url: str
    error: str
    feed_url: str | None = None
    retry: bool = False  # worth trying again on a later run (a timeout, a 5xx, an unexpected error)


@dataclass(frozen=True)
class PageRetry:
    """A page to fetch again on a later run (its article keeps the feed's text meanwhile)."""

    article_id: str
    url: str
    feed_url: str | None
    attempts: int
    next_attempt_at: datetime
    last_error: str


@dataclass(frozen=True)
class BuiltArticle:
    """One entry's article, the other URLs it was reached under, and a failure to record."""

    article: Article
    aliases: tuple[str, ...] = ()
    failure: Failure | None = None


@dataclass(frozen=True)
class ArticleToStore:
    """An article the dedup step decided to store: an original, or a copy of ``duplicate_of``."""

    article: Article
    duplicate_of: str | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Passage:
    article_id: str
    passage_no: int  # 0 = title + lead
    text: str
    text_hash: str


@dataclass(frozen=True)
class Signature:
    """An original's MinHash signature and its LSH bucket keys, to store."""

    article_id: str
    signature: np.ndarray
    band_keys: tuple[str, ...]


@dataclass(frozen=True)
class ArticleRef:
    article_id: str
    title: str


@dataclass(frozen=True)
class StoredSignature:
    """A stored original's MinHash signature, found through a shared LSH bucket."""

    article_id: str
    signature: np.ndarray
    when: datetime


# -- relevance ---------------------------------------------------------------------------


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
class StoryCandidate:
    """An article (or a story's first article) with its title + lead vector, for grouping."""

    article_id: str
    title: str
    when: datetime
    vector: np.ndarray


@dataclass(frozen=True)
class Placement:
    article_id: str
    story_id: str  # the story's first article (the article itself when it starts one)
    similarity: float


@dataclass(frozen=True)
class Judgement:
    """A user's verdict on an article for a theme (``aiwatch feedback``)."""

    article_id: str
    theme: str
    relevant: bool


@dataclass(frozen=True)
class JudgedArticle:
    """A judged article with its text, usable as a labelled item for calibration."""

    article_id: str
    title: str
    text: str
    feed_url: str
    theme: str
    relevant: bool


@dataclass(frozen=True)
class SearchHit:
    score: float
    title: str
    date: date | None
    outlet: str | None
    url: str
    passage: str
    article_id: str = ""


@dataclass(frozen=True)
class ArticleCard:
    """What a list shows of a stored article."""

    article_id: str
    title: str | None
    url: str
    outlet: str | None
    published_at: datetime | None


@dataclass(frozen=True)
class ReviewMatch:
    """A scored article shown for review in the web app: flagged, or judged by the user."""

    article_id: str
    theme: str
    score: float
    flagged: bool
    title: str | None
    url: str
    outlet: str | None
    published_at: datetime | None
    fetched_at: datetime
    passage: str | None
    nearest_example: str | None
    terms: tuple[str, ...]
    judgement: bool | None = None  # the user's verdict, when there is one
    judged_at: datetime | None = None


# -- runs and reports --------------------------------------------------------------------


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
    stage_seconds: dict[str, float] = field(default_factory=dict)  # see runs.stage_seconds


@dataclass(frozen=True)
class RunRow:
    """A run as the web app lists it: the ``runs`` view's row and its failures."""

    run_id: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    counts: dict[str, int | None]  # feeds_total, articles_new, flagged, ...
    stage_seconds: dict[str, float]
    error: str | None = None
    peak_rss_mb: float | None = None
    failures: tuple[Failure, ...] = ()


@dataclass(frozen=True)
class Flagged:
    """A flagged article of one run, as the command line and the run summary show it."""

    theme: str
    title: str
    score: float


@dataclass(frozen=True)
class FlaggedMatch:
    """A flagged article for a theme, with what explains it: a digest candidate."""

    article_id: str
    title: str | None
    url: str
    outlet: str | None
    published_at: datetime | None
    score: float
    passage: str | None
    terms: tuple[str, ...]
    example: str | None = None  # the theme's text the article's vector was nearest to


@dataclass(frozen=True)
class StoryMember:
    story_id: str
    article_id: str
    outlet: str
    url: str


@dataclass(frozen=True)
class FeedHealthRow:
    feed_url: str
    name: str | None
    last_status: str | None
    consecutive_failures: int
    last_error: str | None
    last_new_at: datetime | None
    first_seen_at: datetime | None
    recovered_at: datetime | None
    next_fetch_at: datetime | None
    entries_dropped: int = 0  # entries of the last full fetch that were not kept
    dropped_detail: str | None = None  # "3 dropped (over the 1,000-entry cap); ..."


@dataclass(frozen=True)
class AtomEntry:
    article_id: str
    theme: str
    title: str | None
    url: str
    outlet: str | None
    score: float
    passage: str | None
    flagged_at: datetime
    published_at: datetime | None
    terms: tuple[str, ...] = ()
    example: str | None = None


@dataclass(frozen=True)
class PendingDelivery:
    """An earlier digest whose delivery on ``channel`` failed, with the files it wrote."""

    digest_id: str
    channel: str
    files: tuple[str, ...]

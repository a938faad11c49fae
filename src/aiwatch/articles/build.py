"""Building one article from a feed entry: its page fetched and extracted, or the feed's own text."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from ..clock import StageClock
from ..config import Config, ExtractSettings
from ..errors import AiwatchError, FetchError
from ..http import Fetched, HttpClient
from ..ingest.robots import RobotsPolicy
from ..records import Article, BuiltArticle, Failure, FeedEntry, Passage, StoredPage
from ..text import content_hash, passages, text_hash
from ..urls import canonical_url, url_key
from .dates import choose_published
from .extract import extract_article, strip_leading_title
from .page import Page
from .workers import extract_page

log = logging.getLogger(__name__)


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
    agreement: float | None = None  # extract.method agree: the text's agreement with the other extractors


def page_text(settings: ExtractSettings, fetched: Fetched, entry_title: str, feed_text: str) -> PageText:
    """Extract a fetched page and decide whether its text beats the feed's."""
    page = Page.from_fetched(fetched)
    min_chars = settings.min_chars
    extracted = extract_article(page, min_chars, settings.method, settings.agreement)
    if extracted is None:
        return PageText(text=None, title=None, author=None, language=None, date=page.declared_date,
                        error="no text could be extracted from the page", extraction_failed=True, extractor=None,
                        notes=(), canonical=page.canonical)
    text = strip_leading_title(extracted.text, entry_title)
    use = len(text) >= min_chars or len(text) > len(feed_text)
    notes = extracted.rejected
    if not use:
        notes += (f"{extracted.extractor}: {len(text)} chars, shorter than the feed's text",)
    return PageText(text=text if use else None, title=extracted.title, author=extracted.author,
                    language=extracted.language, date=page.declared_date or extracted.date,
                    error=None if use else f"page text too short ({len(text)} chars), used the feed's content",
                    extraction_failed=False, extractor=extracted.extractor, notes=notes, canonical=page.canonical,
                    site_name=extracted.sitename, agreement=extracted.agreement)


def build_article(config: Config, client: HttpClient | None, entry: FeedEntry, outlet: str, now: datetime,
                  robots: RobotsPolicy | None = None, clock: StageClock | None = None) -> BuiltArticle:
    """Fetch and extract one entry's page, falling back to the feed's own text.

    Returns the article, the other URLs it was reached under (the feed's link, the URL after
    redirects, its same-site rel=canonical), and a failure to record (or None).
    """
    feed_text = entry.content if len(entry.content) > len(entry.summary) else entry.summary
    url = entry.link or entry.canonical_url
    canonical = entry.canonical_url
    aliases: list[str] = []
    page: PageText | None = None
    stored: StoredPage | None = None
    page_error = failure = None
    clock = clock or StageClock()
    if entry.shared_link:
        page_error = "other entries of the feed link to the same page, used the feed's content"
    elif client is not None and entry.link:
        try:
            if robots is not None and not robots.allowed(entry.link):
                page_error = "disallowed by robots.txt, used the feed's content"
            else:
                with clock.timed("fetch"):
                    fetched = client.fetch(entry.link)
                stored = StoredPage(fetched.url, fetched.content_type, fetched.content)
                page, cpu_seconds = extract_page(config, fetched, entry.title, feed_text)  # see workers.py
                clock.add("extract", cpu_seconds)
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
            failure = Failure("article", entry.link, exc.reason, entry.feed_url, retry=exc.transient)
        except AiwatchError as exc:  # bad input from the page
            page_error = str(exc)
            failure = Failure("article", entry.link, str(exc), entry.feed_url)
        except Exception as exc:  # noqa: BLE001 - nothing from the network may end a run: recorded, retried
            log.debug("article %s: unexpected error", entry.link, exc_info=True)
            page, stored, aliases, canonical = None, None, [], entry.canonical_url
            page_error = f"unexpected error: {type(exc).__name__}: {exc}"
            failure = Failure("article", entry.link, page_error, entry.feed_url, retry=True)
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
        extraction_agreement=page.agreement if use_page else None, page=stored, site_name=page.site_name if page else None,
    )
    return BuiltArticle(article, tuple(aliases), failure)


def article_passages(article: Article, chunk_words: int, max_chunks: int) -> list[Passage]:
    """The passages an article is embedded and scored by (title + lead first)."""
    return [Passage(article.article_id, no, text, text_hash(text))
            for no, text in enumerate(passages(article.title, article.text, max_words=chunk_words,
                                               max_passages=max_chunks))]

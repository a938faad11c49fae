"""Feed parsing: bytes we fetched in, normalised entries out. No network here.

RSS 0.9x, 1.0 (RDF) and 2.0 and Atom 0.3 and 1.0 are read by feedparser, JSON Feed 1.0 and 1.1
by :mod:`aiwatch.jsonfeed`. Feed bodies are untrusted: before feedparser sees one,
:func:`aiwatch.feedbody.prepare_xml` decodes it, drops its DOCTYPE (so no entity is ever
expanded and no DTD or external entity is ever fetched or read) and repairs what commonly
breaks a strict parse. feedparser gets the prepared bytes in a stream, never a string it
could take for a URL or a file name.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import logging
from datetime import datetime, timezone

import feedparser

from ..errors import FeedError
from .body import GZIP_MAGIC, MAX_DECOMPRESSED_BYTES, BodyError, gunzip_capped, prepare_xml
from ..http import Fetched
from .jsonfeed import JsonFeedError, looks_like_json, parse_json_feed
from ..records import FeedEntry, ParsedFeed
from ..text import html_to_text

log = logging.getLogger(__name__)

FEED_ACCEPT = ("application/atom+xml, application/rss+xml, application/rdf+xml, application/feed+json, "
               "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5")


def _when(entry) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            try:
                return datetime.fromtimestamp(calendar.timegm(value), tz=timezone.utc)
            except (OverflowError, ValueError, TypeError):
                continue
    return None


def _content_text(entry) -> str:
    parts = [c.get("value", "") for c in entry.get("content", []) or []]
    return html_to_text("\n".join(p for p in parts if p)) if parts else ""


def _stable_id(feed_url: str, link: str | None, title: str, summary: str, extra: str = "") -> str:
    parts = [feed_url, link or "", title, summary[:500]] + ([extra] if extra else [])
    blob = "\x1f".join(parts).encode("utf-8")
    return "sha:" + hashlib.sha256(blob).hexdigest()[:24]


def _entry(fetched: Fetched, guid: str | None, link: str | None, title: str, summary: str, content: str,
           published: datetime | None, author: str | None) -> FeedEntry | None:
    """One normalised entry. An entry with nothing to read and nowhere to go is still returned
    (the parser found it; :attr:`FeedEntry.is_empty` lets the pipeline skip it)."""
    empty = not (title or summary or content or link)
    guid = (guid or "").strip() or link or _stable_id(
        fetched.url, link, title, summary, published.isoformat() if empty and published else "")
    return FeedEntry(feed_url=fetched.requested_url, entry_id=guid, link=link,
                     title=title or (link or "(untitled)"), summary=summary, content=content,
                     published=published, author=author)


def _parse_json(fetched: Fetched, body: bytes) -> ParsedFeed:
    try:
        feed = parse_json_feed(body, fetched.url)
    except JsonFeedError as exc:
        raise FeedError(fetched.requested_url, str(exc)) from None
    entries = [_entry(fetched, i.entry_id, i.link, i.title, i.summary, i.content, i.published, i.author)
               for i in feed.items]
    return ParsedFeed(url=fetched.requested_url, title=feed.title, entries=tuple(e for e in entries if e))


def _parse_xml(fetched: Fetched, body: bytes) -> ParsedFeed:
    prepared = prepare_xml(body, fetched.content_type)
    # The body is now UTF-8 whatever it was, and says so; Content-Location is the base for
    # relative links (xml:base inside the document still applies).
    headers = {"content-location": fetched.url, "content-type": "application/xml; charset=utf-8"}
    # Every HTML fragment is reduced to plain text with html_to_text, so feedparser's own HTML
    # sanitising and URI rewriting inside content would be wasted work (about 4/5 of its time).
    try:
        doc = feedparser.parse(io.BytesIO(prepared.data), response_headers=headers, sanitize_html=False,
                               resolve_relative_uris=False)
    except Exception as exc:  # feedparser on hostile input: a bad feed must not stop the run
        log.debug("feedparser failed on %s", fetched.requested_url, exc_info=True)
        raise FeedError(fetched.requested_url, f"feed could not be parsed ({type(exc).__name__}: {exc})") from None
    bozo = bool(doc.get("bozo"))
    reason = doc.get("bozo_exception")
    reason_text = f"{type(reason).__name__}: {reason}" if reason is not None else "not a feed"
    version = doc.get("version") or ""
    entries = []
    for e in doc.get("entries", []):
        link = e.get("link") or None
        entry = _entry(fetched, e.get("id"), link, html_to_text(e.get("title", "")).strip(),
                       html_to_text(e.get("summary", "")).strip(), _content_text(e), _when(e),
                       e.get("author") or None)
        if entry is not None:
            entries.append(entry)
    if not entries:
        if not prepared.root:
            raise FeedError(fetched.requested_url,
                            f"not a feed: no XML element in the document "
                            f"(content-type {fetched.content_type or 'unknown'!r})")
        if not version and prepared.root in ("html", "body"):
            raise FeedError(fetched.requested_url,
                            f"not a feed: an HTML page (content-type {fetched.content_type or 'unknown'!r})")
        if bozo:
            raise FeedError(fetched.requested_url, f"malformed feed ({reason_text}), no entries found")
        if not version:
            raise FeedError(fetched.requested_url, f"not a feed (root element <{prepared.root}>, "
                                                   f"content-type {fetched.content_type or 'unknown'!r})")
    problems = [f"feed is not well-formed but yielded entries ({reason_text})"] if bozo and entries else []
    if prepared.note and entries:
        problems.append(prepared.note)
    feed_title = html_to_text(doc.get("feed", {}).get("title", "")).strip() or None
    return ParsedFeed(url=fetched.requested_url, title=feed_title, entries=tuple(entries),
                      warning="; ".join(problems) or None)


def parse_feed(fetched: Fetched) -> ParsedFeed:
    """Parse one fetched feed document (RSS, Atom, RDF or JSON Feed).

    Raises FeedError when the document yields no entries and is broken or is not a feed. A
    broken document that still yields entries comes back with a ``warning``.
    """
    body = fetched.content
    if body[:2] == GZIP_MAGIC:  # gzipped by the server without a Content-Encoding header
        try:
            body = gunzip_capped(body, MAX_DECOMPRESSED_BYTES)
        except BodyError as exc:
            raise FeedError(fetched.requested_url, str(exc)) from None
    if not body.strip():
        raise FeedError(fetched.requested_url, "empty document, no entries found")
    if looks_like_json(body, fetched.content_type):
        return _parse_json(fetched, body)
    return _parse_xml(fetched, body)

"""Feed parsing: bytes we fetched in, normalised entries out. No network here."""

from __future__ import annotations

import calendar
import hashlib
from datetime import datetime, timezone

import feedparser

from .errors import FeedError
from .http import Fetched
from .records import FeedEntry, ParsedFeed
from .text import html_to_text

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


def _stable_id(feed_url: str, link: str | None, title: str, summary: str) -> str:
    blob = "\x1f".join([feed_url, link or "", title, summary[:500]]).encode("utf-8")
    return "sha:" + hashlib.sha256(blob).hexdigest()[:24]


def parse_feed(fetched: Fetched) -> ParsedFeed:
    """Parse one fetched feed document; raises FeedError when it yields no entries and is broken."""
    headers = {"content-location": fetched.url}
    if fetched.content_type:
        headers["content-type"] = fetched.content_type
    doc = feedparser.parse(fetched.content, response_headers=headers, sanitize_html=True,
                           resolve_relative_uris=True)
    bozo = bool(doc.get("bozo"))
    reason = doc.get("bozo_exception")
    reason_text = f"{type(reason).__name__}: {reason}" if reason is not None else "not a feed"
    version = doc.get("version") or ""
    entries = []
    for e in doc.get("entries", []):
        link = e.get("link") or None
        title = html_to_text(e.get("title", "")).strip()
        summary = html_to_text(e.get("summary", "")).strip()
        content = _content_text(e)
        guid = (e.get("id") or "").strip() or link or _stable_id(fetched.url, link, title, summary)
        if not (title or summary or content or link):
            continue
        entries.append(FeedEntry(
            feed_url=fetched.requested_url, entry_id=guid, link=link, title=title or (link or "(untitled)"),
            summary=summary, content=content, published=_when(e), author=e.get("author") or None,
        ))
    if not entries:
        if bozo:
            raise FeedError(fetched.requested_url, f"malformed feed ({reason_text}), no entries found")
        if not version:
            raise FeedError(fetched.requested_url,
                            f"not a feed (content-type {fetched.content_type or 'unknown'!r})")
    warning = f"feed is not well-formed but yielded entries ({reason_text})" if bozo and entries else None
    feed_title = html_to_text(doc.get("feed", {}).get("title", "")).strip() or None
    return ParsedFeed(url=fetched.requested_url, title=feed_title, entries=tuple(entries), warning=warning)

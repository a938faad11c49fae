"""JSON Feed 1.0 and 1.1 (https://jsonfeed.org/version/1.1), which feedparser does not read.

:func:`parse_json_feed` turns the bytes of a JSON Feed into plain items; :mod:`aiwatch.feeds`
makes :class:`~aiwatch.records.FeedEntry` records of them the same way as for RSS and Atom.
"""

from __future__ import annotations

import calendar
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser

from ..text import html_to_text, normalize_space

JSON_CONTENT_TYPES = ("application/feed+json", "application/json")
_LEADING = re.compile(rb"^(?:\xef\xbb\xbf)?[ \t\r\n]*")


class JsonFeedError(ValueError):
    """The document is not valid JSON or not a JSON Feed; ``str()`` is the reason."""


@dataclass(frozen=True)
class JsonItem:
    entry_id: str | None
    link: str | None  # absolute http(s) URL
    title: str  # plain text
    summary: str  # plain text
    content: str  # plain text
    published: datetime | None
    author: str | None


@dataclass(frozen=True)
class JsonFeed:
    title: str | None
    items: tuple[JsonItem, ...]


def looks_like_json(data: bytes, content_type: str = "") -> bool:
    """True for a body that starts with ``{``, or one served as JSON that does not start with ``<``."""
    start = data[_LEADING.match(data).end():][:1]
    if start == b"{":
        return True
    media = (content_type or "").split(";")[0].strip().lower()
    return media in JSON_CONTENT_TYPES and start != b"<"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return ""


def _link(value: Any, base: str) -> str | None:
    raw = _text(value).strip()
    if not raw:
        return None
    try:
        url = urljoin(base, raw)
        scheme = urlsplit(url).scheme
    except ValueError:
        return None
    return url if scheme in ("http", "https") else None


def _date(value: Any) -> datetime | None:
    raw = _text(value).strip()
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw)  # RFC 3339, as the spec asks
    except ValueError:
        parsed = feedparser.datetimes._parse_date(raw)  # what feeds write instead
        if not parsed:
            return None
        try:
            return datetime.fromtimestamp(calendar.timegm(parsed), tz=timezone.utc)
        except (OverflowError, ValueError):
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


def _authors(obj: dict) -> str | None:
    people = obj.get("authors")
    if not isinstance(people, list):  # 1.0 has one "author"
        people = [obj.get("author")]
    names = [normalize_space(_text(p.get("name"))) for p in people if isinstance(p, dict)]
    names = [n for n in names if n]
    return ", ".join(names) or None


def _item(obj: dict, base: str, feed_author: str | None) -> JsonItem:
    content = html_to_text(_text(obj.get("content_html"))) or normalize_space(_text(obj.get("content_text")))
    return JsonItem(
        entry_id=_text(obj.get("id")).strip() or None,
        link=_link(obj.get("url"), base) or _link(obj.get("external_url"), base),
        title=html_to_text(_text(obj.get("title"))),
        summary=html_to_text(_text(obj.get("summary"))),
        content=content,
        published=_date(obj.get("date_published")) or _date(obj.get("date_modified")),
        author=_authors(obj) or feed_author,
    )


def _load(data: bytes) -> Any:
    try:
        try:
            return json.loads(data)  # UTF-8, -16 or -32, with or without a BOM
        except UnicodeDecodeError:
            return json.loads(data.decode("utf-8", "replace"))
    except json.JSONDecodeError as exc:
        raise JsonFeedError(f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:
        raise JsonFeedError(f"invalid JSON ({type(exc).__name__})") from None


def parse_json_feed(data: bytes, base_url: str) -> JsonFeed:
    """Parse a JSON Feed; relative URLs resolve against ``base_url`` (the feed's own URL)."""
    doc = _load(data)
    if not isinstance(doc, dict):
        raise JsonFeedError(f"not a JSON Feed (the JSON document is a {type(doc).__name__}, not an object)")
    version = _text(doc.get("version"))
    if "jsonfeed.org/version/" not in version:
        raise JsonFeedError("not a JSON Feed (JSON without a \"version\": \"https://jsonfeed.org/version/1.1\")")
    items = doc.get("items")
    if not isinstance(items, list):
        raise JsonFeedError("not a JSON Feed (\"items\" is missing or not a list)")
    feed_author = _authors(doc)
    return JsonFeed(
        title=html_to_text(_text(doc.get("title"))) or None,
        items=tuple(_item(obj, base_url, feed_author) for obj in items if isinstance(obj, dict)),
    )

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

from ..records import DroppedEntries
from ..text import html_to_text, normalize_space, strip_xml_illegal

JSON_CONTENT_TYPES = ("application/feed+json", "application/json")
_LEADING = re.compile(rb"^(?:\xef\xbb\xbf)?[ \t\r\n]*")
_BARE_VERSION = re.compile(r"^\s*v?1(?:\.[0-9]+)?\s*$")  # "1", "1.0", "1.1": the spec's number alone
_ITEM_KEYS = frozenset({"id", "url", "external_url", "title", "content_html", "content_text", "summary"})


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
    items: tuple[dict, ...]  # the item objects, for read_item
    author: str | None = None  # the feed's authors, for items that name none
    dropped: tuple[DroppedEntries, ...] = ()  # items that are not objects
    warning: str | None = None


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
    for key in ("authors", "author"):  # 1.1's list first, then 1.0's one author
        people = obj.get(key)
        if not isinstance(people, list):
            people = [people]
        names = [normalize_space(_text(p.get("name") if isinstance(p, dict) else p)) for p in people]
        names = [n for n in names if n]
        if names:
            return ", ".join(dict.fromkeys(names))
    return None


def read_item(obj: dict, base: str, feed_author: str | None = None) -> JsonItem:
    """One item object as plain text; relative URLs resolve against ``base``."""
    content = html_to_text(_text(obj.get("content_html"))) or normalize_space(_text(obj.get("content_text")))
    return JsonItem(
        entry_id=strip_xml_illegal(_text(obj.get("id"))).strip() or None,
        link=_link(obj.get("url"), base) or _link(obj.get("external_url"), base),
        title=html_to_text(_text(obj.get("title"))),
        summary=html_to_text(_text(obj.get("summary"))),
        content=content,
        published=_date(obj.get("date_published")) or _date(obj.get("date_modified")),
        author=_authors(obj) or feed_author,
    )


def _text_of(data: bytes) -> str:
    return data.decode(json.detect_encoding(data), "replace").lstrip("\ufeff")


def _load(data: bytes) -> Any:
    # strict=False: raw tabs and line breaks inside strings are common in hand-made feeds
    try:
        try:
            return json.loads(data, strict=False)  # UTF-8, -16 or -32, with or without a BOM
        except UnicodeDecodeError:
            return json.loads(data.decode("utf-8", "replace"), strict=False)
    except json.JSONDecodeError as exc:
        raise JsonFeedError(f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:
        raise JsonFeedError(f"invalid JSON ({type(exc).__name__})") from None


_ITEMS_START = re.compile(r'"items"\s*:\s*\[')
_BETWEEN_ITEMS = re.compile(r"[\s,]*")


def _truncated(data: bytes) -> dict | None:
    """The whole items of a JSON Feed cut off mid-way (a partial download), with the fields
    before its ``items``; None when there is no such item to read."""
    try:
        text = _text_of(data)
    except (LookupError, ValueError):
        return None
    start = _ITEMS_START.search(text)
    if start is None:
        return None
    decoder = json.JSONDecoder(strict=False)
    items, i = [], start.end()
    while True:
        i = _BETWEEN_ITEMS.match(text, i).end()
        try:
            item, i = decoder.raw_decode(text, i)
        except (ValueError, RecursionError):
            break
        items.append(item)
    try:
        head = decoder.decode(text[:start.start()].rstrip().rstrip(",") + "}")
    except (ValueError, RecursionError):
        head = {}
    if not isinstance(head, dict) or not any(isinstance(o, dict) and _ITEM_KEYS & o.keys() for o in items):
        return None
    return {**head, "items": items}


def _version_problem(doc: dict, items: list) -> str | None:
    """Why ``doc`` may not be a JSON Feed: None for a proper one, a warning for a bent one;
    raises JsonFeedError for JSON that is plainly something else."""
    version = _text(doc.get("version"))
    if "jsonfeed.org/version/" in version:
        return None
    looks_like_items = any(isinstance(i, dict) and _ITEM_KEYS & i.keys() for i in items)
    if _BARE_VERSION.match(version) or (not version and looks_like_items and "title" in doc):
        return f"JSON Feed with a non-standard version ({version or 'none'!r}); read as JSON Feed 1.1"
    raise JsonFeedError("not a JSON Feed (JSON without a \"version\": \"https://jsonfeed.org/version/1.1\")")


def parse_json_feed(data: bytes, base_url: str) -> JsonFeed:
    """Parse a JSON Feed; relative URLs resolve against ``base_url`` (the feed's own URL)."""
    cut = None
    try:
        doc = _load(data)
    except JsonFeedError as exc:
        doc = _truncated(data)
        if doc is None:
            raise
        cut = f"JSON Feed cut short ({str(exc)[:80]}); the {len(doc['items'])} whole items before the cut were read"
    if not isinstance(doc, dict):
        raise JsonFeedError(f"not a JSON Feed (the JSON document is a {type(doc).__name__}, not an object)")
    items = doc.get("items")
    if not isinstance(items, list):
        _version_problem(doc, [])  # refuses what is not a JSON Feed at all
        raise JsonFeedError("not a JSON Feed (\"items\" is missing or not a list)")
    warning = "; ".join(w for w in (cut, _version_problem(doc, items)) if w) or None
    objects = tuple(obj for obj in items if isinstance(obj, dict))
    others = len(items) - len(objects)
    return JsonFeed(
        title=html_to_text(_text(doc.get("title"))) or None,
        items=objects,
        author=_authors(doc),
        dropped=(DroppedEntries(reason="item is not a JSON object", count=others),) if others else (),
        warning=warning,
    )

"""Article extraction: a fetched page in, its main text and metadata out. No network here."""

from __future__ import annotations

import codecs
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone

import trafilatura

from .http import Fetched
from .text import normalize_space

log = logging.getLogger(__name__)

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.IGNORECASE)
_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9_\-:.]+)", re.IGNORECASE)
_HTML_LANG = re.compile(r"<html[^>]*\slang\s*=\s*[\"']?([A-Za-z]{2,3})", re.IGNORECASE)


@dataclass(frozen=True)
class Extracted:
    text: str
    title: str | None
    author: str | None
    date: datetime | None
    language: str | None
    sitename: str | None


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name.strip()).name
    except LookupError:
        return None


def decode_html(content: bytes, content_type: str = "") -> str:
    """Decode page bytes: the HTTP header's charset, then a <meta charset> anywhere in the head
    (it may come after byte 1,024), then UTF-8, then detection."""
    head_end = content.lower().find(b"</head>")
    head = content[: head_end if head_end > 0 else 65536]
    candidates = []
    m = _HEADER_CHARSET.search(content_type or "")
    if m:
        candidates.append(_codec(m.group(1)))
    m = _META_CHARSET.search(head)
    if m:
        candidates.append(_codec(m.group(1).decode("ascii", "replace")))
    candidates.append("utf-8")
    for codec in candidates:
        if not codec:
            continue
        try:
            return content.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
    try:
        from charset_normalizer import from_bytes
        best = from_bytes(content).best()
        if best is not None:
            return str(best)
    except ImportError:  # pragma: no cover - charset_normalizer ships with requests
        pass
    return content.decode("utf-8", errors="replace")


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _fold(text: str) -> str:
    return re.sub(r"\W+", " ", text.casefold()).strip()


def strip_leading_title(text: str, *titles: str | None) -> str:
    """Drop a first line that only repeats the headline (extractors keep the <h1>), so that
    copies of one story under different headlines have the same body."""
    first, _, rest = text.partition("\n")
    folded = _fold(first)
    if rest and folded and any(t and _fold(t) == folded for t in titles):
        return rest.lstrip()
    return text


def extract_article(fetched: Fetched) -> Extracted | None:
    """Main text and metadata of a fetched page, or None when nothing could be extracted."""
    html_text = decode_html(fetched.content, fetched.content_type)
    doc = trafilatura.bare_extraction(
        html_text, url=fetched.url, with_metadata=True, include_comments=False,
        include_tables=False, favor_precision=False, deduplicate=False,
    )
    if doc is None or not (doc.text or "").strip():
        return None
    lang = doc.language
    if not lang:
        m = _HTML_LANG.search(html_text[:4096])
        lang = m.group(1).lower() if m else None
    return Extracted(
        text=strip_leading_title(normalize_space(doc.text), doc.title),
        title=(doc.title or None),
        author=(doc.author or None),
        date=_parse_date(doc.date),
        language=lang,
        sitename=(doc.sitename or None),
    )

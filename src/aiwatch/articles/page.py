"""A fetched page, decoded once and parsed once, with what its markup says about itself.

:class:`Page` holds the page's text and its one lxml tree, parsed the way trafilatura parses
(``trafilatura.utils.load_html``), so the extractors get the tree instead of parsing again.
Title, author, site name, dates, the canonical link and the declared language are all read from
that tree with XPath; the only scan of raw bytes is the charset one, which must come before
decoding.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from functools import cached_property
from urllib.parse import urljoin, urlsplit

from lxml import etree
from trafilatura.utils import load_html

from ..charset import decode, http_charset
from ..http import Fetched
from ..text import normalize_space
from ..urls import canonical_url, site_of

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.IGNORECASE)
_DECLARED_DATE_NAMES = frozenset({"article:published_time", "datepublished", "og:published_time", "pubdate",
                                  "publish-date", "dc.date"})


def decode_html(content: bytes, content_type: str = "") -> str:
    """Page bytes as text: a BOM, valid UTF-8, the HTTP header's charset, then a
    ``<meta charset>`` anywhere in the head (it may come after byte 1,024), then a guess."""
    head_end = content.lower().find(b"</head>")
    m = _META_CHARSET.search(content[: head_end if head_end > 0 else 65536])
    meta = m.group(1).decode("ascii", "replace") if m else None
    return decode(content, [http_charset(content_type), meta]).text


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class Page:
    """One fetched page: ``html`` (decoded) and ``tree`` (parsed once; None when unparseable)."""

    def __init__(self, url: str, html: str):
        self.url = url
        self.html = html
        try:
            self.tree: etree._Element | None = load_html(html) if html.strip() else None
        except (etree.ParserError, ValueError, TypeError):
            self.tree = None

    @classmethod
    def from_fetched(cls, fetched: Fetched) -> "Page":
        return cls(fetched.url, decode_html(fetched.content, fetched.content_type))

    @property
    def is_binary(self) -> bool:
        """A file served as HTML (an image, a PDF, a zip): NUL or many control characters early on."""
        head = self.html[:4096]
        return "\x00" in head or sum(ch < " " and ch not in "\t\n\r\f" for ch in head) > len(head) // 20

    def _first(self, *xpaths: str, limit: int = 300) -> str | None:
        if self.tree is None:
            return None
        for xpath in xpaths:
            for value in self.tree.xpath(xpath):
                value = normalize_space(str(value))
                if value:
                    return value[:limit]
        return None

    @cached_property
    def title(self) -> str | None:
        return self._first('//meta[@property="og:title"]/@content', '//meta[@name="twitter:title"]/@content',
                           "//title/text()", "//h1//text()")

    @cached_property
    def author(self) -> str | None:
        author = self._first('//meta[@name="author"]/@content', '//meta[@property="article:author"]/@content',
                             '//meta[@name="parsely-author"]/@content', '//*[@rel="author"]//text()')
        return None if author and author.startswith(("http://", "https://")) else author  # often a profile URL

    @cached_property
    def site_name(self) -> str | None:
        return self._first('//meta[@property="og:site_name"]/@content', '//meta[@name="application-name"]/@content')

    @cached_property
    def declared_language(self) -> str | None:
        """The two- or three-letter code of ``<html lang>``."""
        m = re.match(r"[A-Za-z]{2,3}", self._first("/html/@lang") or "")
        return m.group(0).lower() if m else None

    @cached_property
    def declared_date(self) -> datetime | None:
        """The publication date the page declares in its meta tags, as written (htmldate, by
        design, drops future dates, so a page claiming one would otherwise go unnoticed)."""
        if self.tree is None:
            return None
        for meta in self.tree.iter("meta"):
            names = {(meta.get(a) or "").strip().lower() for a in ("property", "name", "itemprop")}
            if names & _DECLARED_DATE_NAMES:
                when = _parse_date(meta.get("content"))
                if when is not None:
                    return when
        return None

    @cached_property
    def date(self) -> datetime | None:
        """The page's date by htmldate's fast search (original date, not the last update)."""
        if self.tree is None:
            return None
        try:
            from htmldate import find_date
            return _parse_date(find_date(self.tree, extensive_search=False, original_date=True))
        except Exception:  # noqa: BLE001 - htmldate on odd markup; the feed's date is the first choice anyway
            return None

    @cached_property
    def canonical(self) -> str | None:
        """The page's ``<link rel="canonical">``, canonicalised, when it stays on the page's site."""
        if self.tree is None:
            return None
        for link in self.tree.iter("link"):
            if "canonical" not in (link.get("rel") or "").lower().split() or not link.get("href"):
                continue
            try:
                target = urljoin(self.url, link.get("href").strip())
                if urlsplit(target).scheme in ("http", "https") and site_of(target) == site_of(self.url):
                    return canonical_url(target)
            except ValueError:  # a malformed href (bad port, broken IPv6 literal): ignored
                continue
        return None


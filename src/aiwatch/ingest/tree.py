"""A second, tolerant reading of a feed document: lxml in recover mode, blind to namespaces.

feedparser reads real feeds well, but a few documents lose entries in it without a word: a
root in an unknown namespace or with a prefix (``<x:feed>``, ``<r:rss>``), or one item holding
an element feedparser mishandles (a ``<textInput>``, a GML position or a Creative Commons
licence inside an item raise inside feedparser, and the whole feed was lost). This module
counts the entries of a document as a reader sees them, every element named ``item`` or
``entry`` in any namespace that is not inside another one (so an RSS module's ``content:item``
or an ``<item>`` in an item's markup is not an entry), and reads each one from its child
elements by local name. :mod:`aiwatch.ingest.parse` keeps the entries feedparser missed and
counts what neither could read.

The bytes given here are :func:`aiwatch.ingest.body.prepare_xml`'s output: UTF-8 without a
DOCTYPE, so no entity is expanded and nothing is fetched; the parser is told so again.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urljoin, urlsplit

import feedparser
from lxml import etree

from ..text import html_to_text, normalize_space

FEED_ROOTS = frozenset({"rss", "rdf", "feed", "channel"})
ENTRY_NAMES = frozenset({"item", "entry"})
# Child elements by local name, in order of preference.
_TITLE = ("title",)
_SUMMARY = ("description", "summary", "abstract")
_CONTENT = ("encoded", "content", "body", "fullitem")
_DATES = ("pubdate", "published", "issued", "date", "created", "updated", "modified")
_AUTHORS = ("author", "creator")


@dataclass(frozen=True)
class TreeEntry:
    """One entry as read from the tree: plain text, an absolute http(s) link or None."""

    entry_id: str | None
    link: str | None
    title: str
    summary: str
    content: str
    published: datetime | None
    author: str | None


def local_name(node) -> str:
    """The lower-cased local name of an element ("" for comments and processing instructions);
    a prefix left undeclared (``atom:entry`` without its xmlns) is dropped too."""
    tag = node.tag
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1].lower()


def read_tree(data: bytes, base_url: str):
    """The root element of ``data`` parsed in recover mode, or None when nothing is left."""
    parser = etree.XMLParser(recover=True, resolve_entities=False, no_network=True, load_dtd=False,
                             remove_comments=True, remove_pis=True)
    try:
        return etree.fromstring(data, parser, base_url=base_url)
    except (etree.XMLSyntaxError, ValueError):
        return None


def entry_elements(root) -> list:
    """The document's entries: item/entry elements not inside another, under a feed's root."""
    if root is None or local_name(root) not in FEED_ROOTS:
        return []
    found, stack = [], [iter(root)]
    while stack:  # depth-first, in document order, not descending into an entry
        for child in stack[-1]:
            if local_name(child) in ENTRY_NAMES:
                found.append(child)
            elif len(child):
                stack.append(iter(child))
                break
        else:
            stack.pop()
    return found


def _namespace(el) -> str:
    return el.tag[1:].split("}", 1)[0] if el.tag.startswith("{") else ""


def feed_title(root) -> str | None:
    """The title of the feed (the root's or its channel's own ``title``)."""
    if root is None:
        return None
    for parent in [root] + [c for c in root if local_name(c) == "channel"]:
        for child in parent:
            if local_name(child) == "title":
                return _text(child) or None
    return None


def _text(el) -> str:
    """Plain text of an element: its markup (XHTML, or HTML left unescaped) reduced to text."""
    if len(el):
        inner = (el.text or "") + "".join(etree.tostring(c, encoding="unicode", with_tail=True) for c in el)
        return html_to_text(inner)
    return html_to_text(el.text or "")


def _http(url: str | None, base: str | None) -> str | None:
    url = (url or "").strip()
    if not url:
        return None
    try:
        absolute = urljoin(base or "", url)
        return absolute if urlsplit(absolute).scheme in ("http", "https") else None
    except ValueError:
        return None


def parse_date(raw: str) -> datetime | None:
    """A date as feeds write them (RFC 822, ISO 8601 and their variants), in UTC; None if unreadable."""
    parsed = feedparser.datetimes._parse_date(raw.strip()) if raw and raw.strip() else None
    if not parsed:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(parsed), tz=timezone.utc)
    except (OverflowError, ValueError, TypeError):
        return None


def _link(children: dict[str, list], el) -> str | None:
    for link in children.get("link", ()):
        href = link.get("href")
        if href is not None:  # Atom: the alternate link, or one without a rel
            if (link.get("rel") or "alternate").strip().lower() == "alternate":
                url = _http(href, link.base)
                if url:
                    return url
        else:
            url = _http(link.text, link.base)
            if url:
                return url
    for guid in children.get("guid", ()):
        if (guid.get("isPermaLink") or guid.get("ispermalink") or "true").strip().lower() != "false":
            url = _http(guid.text, None)
            if url and urlsplit(url).netloc:
                return url
    about = next((v for k, v in el.attrib.items() if k.rsplit("}", 1)[-1] == "about"), None)
    return _http(about, None)


def _author(children: dict[str, list]) -> str | None:
    for name in _AUTHORS:
        for el in children.get(name, ()):
            names = [c for c in el if local_name(c) == "name"]
            text = normalize_space("".join(names[0].itertext()) if names else "".join(el.itertext()))
            if text:
                return text
    return None


def read_entry(el) -> TreeEntry:
    """One entry element read by the local names of its children (namespaces ignored)."""
    # Children in the entry's own namespace come first: its <title> before a <media:title>.
    own = _namespace(el)
    children: dict[str, list] = {}
    for child in sorted((c for c in el if isinstance(c.tag, str)), key=lambda c: _namespace(c) != own):
        children.setdefault(local_name(child), []).append(child)

    def first_text(names: tuple[str, ...]) -> str:
        for name in names:
            for child in children.get(name, ()):
                text = _text(child)
                if text:
                    return text
        return ""

    entry_id = next((normalize_space("".join(c.itertext())) for name in ("guid", "id")
                     for c in children.get(name, ()) if "".join(c.itertext()).strip()), None)
    if entry_id is None:
        entry_id = next((v.strip() for k, v in el.attrib.items() if k.rsplit("}", 1)[-1] == "about" and v.strip()),
                        None)
    published = next((d for name in _DATES for c in children.get(name, ())
                      if (d := parse_date("".join(c.itertext())))), None)
    return TreeEntry(entry_id=entry_id, link=_link(children, el), title=first_text(_TITLE),
                     summary=first_text(_SUMMARY), content=first_text(_CONTENT), published=published,
                     author=_author(children))

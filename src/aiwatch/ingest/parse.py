"""Feed parsing: bytes we fetched in, normalised entries out. No network here.

RSS 0.9x, 1.0 (RDF) and 2.0 and Atom 0.3 and 1.0 are read by feedparser, JSON Feed 1.0 and 1.1
by :mod:`aiwatch.ingest.jsonfeed`. Feed bodies are untrusted: before feedparser sees one,
:func:`aiwatch.ingest.body.prepare_xml` decodes it, drops its DOCTYPE (so no entity is ever
expanded and no DTD or external entity is ever fetched or read) and repairs what commonly
breaks a strict parse. feedparser gets the prepared bytes in a stream, never a string it
could take for a URL or a file name.

No entry goes missing without a word. The same bytes are also read by :mod:`aiwatch.ingest.tree`
(lxml, recover mode, namespaces ignored), which counts the document's entries and reads the
ones feedparser missed or could not parse. An entry that raises while being normalised is
dropped alone; entries past ``max_entries`` are dropped; and every entry of the document that
is not kept is counted in ``ParsedFeed.dropped`` with its reason, for the feed's health row.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import logging
from collections import Counter
from dataclasses import replace
from datetime import datetime, timezone
from typing import Callable, Iterable
from urllib.parse import urlsplit

import feedparser

from ..errors import FeedError
from .body import GZIP_MAGIC, MAX_DECOMPRESSED_BYTES, BodyError, gunzip_capped, prepare_xml
from ..http import Fetched
from .jsonfeed import JsonFeedError, looks_like_json, parse_json_feed, read_item
from ..records import DroppedEntries, FeedEntry, ParsedFeed
from ..urls import canonical_url
from ..text import cut_at_word, html_to_text, normalize_space, strip_xml_illegal
from .tree import entry_elements, feed_title, read_entry, read_tree

log = logging.getLogger(__name__)

FEED_ACCEPT = ("application/atom+xml, application/rss+xml, application/rdf+xml, application/feed+json, "
               "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5")

MAX_ENTRIES = 1_000  # entries kept per feed and fetch (config: fetch.max_feed_entries)
# Caps on what one entry may store. The body cap (fetch.max_bytes) already bounds them all; these
# keep one entry from filling the database: a title is a line, a summary a few paragraphs.
MAX_TITLE_CHARS = 1_000
MAX_SUMMARY_CHARS = 20_000
MAX_CONTENT_CHARS = 200_000
MAX_AUTHOR_CHARS = 300
MAX_ID_CHARS = 1_000  # a longer guid is replaced by its hash
_TITLE_FROM_TEXT_CHARS = 100  # an entry without a title (a microblog post) is titled by its text
NOTHING_TO_READ = "nothing to read (no title, link or text)"
NOT_READ = "not read by either parser"


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
    return html_to_text("\n".join(p for p in parts if isinstance(p, str) and p)) if parts else ""


def _stable_id(feed_url: str, link: str | None, title: str, summary: str, extra: str = "") -> str:
    parts = [feed_url, link or "", title, summary[:500]] + ([extra] if extra else [])
    blob = "\x1f".join(parts).encode("utf-8", "replace")
    return "sha:" + hashlib.sha256(blob).hexdigest()[:24]


def _web_link(url) -> str | None:
    """``url`` if it is an http(s) URL the pipeline can use (canonicalise, fetch), else None.

    Feeds carry other links too (``at://`` and ``mailto:`` URIs, a port that is not a number):
    such an entry keeps its text and loses only the link, where one such link used to raise
    in the feeds stage and end the whole run.
    """
    if not isinstance(url, str):
        return None
    url = strip_xml_illegal(url).strip()
    try:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return None
        parts.port  # raises ValueError for a port that is not a number
        canonical_url(url)
    except ValueError:
        return None
    return url


def _title_from_text(text: str) -> str:
    """A title for an entry that has none: the start of its first line of text."""
    line = text.strip().split("\n", 1)[0] if text else ""
    return cut_at_word(line, _TITLE_FROM_TEXT_CHARS)


def _entry(fetched: Fetched, guid: str | None, link: str | None, title: str, summary: str, content: str,
           published: datetime | None, author: str | None) -> FeedEntry:
    """One normalised entry, its fields capped. An entry with nothing to read and nowhere to go
    is still returned (the parser found it; :attr:`FeedEntry.is_empty` lets the pipeline skip it)."""
    title = cut_at_word(title, MAX_TITLE_CHARS)
    summary = cut_at_word(summary, MAX_SUMMARY_CHARS)
    content = cut_at_word(content, MAX_CONTENT_CHARS)
    link = _web_link(link)
    author = cut_at_word(normalize_space(author), MAX_AUTHOR_CHARS) or None if isinstance(author, str) else None
    empty = not (title or summary or content or link)
    guid = strip_xml_illegal(guid).strip() if isinstance(guid, str) else ""
    if len(guid) > MAX_ID_CHARS:
        guid = "sha:" + hashlib.sha256(guid.encode("utf-8", "replace")).hexdigest()[:24]
    guid = guid or link or _stable_id(
        fetched.url, link, title, summary, published.isoformat() if empty and published else "")
    return FeedEntry(feed_url=fetched.requested_url, entry_id=guid, link=link,
                     title=title or _title_from_text(summary or content) or link or "(untitled)",
                     summary=summary, content=content, published=published, author=author)


class _Collector:
    """Entries kept in document order up to the cap, and the ones dropped, counted by reason."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self.entries: list[FeedEntry] = []
        self.dropped: Counter[str] = Counter()

    def add(self, make: Callable[[], FeedEntry]) -> None:
        """Normalise one entry; an exception drops this entry alone, with its reason."""
        if len(self.entries) >= self.max_entries:
            self.dropped[self.cap_reason] += 1
            return
        try:
            self.entries.append(make())
        except Exception as exc:  # one odd entry must not cost the feed its other entries
            log.debug("unreadable entry", exc_info=True)
            self.dropped[f"unreadable entry: {type(exc).__name__}: {str(exc)[:100]}"] += 1

    @property
    def cap_reason(self) -> str:
        return f"over the {self.max_entries:,}-entry cap"

    def drop(self, reason: str, count: int = 1) -> None:
        if count > 0:
            self.dropped[reason] += count

    def result(self) -> tuple[tuple[FeedEntry, ...], tuple[DroppedEntries, ...]]:
        drops = tuple(DroppedEntries(reason=r, count=n) for r, n in self.dropped.most_common())
        return tuple(self.entries), drops


def _json_entry(fetched: Fetched, obj: dict, feed_author: str | None) -> FeedEntry:
    i = read_item(obj, fetched.url, feed_author)
    return _entry(fetched, i.entry_id, i.link, i.title, i.summary, i.content, i.published, i.author)


def mark_shared_links(entries: tuple[FeedEntry, ...]) -> tuple[FeedEntry, ...]:
    """Mark the entries whose page is shared with other, different entries of the feed.

    Several entries behind one canonical URL are several items when their links differ by
    the fragment (posts anchored in a day page) or their titles differ (episodes all linking
    to a podcast's home page); each then becomes its own article from the feed's text. The
    same link and title twice is one item listed twice, and stays one article.
    """
    groups: dict[str, list[int]] = {}
    for i, e in enumerate(entries):
        if e.link:
            groups.setdefault(e.canonical_url, []).append(i)
    shared: dict[int, str] = {}  # entry -> its id (made from its text when the link was its only id)
    for members in groups.values():
        if len(members) > 1 and len({(entries[i].link, entries[i].title) for i in members}) > 1:
            ids = Counter(entries[i].entry_id for i in members)
            first: dict[tuple, str] = {}  # a repeat of an earlier (link, title) is that entry again
            for i in members:
                e = entries[i]
                own = _stable_id(e.feed_url, e.link, e.title, e.summary) if ids[e.entry_id] > 1 else e.entry_id
                shared[i] = first.setdefault((e.link, e.title), own)
    if not shared:
        return entries
    return tuple(replace(e, shared_link=True, entry_id=shared[i]) if i in shared else e
                 for i, e in enumerate(entries))


def _parse_json(fetched: Fetched, body: bytes, max_entries: int) -> ParsedFeed:
    try:
        feed = parse_json_feed(body, fetched.url)
    except JsonFeedError as exc:
        raise FeedError(fetched.requested_url, str(exc)) from None
    kept = _Collector(max_entries)
    for obj in feed.items:
        kept.add(lambda obj=obj: _json_entry(fetched, obj, feed.author))
    for d in feed.dropped:
        kept.drop(d.reason, d.count)
    entries, dropped = kept.result()
    return ParsedFeed(url=fetched.requested_url, title=feed.title, entries=mark_shared_links(entries),
                      warning=feed.warning,
                      dropped=dropped)


def _feedparser_entry(fetched: Fetched, e, element=None) -> FeedEntry:
    """An entry as feedparser read it; ``element``, the same entry in the tree, lends its link
    when feedparser found none usable (an RSS 1.0 ``rdf:about``, a link beside an ``at://`` one)."""
    alternates = [x.get("href") for x in e.get("links", []) or [] if isinstance(x, dict)
                  and x.get("rel", "alternate") == "alternate"]
    link = next((url for url in map(_web_link, [e.get("link")] + alternates) if url), None)
    if link is None and element is not None:
        link = _web_link(read_entry(element).link)
    return _entry(fetched, e.get("id"), link,
                  html_to_text(e.get("title", "")).strip(), html_to_text(e.get("summary", "")).strip(),
                  _content_text(e), _when(e), e.get("author") or None)


def _tree_entry(fetched: Fetched, element) -> FeedEntry:
    t = read_entry(element)
    return _entry(fetched, t.entry_id, t.link, t.title, t.summary, t.content, t.published, t.author)


def _keys(entries: Iterable[FeedEntry]) -> set[str]:
    out = set()
    for e in entries:
        out.update(k for k in (e.entry_id, e.link, e.title if e.title != e.link else None) if k)
    return out


def _add_missed(kept: _Collector, fetched: Fetched, elements: list) -> int:
    """Add the entries the tree reader finds that feedparser did not give (matched by id, link
    or title, so an entry both read is kept once); returns how many it found."""
    known = _keys(kept.entries)
    found = 0
    for element in elements:
        try:
            entry = _tree_entry(fetched, element)
        except Exception:  # counted by the caller, as an entry neither parser could read
            log.debug("tree reader failed on an entry", exc_info=True)
            continue
        keys = _keys([entry])
        if keys & known:
            continue
        known |= keys
        found += 1
        kept.add(lambda entry=entry: entry)
    return found


def _parse_xml(fetched: Fetched, body: bytes, max_entries: int) -> ParsedFeed:
    prepared = prepare_xml(body, fetched.content_type)
    # The body is now UTF-8 whatever it was, and says so; Content-Location is the base for
    # relative links (xml:base inside the document still applies).
    headers = {"content-location": fetched.url, "content-type": "application/xml; charset=utf-8"}
    # Every HTML fragment is reduced to plain text with html_to_text, so feedparser's own HTML
    # sanitising and URI rewriting inside content would be wasted work (about 4/5 of its time).
    doc, crash = {}, None
    try:
        doc = feedparser.parse(io.BytesIO(prepared.data), response_headers=headers, sanitize_html=False,
                               resolve_relative_uris=False)
    except Exception as exc:  # feedparser on hostile input: the tree reader below still tries
        log.debug("feedparser failed on %s", fetched.requested_url, exc_info=True)
        crash = f"{type(exc).__name__}: {exc}"
    bozo = bool(doc.get("bozo"))
    reason = doc.get("bozo_exception")
    reason_text = xml_problem(reason) if reason is not None else "not a feed"
    version = doc.get("version") or ""
    parsed = doc.get("entries", []) or []
    root = read_tree(prepared.data, fetched.url)
    elements = entry_elements(root)
    aligned = elements if len(elements) == len(parsed) else [None] * len(parsed)
    kept = _Collector(max_entries)
    for e, element in zip(parsed, aligned):
        kept.add(lambda e=e, element=element: _feedparser_entry(fetched, e, element))
    if len(elements) > len(parsed):  # feedparser missed some: the tree reader reads them
        if len(parsed) >= max_entries:  # all past the cap anyway
            kept.drop(kept.cap_reason, len(elements) - len(parsed))
        else:
            kept.drop(NOT_READ, len(elements) - len(parsed) - _add_missed(kept, fetched, elements))
    entries, dropped = kept.result()
    if not entries:
        if crash:
            raise FeedError(fetched.requested_url, f"feed could not be parsed ({crash})")
        if not prepared.root:
            raise FeedError(fetched.requested_url,
                            f"not a feed: no XML element in the document "
                            f"(content-type {fetched.content_type or 'unknown'!r})")
        if not version and prepared.root in ("html", "body"):
            raise FeedError(fetched.requested_url,
                            f"not a feed: an HTML page (content-type {fetched.content_type or 'unknown'!r})")
        if bozo:
            raise FeedError(fetched.requested_url, f"malformed feed: {reason_text}; no entries could be read")
        if not version:
            raise FeedError(fetched.requested_url, f"not a feed (root element <{prepared.root}>, "
                                                   f"content-type {fetched.content_type or 'unknown'!r})")
    problems = []
    if crash and entries:
        problems.append(f"the feed parser failed ({crash}); entries read by the tolerant reader")
    if bozo and entries:
        problems.append(f"feed is not well-formed but yielded entries ({reason_text})")
    if prepared.note and entries:
        problems.append(prepared.note)
    title = html_to_text(doc.get("feed", {}).get("title", "") or "").strip() or feed_title(root)
    return ParsedFeed(url=fetched.requested_url, title=cut_at_word(title, MAX_TITLE_CHARS) if title else None,
                      entries=mark_shared_links(entries), warning="; ".join(problems) or None, dropped=dropped)



def xml_problem(exc: BaseException) -> str:
    """A parser's complaint in words: "broken XML at line 12, column 2: mismatched tag" rather
    than "SAXParseException: <unknown>:12:2: mismatched tag"."""
    line = getattr(exc, "getLineNumber", None)
    if callable(line):
        try:
            return f"broken XML at line {exc.getLineNumber()}, column {exc.getColumnNumber()}: {exc.getMessage()}"
        except Exception:  # a SAX exception without a locator
            pass
    text = " ".join(str(exc).split())
    return text if text else type(exc).__name__

def parse_feed(fetched: Fetched, *, max_entries: int = MAX_ENTRIES) -> ParsedFeed:
    """Parse one fetched feed document (RSS, Atom, RDF or JSON Feed).

    Raises FeedError when the document yields no entries and is broken or is not a feed. A
    broken document that still yields entries comes back with a ``warning``; entries of the
    document that are not kept (past ``max_entries``, unreadable) are counted in ``dropped``.
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
        return _parse_json(fetched, body, max_entries)
    return _parse_xml(fetched, body, max_entries)

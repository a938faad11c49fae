"""Adding feeds: discovery from a site URL, OPML import and export (the config file edit that
records them is :func:`aiwatch.configfile.add_feeds`)."""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import urljoin

import lxml.html

from ..articles.page import decode_html
from ..config import FeedSpec
from ..errors import AiwatchError, FeedError, FetchError
from ..http import HttpClient
from .body import decode_body, prepare_xml
from .parse import FEED_ACCEPT, parse_feed

log = logging.getLogger(__name__)

FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/rdf+xml", "application/feed+json",
              "application/json", "text/xml", "application/xml")


@dataclass(frozen=True)
class Discovered:
    url: str
    title: str | None
    entries: int


def find_feed_links(html: bytes, base_url: str, content_type: str = "") -> list[tuple[str, str | None]]:
    """``<link rel="alternate">`` feed links of an HTML page, resolved: (url, title) pairs."""
    try:
        root = lxml.html.fromstring(decode_html(html, content_type))
    except (ValueError, lxml.etree.ParserError):
        return []
    base = root.xpath("string(//base/@href)") or base_url
    out, seen = [], set()
    for link in root.xpath("//link[@href]"):
        rel = (link.get("rel") or "").lower().split()
        typ = (link.get("type") or "").lower().split(";")[0].strip()
        if "alternate" in rel and typ in FEED_TYPES:
            url = urljoin(urljoin(base_url, base), link.get("href").strip())
            if url not in seen:
                seen.add(url)
                out.append((url, link.get("title")))
    return out


def discover_feed(client: HttpClient, url: str) -> Discovered:
    """The feed at ``url``, or the first working feed a site page links to; raises AiwatchError."""
    fetched = client.fetch(url, accept=FEED_ACCEPT + ", text/html;q=0.8")
    try:
        feed = parse_feed(fetched)
        return Discovered(fetched.url, feed.title, len(feed.entries))
    except FeedError as not_a_feed:
        candidates = find_feed_links(fetched.content, fetched.url, fetched.content_type)
        if not candidates:
            raise AiwatchError(f"{url}: not a feed ({not_a_feed.reason}) and the page links to no feed") from None
    problems = []
    for candidate, title in candidates:
        try:
            feed = parse_feed(client.fetch(candidate, accept=FEED_ACCEPT))
            return Discovered(candidate, feed.title or title, len(feed.entries))
        except (FeedError, FetchError) as exc:
            problems.append(f"{candidate}: {exc.reason}")
    raise AiwatchError(f"{url}: none of the feeds it links to works ({'; '.join(problems)})")


_DTD = re.compile(r"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


def parse_opml(data: bytes, what: str = "OPML") -> list[FeedSpec]:
    """Feeds (xmlUrl, text/title) of an OPML document, outlines nested or flat.

    A subscription list has no use for a DTD, so one with a DOCTYPE or entity declarations is
    refused; the check reads the decoded text, whatever the encoding (UTF-16 hides a DOCTYPE
    from a byte search). ElementTree then only ever sees prepare_xml's output, which has no
    DOCTYPE left, so no entity could be expanded even if the check were wrong.
    """
    text, _, _ = decode_body(data)
    if _DTD.search(text):
        raise AiwatchError(f"{what}: OPML with a DOCTYPE or entity declarations is refused")
    try:
        root = ET.fromstring(prepare_xml(data).data)
    except ET.ParseError as exc:
        raise AiwatchError(f"{what}: not valid OPML: {exc}") from None
    if root.tag.lower() != "opml":
        raise AiwatchError(f"{what}: not OPML (root element <{root.tag}>)")
    out, seen = [], set()
    for outline in root.iter("outline"):
        url = (outline.get("xmlUrl") or outline.get("xmlurl") or "").strip()
        if not url or url in seen:
            continue
        if not re.match(r"^https?://", url):
            log.warning("%s: skipping outline with non-http feed URL %r", what, url)
            continue
        seen.add(url)
        name = (outline.get("title") or outline.get("text") or "").strip() or None
        out.append(FeedSpec(url, name))
    return out


def render_opml(feeds: Iterable[FeedSpec], title: str = "aiwatch feeds") -> str:
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    body = ET.SubElement(root, "body")
    for f in feeds:
        attrs = {"type": "rss", "xmlUrl": f.url, "text": f.name or f.url}
        if f.name:
            attrs["title"] = f.name
        ET.SubElement(body, "outline", attrs)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

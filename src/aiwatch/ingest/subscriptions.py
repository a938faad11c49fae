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


# A subscription list has no use for a DTD: entity declarations or an internal subset are
# refused. A bare ``<!DOCTYPE opml>`` (some exporters write one) declares nothing and is dropped.
_DTD = re.compile(r"<!ENTITY|<!DOCTYPE[^>\[]*\[", re.IGNORECASE)
# "&" not starting a character or entity reference: Miniflux and others write "R&D News" as is.
_BARE_AMP = re.compile(r"&(?!(?:[A-Za-z][A-Za-z0-9._-]*|#[0-9]+|#x[0-9A-Fa-f]+);)")
# Outlines that are not feeds but scraping recipes (FreshRSS: HTML+XPath, XML+XPath,
# JSON+DotNotation): their xmlUrl is a web page, not a feed.
_SCRAPED_TYPES = ("xpath", "dotnotation")


def _opml_root(data: bytes, what: str) -> ET.Element:
    text, _, _ = decode_body(data)
    if _DTD.search(text):
        raise AiwatchError(f"{what}: OPML with a DOCTYPE or entity declarations is refused")
    prepared = prepare_xml(data).data
    try:
        return ET.fromstring(prepared)
    except ET.ParseError as exc:
        repaired = _BARE_AMP.sub("&amp;", prepared.decode("utf-8"))
        try:
            root = ET.fromstring(repaired.encode("utf-8"))
        except ET.ParseError:
            raise AiwatchError(f"{what}: not valid OPML: {exc}") from None
        log.warning("%s: read with unescaped '&' characters taken as text", what)
        return root


def _attrs(outline: ET.Element) -> dict[str, str]:
    """Attributes by lower-case local name: xmlUrl, xmlurl and XMLURL are one attribute."""
    return {k.rsplit("}", 1)[-1].lower(): (v or "").strip() for k, v in outline.attrib.items()}


def parse_opml(data: bytes, what: str = "OPML") -> list[FeedSpec]:
    """Feeds of an OPML document: xmlUrl, title (or text), htmlUrl as the site, and the folder
    path of nested outlines (or the OPML 2.0 ``category`` attribute) as the category.

    The DTD check reads the decoded text, whatever the encoding (UTF-16 hides a DOCTYPE from a
    byte search). ElementTree then only ever sees prepare_xml's output, which has no DOCTYPE
    left, so no entity could be expanded even if the check were wrong. Raises AiwatchError when
    the file holds no feed at all, saying what it did hold.
    """
    root = _opml_root(data, what)
    if root.tag.rsplit("}", 1)[-1].lower() != "opml":
        raise AiwatchError(f"{what}: not OPML (root element <{root.tag}>)")
    out: list[FeedSpec] = []
    seen: set[str] = set()
    counts = {"outlines": 0, "scraped": 0, "not_http": 0}

    def walk(parent: ET.Element, folders: tuple[str, ...]) -> None:
        for outline in parent:
            if outline.tag.rsplit("}", 1)[-1].lower() != "outline":
                continue
            counts["outlines"] += 1
            a = _attrs(outline)
            label = a.get("title") or a.get("text") or ""
            url = a.get("xmlurl", "")
            if not url:
                walk(outline, folders + ((label,) if label else ()))
                continue
            if any(t in a.get("type", "").lower() for t in _SCRAPED_TYPES) or any("xpath" in k for k in a):
                counts["scraped"] += 1
                continue
            if not re.match(r"^https?://", url, re.IGNORECASE):
                counts["not_http"] += 1
                log.warning("%s: skipping outline with non-http feed URL %r", what, url)
                continue
            if url in seen:
                continue
            seen.add(url)
            category = "/".join(folders) or a.get("category", "").split(",")[0].strip().strip("/") or None
            site = a.get("htmlurl", "")
            out.append(FeedSpec(url, label or None, category=category,
                                site_url=site if re.match(r"^https?://", site, re.IGNORECASE) else None))
            walk(outline, folders)  # a feed outline with children is unusual, but keep what it holds

    body = next((c for c in root if c.tag.rsplit("}", 1)[-1].lower() == "body"), root)
    walk(body, ())
    if counts["scraped"]:
        log.warning("%s: skipped %d outlines that scrape web pages (XPath or JSON recipes), not feeds",
                    what, counts["scraped"])
    if not out:
        why = (f"{counts['outlines']} outlines, none with an xmlUrl attribute" if counts["outlines"]
               else "no <outline> elements")
        if counts["scraped"] or counts["not_http"]:
            why = f"{counts['outlines']} outlines: {counts['scraped']} page scrapers, {counts['not_http']} non-http"
        raise AiwatchError(f"{what}: no feeds found ({why})")
    return out


def render_opml(feeds: Iterable[FeedSpec], title: str = "aiwatch feeds") -> str:
    """OPML 2.0 with one outline per feed, nested in folder outlines by category."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    body = ET.SubElement(root, "body")
    folders: dict[tuple[str, ...], ET.Element] = {(): body}

    def folder(path: tuple[str, ...]) -> ET.Element:
        if path not in folders:
            folders[path] = ET.SubElement(folder(path[:-1]), "outline", {"text": path[-1], "title": path[-1]})
        return folders[path]

    for f in feeds:
        attrs = {"type": "rss", "xmlUrl": f.url, "text": f.name or f.url}
        if f.name:
            attrs["title"] = f.name
        if f.site_url:
            attrs["htmlUrl"] = f.site_url
        path = tuple(p.strip() for p in (f.category or "").split("/") if p.strip())
        ET.SubElement(folder(path), "outline", attrs)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

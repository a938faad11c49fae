"""Article extraction: a fetched page in, its main text and metadata out. No network here.

Extraction is a cascade with quality gates. Each extractor's text is checked by small pure
gate functions (too short, consent wall, paywall teaser, index/listing page); a rejected
result is recorded as "extractor: reason" and the next extractor is tried:

1. trafilatura, favor_recall (measured best on benchmarks/extract_bench.py);
2. trafilatura, default balance (recovers pages where recall mode stops early);
3. readability-lxml, when installed.

When every extractor's text was rejected only for being short, the longest is kept: it is still
the page's text, and the pipeline decides between it and the feed's own content by length. When
any extractor saw a consent wall, paywall teaser or listing page, or none found any text, the
result is None.
"""

from __future__ import annotations

import codecs
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Callable

import lxml.html
import trafilatura
from lxml import etree

from .http import Fetched
from .text import html_to_text, normalize_space

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
    extractor: str = "trafilatura"  # which extractor of the cascade produced ``text``
    rejected: tuple[str, ...] = ()  # "extractor: reason" for each result rejected before it


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


# --- quality gates: pure functions over the extracted text (and the page tree) -------------

MIN_CHARS = 500  # measured: 250-300 kept truncated extractions (a byline, a lead) that a fallback completes
_WORD = re.compile(r"\w+")
_CONSENT_TERMS = frozenset(
    "cookie cookies consent consents preferences partners vendors tracking personalised "
    "personalized advertising ads privacy gdpr opt".split())
_CONSENT_PHRASES = re.compile(
    r"accept all|reject all|accept cookies|manage (?:preferences|settings|cookies|options)|"
    r"cookie (?:policy|settings|preferences)|legitimate interest|we (?:and our partners )?use cookies|"
    r"store and/or access information", re.IGNORECASE)
_PAYWALL_PHRASES = re.compile(
    r"subscribe (?:now )?to (?:continue|keep) reading|subscribe to read|already a subscriber|"
    r"(?:sign|log) ?in to (?:read|continue)|to continue reading|subscribers? only|"
    r"for subscribers|this (?:article|story) is (?:only )?(?:available )?(?:to|for) subscribers|"
    r"free articles? (?:left|remaining)|reached your (?:limit|monthly limit)|"
    r"create a free account to (?:continue|read)|start your (?:free )?trial", re.IGNORECASE)
PAYWALL_TEASER_MAX_CHARS = 1500
_SENTENCE_END = re.compile(r"[.!?:;…。！？\"'”’)]$")


def too_short(text: str, min_chars: int | None = None) -> bool:
    return len(text) < (MIN_CHARS if min_chars is None else min_chars)


def looks_like_consent_wall(text: str) -> bool:
    """Cookie/consent vocabulary dominates the text (a banner extracted instead of the article)."""
    words = _WORD.findall(text.casefold())
    if not words:
        return False
    terms = sum(1 for w in words if w in _CONSENT_TERMS)
    phrases = len(_CONSENT_PHRASES.findall(text))
    ratio = terms / len(words)
    return (phrases >= 1 and ratio >= 0.04) or ratio >= 0.08 or (phrases >= 3 and len(words) < 400)


def looks_like_paywall_teaser(text: str) -> bool:
    """A short text carrying a subscribe/sign-in prompt: the teaser, not the article."""
    return len(text) < PAYWALL_TEASER_MAX_CHARS and _PAYWALL_PHRASES.search(text) is not None


def headline_line_share(text: str) -> float:
    """Share of non-empty lines that look like headlines: short, no sentence-ending punctuation."""
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if not lines:
        return 0.0
    headline = sum(1 for line in lines if len(line) < 120 and not _SENTENCE_END.search(line))
    return headline / len(lines)


def _fold_space(text: str) -> str:
    return " ".join(text.split()).casefold()


def anchor_texts(tree: etree._Element) -> set[str]:
    """Folded text of every link on the page that is long enough to be a headline."""
    out = set()
    for a in tree.iter("a"):
        t = _fold_space(a.text_content())
        if len(t) >= 15:
            out.add(t)
    return out


_LIST_MARKER = re.compile(r"^(?:[-*•·]|\d+[.)])\s+")


def link_density(text: str, tree: etree._Element) -> float:
    """Share of the extracted text's characters that are the text of a link on the page: the
    link density of the main content, measured against the page's own <a> elements (a line
    counts the longest link text it contains, so "headline · 2 hours ago" is mostly link)."""
    links = anchor_texts(tree)
    lines = [_LIST_MARKER.sub("", _fold_space(line)) for line in text.split("\n") if line.strip()]
    total = sum(len(line) for line in lines)
    if not total or not links:
        return 0.0
    linked = 0
    for line in lines:
        if line in links:
            linked += len(line)
        else:
            linked += max((len(a) for a in links if a in line), default=0)
    return linked / total


PageTree = Callable[[], "etree._Element | None"]


def looks_like_listing(text: str, page_tree: PageTree | None = None) -> bool:
    """An index page: many short headline-like lines, most of them links.

    ``page_tree`` returns the parsed page; it is called only when the cheap text test has
    already passed, so most articles never pay for a second parse. Without a tree, the text
    test alone decides, with a stricter threshold."""
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) < 8 or headline_line_share(text) < 0.5:
        return False
    tree = page_tree() if page_tree is not None else None
    if tree is None:
        return headline_line_share(text) >= 0.8
    return link_density(text, tree) >= 0.5


def rejection_reason(text: str, page_tree: PageTree | None = None) -> str | None:
    """The first quality gate the text fails ("empty", "consent wall", "paywall teaser",
    "index/listing page", "too short (N chars)"), or None when it passes them all."""
    if not text:
        return "empty"
    if looks_like_consent_wall(text):
        return "consent wall"
    if looks_like_paywall_teaser(text):
        return "paywall teaser"
    if looks_like_listing(text, page_tree):
        return "index/listing page"
    if too_short(text):
        return f"too short ({len(text)} chars)"
    return None


# --- extractors --------------------------------------------------------------------------

_TRAFILATURA_COMMON = dict(include_comments=False, include_tables=True, deduplicate=False)


def _trafilatura(html_text: str, url: str, **mode) -> str:
    # Without trafilatura's metadata pass (measured: 54 -> 31 ms a page); page_metadata
    # below reads what aiwatch uses from the parsed tree at a fraction of the cost.
    doc = trafilatura.bare_extraction(html_text, url=url, with_metadata=False,
                                      **_TRAFILATURA_COMMON, **mode)
    return normalize_space(doc.text or "") if doc is not None else ""


@dataclass(frozen=True)
class PageMeta:
    title: str | None = None
    author: str | None = None
    date: str | None = None
    sitename: str | None = None
    language: str | None = None


def _meta_content(tree, *selectors: str) -> str | None:
    for sel in selectors:
        for value in tree.xpath(sel):
            value = normalize_space(str(value))
            if value:
                return value[:300]
    return None


def page_metadata(tree) -> PageMeta:
    """Title, author, date, site name and declared language from a page's markup: Open Graph
    and the usual meta tags, then <title>/<h1>; the date by htmldate's fast search."""
    if tree is None:
        return PageMeta()
    title = _meta_content(tree, '//meta[@property="og:title"]/@content', '//meta[@name="twitter:title"]/@content',
                          "//title/text()", "//h1//text()")
    author = _meta_content(tree, '//meta[@name="author"]/@content', '//meta[@property="article:author"]/@content',
                           '//meta[@name="parsely-author"]/@content', '//*[@rel="author"]//text()')
    if author and author.startswith(("http://", "https://")):
        author = None  # article:author is often a profile URL
    sitename = _meta_content(tree, '//meta[@property="og:site_name"]/@content',
                             '//meta[@name="application-name"]/@content')
    try:
        from htmldate import find_date
        date = find_date(tree, extensive_search=False, original_date=True)
    except Exception:  # noqa: BLE001 - htmldate on odd markup; the feed's date is the first choice anyway
        date = None
    return PageMeta(title, author, date, sitename)


def _readability(html_text: str) -> str:
    try:
        from readability import Document
    except ImportError:  # optional: the cascade is one step shorter without it
        return ""
    try:
        return html_to_text(Document(html_text).summary(html_partial=True))
    except Exception as exc:  # readability raises bare Exceptions on odd markup
        log.debug("readability failed: %s", exc)
        return ""


def _parse_tree(html_text: str) -> etree._Element | None:
    try:
        # Bytes with an explicit parser encoding: a str with an XML declaration is refused.
        return lxml.html.document_fromstring(html_text.encode("utf-8"),
                                             parser=lxml.html.HTMLParser(encoding="utf-8"))
    except (etree.ParserError, ValueError):
        return None


# --- language ----------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _language_identifier():
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError:
        return None
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect_language(text: str, min_confidence: float = 0.8) -> str | None:
    """ISO 639-1 code of the text with py3langid when installed and confident, else None."""
    identifier = _language_identifier()
    if identifier is None or len(text) < 40:
        return None
    lang, prob = identifier.classify(text[:3000])
    return lang if prob >= min_confidence else None


# --- the cascade -------------------------------------------------------------------------

def extract_article(fetched: Fetched) -> Extracted | None:
    """Main text and metadata of a fetched page, or None when no extractor produced text that
    passes the quality gates (then the pipeline uses the feed's own content)."""
    html_text = decode_html(fetched.content, fetched.content_type)
    url = fetched.url
    tree_cache: list = []

    def tree():
        if not tree_cache:
            tree_cache.append(_parse_tree(html_text))
        return tree_cache[0]

    def recall() -> str:
        return _trafilatura(html_text, url, favor_recall=True)

    def balanced() -> str:
        return _trafilatura(html_text, url)

    steps: list[tuple[str, Callable[[], str]]] = [
        ("trafilatura", recall),
        ("trafilatura-default", balanced),
        ("readability", lambda: _readability(html_text)),
    ]
    rejected: list[str] = []
    short: list[tuple[str, str, int]] = []  # (name, text, index in rejected) of merely short results
    chosen: tuple[str, str] | None = None
    saw_non_article = False
    for name, run in steps:
        text = run()
        reason = rejection_reason(text, tree)
        if reason is None:
            chosen = (name, text)
            break
        if reason.startswith("too short"):
            short.append((name, text, len(rejected)))
        elif reason != "empty":
            saw_non_article = True
        rejected.append(f"{name}: {reason}")
    if chosen is None:
        # A short text is the page's text only when no extractor saw a non-article (consent
        # wall, paywall, listing): on those, the short scraps are leftovers of the same page.
        if not short or saw_non_article:
            log.debug("no extractor passed the gates for %s: %s", url, "; ".join(rejected))
            return None
        # Only too short everywhere: keep the longest (a short page is still the page's text).
        name, text, index = max(short, key=lambda s: len(s[1]))
        chosen = (name, text)
        rejected = rejected[:index]
    name, text = chosen
    meta = page_metadata(tree())
    lang = detect_language(text)
    if not lang:
        m = _HTML_LANG.search(html_text[:4096])
        lang = m.group(1).lower() if m else None
    title = getattr(meta, "title", None) or None
    return Extracted(
        text=strip_leading_title(text, title),
        title=title,
        author=(getattr(meta, "author", None) or None),
        date=_parse_date(getattr(meta, "date", None)),
        language=lang,
        sitename=(getattr(meta, "sitename", None) or None),
        extractor=name,
        rejected=tuple(rejected),
    )

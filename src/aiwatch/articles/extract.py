"""Article extraction: a page in, its main text out. No network here.

Extraction is a cascade with quality gates. Each extractor's text is checked by small pure
gate functions (too short, consent wall, paywall teaser, index/listing page); a rejected
result is recorded as "extractor: reason" and the next extractor is tried:

1. trafilatura, favor_recall (measured best on benchmarks/extract_bench.py);
2. trafilatura, default balance (recovers pages where recall mode stops early);
3. readability-lxml.

When every extractor's text was rejected only for being short, the longest is kept: it is still
the page's text, and the pipeline decides between it and the feed's own content by length. When
any extractor saw a consent wall, paywall teaser or listing page, or none found any text, the
result is None. Metadata (title, author, dates, site name, declared language) comes from the
:class:`~aiwatch.articles.page.Page`, whose one parsed tree every extractor but readability uses.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Callable

import trafilatura
from lxml import etree

from ..http import Fetched
from ..text import html_to_text, normalize_space
from .page import Page

log = logging.getLogger(__name__)

# The extraction libraries log their own failures (readability prints a traceback for a binary
# page served as HTML); aiwatch records what matters as the article's extraction notes, so their
# records stay out of the user's terminal and run logs.
for _name in ("readability", "trafilatura", "htmldate", "courlan", "justext"):
    logging.getLogger(_name).addHandler(logging.NullHandler())
    logging.getLogger(_name).propagate = False


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

MIN_CHARS = 500  # the default of extract.min_chars; measured: 250-300 kept truncated extractions (a byline,
#                  a lead) that a fallback completes
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


def too_short(text: str, min_chars: int = MIN_CHARS) -> bool:
    return len(text) < min_chars


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


def looks_like_listing(text: str, tree: etree._Element | None = None) -> bool:
    """An index page: many short headline-like lines, most of them links (measured against the
    page's own ``<a>`` elements). Without a tree, the text test alone decides, with a stricter
    threshold."""
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) < 8 or headline_line_share(text) < 0.5:
        return False
    if tree is None:
        return headline_line_share(text) >= 0.8
    return link_density(text, tree) >= 0.5


def rejection_reason(text: str, tree: etree._Element | None = None, min_chars: int = MIN_CHARS) -> str | None:
    """The first quality gate the text fails ("empty", "consent wall", "paywall teaser",
    "index/listing page", "too short (N chars)"), or None when it passes them all."""
    if not text:
        return "empty"
    if looks_like_consent_wall(text):
        return "consent wall"
    if looks_like_paywall_teaser(text):
        return "paywall teaser"
    if looks_like_listing(text, tree):
        return "index/listing page"
    if too_short(text, min_chars):
        return f"too short ({len(text)} chars)"
    return None


# --- extractors --------------------------------------------------------------------------

_TRAFILATURA_COMMON = dict(include_comments=False, include_tables=True, deduplicate=False)


def _trafilatura(page: Page, **mode) -> str:
    # The page's own tree (trafilatura works on a copy of it), and without trafilatura's
    # metadata pass (measured: 54 -> 31 ms a page): the Page reads what aiwatch uses.
    if page.tree is None:
        return ""
    doc = trafilatura.bare_extraction(page.tree, url=page.url, with_metadata=False, **_TRAFILATURA_COMMON, **mode)
    return normalize_space(doc.text or "") if doc is not None else ""


def _readability(page: Page) -> str:
    from readability import Document
    try:
        return html_to_text(Document(page.html).summary(html_partial=True))
    except Exception as exc:  # readability raises bare Exceptions on odd markup
        log.debug("readability failed: %s", exc)
        return ""


# --- language ----------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _language_identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect_language(text: str, min_confidence: float = 0.8) -> str | None:
    """ISO 639-1 code of the text by py3langid when it is confident, else None."""
    if len(text) < 40:
        return None
    lang, prob = _language_identifier().classify(text[:3000])
    return lang if prob >= min_confidence else None


# --- the cascade -------------------------------------------------------------------------

def extract_article(source: Page | Fetched, min_chars: int = MIN_CHARS) -> Extracted | None:
    """Main text and metadata of a page, or None when no extractor produced text that passes
    the quality gates (then the pipeline uses the feed's own content). ``min_chars``: shorter
    texts are rejected as too short and the next extractor is tried."""
    page = source if isinstance(source, Page) else Page.from_fetched(source)
    if page.tree is None or page.is_binary:
        log.debug("%s: not an HTML page", page.url)
        return None
    steps: list[tuple[str, Callable[[], str]]] = [
        ("trafilatura", lambda: _trafilatura(page, favor_recall=True)),
        ("trafilatura-default", lambda: _trafilatura(page)),
        ("readability", lambda: _readability(page)),
    ]
    rejected: list[str] = []
    short: list[tuple[str, str, int]] = []  # (name, text, index in rejected) of merely short results
    chosen: tuple[str, str] | None = None
    saw_non_article = False
    for name, run in steps:
        text = run()
        reason = rejection_reason(text, page.tree, min_chars)
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
            log.debug("no extractor passed the gates for %s: %s", page.url, "; ".join(rejected))
            return None
        # Only too short everywhere: keep the longest (a short page is still the page's text).
        name, text, index = max(short, key=lambda s: len(s[1]))
        chosen = (name, text)
        rejected = rejected[:index]
    name, text = chosen
    return Extracted(
        text=strip_leading_title(text, page.title),
        title=page.title,
        author=page.author,
        date=page.date,
        language=detect_language(text) or page.declared_language,
        sitename=page.site_name,
        extractor=name,
        rejected=tuple(rejected),
    )

"""Article extraction: a page in, its main text out. No network here.

Two methods (``extract.method``), both ending in the same quality gates: small pure functions
(too short, consent wall, paywall teaser, index/listing page). A rejected result is recorded as
"extractor: reason" and the next candidate is tried.

``agree`` (the default): extractors whose errors differ each read the page, and the text that
agrees best with the others is kept, the medoid by word 3-shingle Jaccard similarity (no ground
truth needed; measured on five public benchmarks, see ``benchmarks/extract_bench.py``):

1. trafilatura favor_recall, trafilatura's default balance and resiliparse (about 5 ms) run;
   the medoid is the text with the highest mean similarity to the others (ties: that order).
2. Its agreement is its mean similarity to the other *libraries* (the two trafilatura modes
   count as one voice). Below ``extract.agreement`` (0.5), or when fewer than three texts came
   back, readability-lxml and newspaper4k run too and the medoid of all five is taken.
3. The candidates, best agreement first, go through the quality gates; the first that passes is
   the article's text. A medoid that is merely too short is replaced only by a text that holds
   it (more of the same article), else kept; the extras are asked first. When no text is usable
   and the extras have not run, they run, and the gates go over all five again.

Measured (benchmarks/extract_bench.py, and offline on cached outputs of five public benchmarks):
never below plain trafilatura, within 0.0015 F1 of always running readability in the first
stage at about two thirds of the time, the extras needed on 5 to 22% of pages. A package that
is not installed is skipped.

``cascade``: trafilatura favor_recall, then trafilatura's default balance, then readability,
the first that passes the gates (the method before agree; cheaper, and less accurate).

When every candidate was rejected only for being short, the longest is kept: it is still the
page's text, and the pipeline decides between it and the feed's own content by length. When any
candidate was a consent wall, paywall teaser or listing page, or none found any text, the
result is None. Metadata (title, author, dates, site name, declared language) comes from the
:class:`~aiwatch.articles.page.Page`, whose one parsed tree both trafilatura modes use.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Callable, Mapping, Sequence

import trafilatura
from lxml import etree

from ..http import Fetched
from ..text import html_to_text, normalize_space
from .page import Page

log = logging.getLogger(__name__)

# The extraction libraries log their own failures (readability prints a traceback for a binary
# page served as HTML); aiwatch records what matters as the article's extraction notes, so their
# records stay out of the user's terminal and run logs.
for _name in ("readability", "trafilatura", "htmldate", "courlan", "justext", "newspaper"):
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
    extractor: str = "trafilatura"  # which extractor produced ``text``
    rejected: tuple[str, ...] = ()  # "extractor: reason" for each result rejected before it
    agreement: float | None = None  # method agree: the text's mean similarity to the other libraries
    ran: tuple[str, ...] = ()       # method agree: the extractors that ran, in order


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


def _resiliparse(page: Page) -> str:
    from resiliparse.extract.html2text import extract_plain_text
    return normalize_space(extract_plain_text(page.html, main_content=True, alt_texts=False, links=False,
                                              form_fields=False, noscript=False))


def _newspaper4k(page: Page) -> str:
    with warnings.catch_warnings():  # "nltk is not installed": its NLP features are not used
        warnings.simplefilter("ignore")
        from newspaper import Article
    article = Article(page.url or "http://localhost/", fetch_images=False)
    article.download(input_html=page.html)
    article.parse()
    return normalize_space(article.text or "")


# name: (module that must import, function of the page). The names are what ``extractor`` stores.
EXTRACTORS: dict[str, tuple[str, Callable[[Page], str]]] = {
    "trafilatura": ("trafilatura", lambda page: _trafilatura(page, favor_recall=True)),
    "trafilatura-default": ("trafilatura", _trafilatura),
    "readability": ("readability", _readability),
    "resiliparse": ("resiliparse.extract.html2text", _resiliparse),
    "newspaper4k": ("newspaper", _newspaper4k),
}
CASCADE = ("trafilatura", "trafilatura-default", "readability")
FIRST = ("trafilatura", "trafilatura-default", "resiliparse")
EXTRAS = ("readability", "newspaper4k")
FAMILIES = {"trafilatura-default": "trafilatura"}  # one library's modes are one voice in the agreement
AGREEMENT = 0.5  # the default of extract.agreement
METHODS = ("agree", "cascade")


@lru_cache(maxsize=None)
def available(name: str) -> bool:
    """Whether the extractor's package is installed (a missing optional one is skipped)."""
    import importlib
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importlib.import_module(EXTRACTORS[name][0])
        return True
    except ImportError:
        log.debug("extractor %s unavailable: %s is not installed", name, EXTRACTORS[name][0])
        return False


def run_extractor(name: str, page: Page) -> str:
    """One extractor's text of the page; "" when it fails (extractors raise anything on odd markup)."""
    try:
        return EXTRACTORS[name][1](page)
    except Exception as exc:  # noqa: BLE001
        log.debug("%s failed on %s: %s", name, page.url, exc)
        return ""


# --- agreement: pure functions over texts ------------------------------------------------

def shingles(text: str, k: int = 3) -> frozenset:
    """The set of casefolded word k-grams (a text shorter than k words is one shingle)."""
    words = _WORD.findall(text.casefold())
    if len(words) < k:
        return frozenset([tuple(words)]) if words else frozenset()
    return frozenset(zip(*(words[i:] for i in range(k))))


def jaccard(a: frozenset, b: frozenset) -> float:
    if not a or not b:
        return 0.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)


class Similarity:
    """Pairwise 3-shingle Jaccard similarity of named texts, each text's shingles made once."""

    def __init__(self, texts: Mapping[str, str]):
        self.texts = texts
        self._shingles: dict[str, frozenset] = {}
        self._pairs: dict[tuple[str, str], float] = {}

    def __call__(self, a: str, b: str) -> float:
        key = (a, b) if a < b else (b, a)
        if key not in self._pairs:
            for n in key:
                if n not in self._shingles:
                    self._shingles[n] = shingles(self.texts.get(n) or "")
            self._pairs[key] = jaccard(self._shingles[key[0]], self._shingles[key[1]])
        return self._pairs[key]


def rank_by_agreement(names: Sequence[str], texts: Mapping[str, str],
                      sim: Callable[[str, str], float] | None = None) -> list[str]:
    """The names of the non-empty texts, medoid first: by mean similarity to the other non-empty
    texts, ties (and two or fewer texts) in the order of ``names``."""
    candidates = [n for n in names if texts.get(n)]
    if len(candidates) <= 2:
        return candidates
    sim = sim or Similarity(texts)
    score = {c: sum(sim(c, o) for o in candidates if o != c) / (len(candidates) - 1) for c in candidates}
    return sorted(candidates, key=lambda n: -round(score[n], 9))  # stable: ties keep the order of names


def agreement(name: str, names: Sequence[str], texts: Mapping[str, str],
              sim: Callable[[str, str], float] | None = None, families: Mapping[str, str] = FAMILIES) -> float:
    """Mean similarity of ``name``'s text to the non-empty texts of the other libraries (a
    library's modes averaged first); 0.0 when there are none."""
    if not texts.get(name):
        return 0.0
    sim = sim or Similarity(texts)
    own = families.get(name, name)
    voices: dict[str, list[float]] = {}
    for o in names:
        if o != name and texts.get(o) and families.get(o, o) != own:
            voices.setdefault(families.get(o, o), []).append(sim(name, o))
    return sum(sum(v) / len(v) for v in voices.values()) / len(voices) if voices else 0.0


@dataclass(frozen=True)
class Candidates:
    """What the extractors of method agree made of one page."""
    texts: dict[str, str]       # every extractor that ran, in order: its text ("" when it found none)
    ranked: list[str]           # the non-empty ones, medoid first
    agreement: float            # the medoid's agreement with the other libraries
    first_agreement: float      # the first extractors' medoid's agreement
    extras: str = ""            # why the extras ran ("" when they did not)


def _vote(texts: dict[str, str]) -> tuple[list[str], float]:
    names = list(texts)
    sim = Similarity(texts)
    ranked = rank_by_agreement(names, texts, sim)
    return ranked, (agreement(ranked[0], names, texts, sim) if ranked else 0.0)


def agree_candidates(page: Page, margin: float = AGREEMENT, first: Sequence[str] = FIRST) -> Candidates:
    """Run ``first``, and the extras too when their medoid's agreement is below ``margin`` or
    fewer than three of them found text. ``margin`` 0 never asks for the extras, above 1 always."""
    texts = {n: run_extractor(n, page) for n in first if available(n)}
    ranked, agree = _vote(texts)
    found = Candidates(texts, ranked, agree, agree)
    if len(ranked) < 3:
        return with_extras(page, found, f"{len(ranked)} of the first extractors found text")
    return found if agree >= margin else with_extras(page, found, f"the first extractors agreed {agree:.2f}")


def with_extras(page: Page, found: Candidates, why: str, extras: Sequence[str] = EXTRAS) -> Candidates:
    """``found`` with the extras' texts added and the vote taken again over all."""
    more = [n for n in extras if n not in found.texts and available(n)]
    if not more:
        return found
    texts = dict(found.texts)
    texts.update((n, run_extractor(n, page)) for n in more)
    ranked, agree = _vote(texts)
    return Candidates(texts, ranked, agree, found.first_agreement, f"{', '.join(more)} ran: {why}")


CONTAINS = 0.8  # method agree: a longer text replaces a merely short medoid only if it holds this much of it


def containment(part: str, whole: str) -> float:
    """Share of ``part``'s word 3-shingles that ``whole`` holds too."""
    a = shingles(part)
    return len(a & shingles(whole)) / len(a) if a else 0.0


def _through_gates(order: Sequence[str], text_of: Callable[[str], str], tree: etree._Element, min_chars: int,
                   keep_short_first: bool = False, title: str | None = None
                   ) -> tuple[tuple[str, str] | None, list[str], list[tuple[str, str, int]], bool]:
    """The first candidate whose text passes the quality gates: (its name and text or None, the
    rejections before it, the merely short ones as (name, text, index in the rejections), whether
    any candidate was a non-article: consent wall, paywall or listing).

    ``keep_short_first`` (method agree): when the first candidate, the medoid, is merely too
    short, a later one replaces it only if it holds the medoid's text (``CONTAINS``), that is
    more of the same article (a headline line it starts with aside); else the short medoid is kept. Measured on trafilatura's
    evaluation set: a longer text that disagrees with the medoid is mostly boilerplate."""
    rejected: list[str] = []
    short: list[tuple[str, str, int]] = []
    saw_non_article = False
    first_short: str | None = None
    for name in order:
        text = text_of(name)
        reason = rejection_reason(text, tree, min_chars)
        if reason is None:
            if first_short is not None and containment(strip_leading_title(first_short, title), text) < CONTAINS:
                rejected.append(f"{name}: longer, but without the best-agreeing text")
                continue
            return (name, text), rejected, short, saw_non_article
        if reason.startswith("too short"):
            if keep_short_first and name == order[0]:
                first_short = text
            short.append((name, text, len(rejected)))
        elif reason != "empty":
            saw_non_article = True
        rejected.append(f"{name}: {reason}")
    if first_short is not None and not saw_non_article:
        return (order[0], first_short), [], short, False
    return None, rejected, short, saw_non_article


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


# --- extraction: candidates through the quality gates ---------------------------------------

def extract_article(source: Page | Fetched, min_chars: int = MIN_CHARS, method: str = "agree",
                    margin: float = AGREEMENT) -> Extracted | None:
    """Main text and metadata of a page, or None when no extractor produced text that passes
    the quality gates (then the pipeline uses the feed's own content). ``min_chars``: shorter
    texts are rejected as too short and the next candidate is tried. ``method``: "agree" or
    "cascade" (see the module's doc); ``margin``: the agreement below which method agree asks
    its extra extractors."""
    if method not in METHODS:
        raise ValueError(f"unknown extraction method {method!r}: expected one of {METHODS}")
    page = source if isinstance(source, Page) else Page.from_fetched(source)
    if page.tree is None or page.is_binary:
        log.debug("%s: not an HTML page", page.url)
        return None
    found: Candidates | None = None
    if method == "agree":
        found = agree_candidates(page, margin)
        if found.ranked and not found.extras and (rejection_reason(found.texts[found.ranked[0]], page.tree, min_chars)
                                                  or "").startswith("too short"):
            found = with_extras(page, found, "the best-agreeing text is too short")  # one may hold more of it
        chosen, rejected, short, saw_non_article = _through_gates(found.ranked, found.texts.__getitem__, page.tree,
                                                                  min_chars, keep_short_first=True, title=page.title)
        if chosen is None and not found.extras:  # agreed, but on nothing usable: ask the extras too
            found = with_extras(page, found, "no text of the first extractors passed the quality gates")
            chosen, rejected, short, saw_non_article = _through_gates(found.ranked, found.texts.__getitem__,
                                                                      page.tree, min_chars, keep_short_first=True,
                                                                      title=page.title)
    else:
        chosen, rejected, short, saw_non_article = _through_gates(CASCADE, lambda n: run_extractor(n, page),
                                                                  page.tree, min_chars)
    if chosen is None:
        # A short text is the page's text only when no extractor saw a non-article (consent
        # wall, paywall, listing): on those, the short scraps are leftovers of the same page.
        if not short or saw_non_article:
            log.debug("no extractor passed the gates for %s: %s", page.url, "; ".join(rejected) or "no text")
            return None
        # Only too short everywhere: keep the longest (a short page is still the page's text).
        name, text, index = max(short, key=lambda s: len(s[1]))
        chosen = (name, text)
        rejected = rejected[:index]
    name, text = chosen
    agree = None
    if found is not None:
        names = list(found.texts)
        agree = round(found.agreement if name == found.ranked[0] else
                      agreement(name, names, found.texts, Similarity(found.texts)), 4)
        if found.extras:  # recorded, so that the share of pages needing them can be counted
            rejected.insert(0, found.extras)
    return Extracted(
        text=strip_leading_title(text, page.title),
        title=page.title,
        author=page.author,
        date=page.date,
        language=detect_language(text) or page.declared_language,
        sitename=page.site_name,
        extractor=name,
        rejected=tuple(rejected),
        agreement=agree,
        ran=tuple(found.texts) if found is not None else (),
    )

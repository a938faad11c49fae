"""Small pure text helpers shared by the stages: HTML to text, hashing, passages."""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata

import lxml.html
from lxml import etree

_WS = re.compile(r"[ \t\r\f\v\u00a0]+")
# What XML 1.0 forbids (C0 controls but tab, newline and CR; U+FFFE, U+FFFF; lone surrogates):
# stored text must survive the digest's Atom feed and UTF-8 (a lone surrogate cannot be encoded).
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_BLANKS = re.compile(r"\n\s*\n+")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


def strip_xml_illegal(text: str) -> str:
    """``text`` without the characters XML 1.0 forbids (see ``_XML_ILLEGAL``)."""
    return _XML_ILLEGAL.sub("", text)


def cut_at_word(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else cut at the last space before it, with "…"."""
    if len(text) <= limit:
        return text
    head = text[:limit - 1]
    space = head.rfind(" ", limit // 2)  # a "word" longer than half the limit is cut inside
    return (head[:space] if space > 0 else head).rstrip() + "…"


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment (feed summaries); tags dropped, entities decoded."""
    if not fragment:
        return ""
    fragment = strip_xml_illegal(fragment)  # lxml refuses them, and they must not be stored
    if "<" not in fragment:
        return normalize_space(html.unescape(fragment))
    try:
        root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    except (etree.ParserError, ValueError):
        return normalize_space(html.unescape(re.sub(r"<[^>]+>", " ", fragment)))
    for bad in root.xpath(".//script|.//style"):
        bad.drop_tree()
    for block in root.xpath(".//p|.//br|.//div|.//li|.//h1|.//h2|.//h3|.//h4|.//blockquote"):
        block.tail = "\n\n" + (block.tail or "")
    return normalize_space(root.text_content())


def normalize_space(text: str) -> str:
    """Collapse runs of spaces, keep paragraph breaks as one blank line; drop XML-illegal characters."""
    text = unicodedata.normalize("NFC", strip_xml_illegal(text))
    lines = [_WS.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


def content_hash(text: str) -> str:
    """Hash of the text with case, punctuation and spacing folded: copies hash alike."""
    folded = re.sub(r"[\W_]+", " ", text.casefold()).strip()
    return hashlib.sha256(folded.encode("utf-8")).hexdigest()[:24]


def text_hash(text: str) -> str:
    """Exact hash of a passage: the key of its embedding."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _split_long(paragraph: str, max_words: int) -> list[str]:
    words = paragraph.split()
    if len(words) <= max_words:
        return [paragraph]
    out, current = [], []
    for sentence in _SENTENCE_END.split(paragraph):
        s_words = sentence.split()
        if current and len(current) + len(s_words) > max_words:
            out.append(" ".join(current))
            current = []
        while len(s_words) > max_words:  # a run-on "sentence": cut by words
            out.append(" ".join(s_words[:max_words]))
            s_words = s_words[max_words:]
        current.extend(s_words)
    if current:
        out.append(" ".join(current))
    return out


def passages(title: str, text: str, *, max_words: int = 150, max_passages: int = 8) -> list[str]:
    """Split an article into passages for embedding.

    The first passage is the title plus the lead; the rest are runs of whole paragraphs of at
    most ``max_words`` words (long paragraphs are cut at sentence ends). Up to the cap, every
    word of the text is in exactly one passage, so a match deep in an article is not lost to
    the model's 256-token window.
    """
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n|\n", text or "") if p.strip()]
    pieces: list[str] = []
    for p in paragraphs:
        pieces.extend(_split_long(p, max_words))
    chunks: list[str] = []
    current: list[str] = []
    count = 0
    for piece in pieces:
        n = len(piece.split())
        if current and count + n > max_words:
            chunks.append("\n".join(current))
            current, count = [], 0
        current.append(piece)
        count += n
    if current:
        chunks.append("\n".join(current))
    title = (title or "").strip()
    if not chunks:
        return [title] if title else []
    first = f"{title}\n{chunks[0]}" if title else chunks[0]
    return ([first] + chunks[1:])[:max_passages]

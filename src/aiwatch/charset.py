"""Decoding untrusted bytes (feed bodies, web pages) to text: one set of rules for both.

Browsers and feed readers meet the same mess: missing or wrong declarations, UTF-16 without a
byte-order mark, ISO-8859-1 labels on windows-1252 text, GB2312 labels on GBK text. The rules here
are the ones measured on real feeds (``benchmarks/feeds_bench.py``) and pages.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Sequence

_BOMS = (  # UTF-32 first: its little-endian BOM starts like UTF-16's
    (codecs.BOM_UTF32_LE, "utf_32_le"),
    (codecs.BOM_UTF32_BE, "utf_32_be"),
    (codecs.BOM_UTF8, "utf_8"),
    (codecs.BOM_UTF16_LE, "utf_16_le"),
    (codecs.BOM_UTF16_BE, "utf_16_be"),
)
# The first markup of an XML document in a 16- or 32-bit encoding without a BOM: optional
# whitespace, then "<" and "?", "!" or a name character ("<?xml", "<!--", "<rss").
_WIDE_PATTERNS = (
    (re.compile(rb"(?:[ \t\r\n]\x00\x00\x00)*<\x00\x00\x00[?!A-Za-z_]\x00\x00\x00"), "utf_32_le"),
    (re.compile(rb"(?:\x00\x00\x00[ \t\r\n])*\x00\x00\x00<\x00\x00\x00[?!A-Za-z_]"), "utf_32_be"),
    (re.compile(rb"(?:[ \t\r\n]\x00)*<\x00[?!A-Za-z_]\x00"), "utf_16_le"),
    (re.compile(rb"(?:\x00[ \t\r\n])*\x00<\x00[?!A-Za-z_]"), "utf_16_be"),
)
_HTTP_CHARSET = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9._:+-]{1,40})""", re.I)
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
_HIGH_BYTE = re.compile(rb"[\x80-\xff]")
_HIGH_RUN = re.compile(rb"[\x80-\xff]+")
# Labels read as their superset, as browsers do: "ISO-8859-1" feeds are full of windows-1252
# "smart quotes", "GB2312" feeds of GBK characters.
_NOT_CHARSETS = frozenset({"unicode-escape", "raw-unicode-escape", "punycode", "idna"})
_SUPERSETS = {"iso8859_1": "cp1252", "ascii": "cp1252", "gb2312": "gbk", "shift_jis": "cp932",
              "euc_kr": "cp949"}
# Labels that iconv, browsers or Microsoft know and Python does not (keys as _label_key makes
# them): a feed that names its encoding only so was read with a guess, and a multi-byte one
# came out as mojibake.
_SEVEN_BIT_MARKERS = {"iso2022_jp": b"\x1b$", "iso2022_jp_1": b"\x1b$", "iso2022_jp_2": b"\x1b$",
                      "iso2022_jp_3": b"\x1b$", "iso2022_jp_ext": b"\x1b$", "iso2022_jp_2004": b"\x1b$",
                      "iso2022_kr": b"\x1b$", "hz": b"~{"}
_OTHER_LABELS = {
    "koi8ru": "koi8_u", "macukrainian": "mac_cyrillic", "maccentraleurope": "mac_latin2",
    "msansi": "cp1252", "msee": "cp1250", "mscyrl": "cp1251", "msgreek": "cp1253", "msturk": "cp1254",
    "mshebr": "cp1255", "msarab": "cp1256", "winbaltrim": "cp1257",
    "windows31j": "cp932", "cswindows31j": "cp932", "sjisopen": "cp932", "sjiswin": "cp932", "sjisms": "cp932",
    "eucjpms": "euc_jp", "eucjpopen": "euc_jp", "eucjpwin": "euc_jp",
    "cnbig5": "big5", "windows874": "cp874", "dos874": "cp874", "dos866": "cp866",
    "ucs2": "utf_16", "iso10646ucs2": "utf_16", "csunicode": "utf_16", "ucs2le": "utf_16_le",
    "unicodelittle": "utf_16_le", "ucs2be": "utf_16_be", "unicodebig": "utf_16_be",
    "ucs4": "utf_32", "iso10646ucs4": "utf_32", "csucs4": "utf_32", "ucs4le": "utf_32_le", "ucs4be": "utf_32_be",
    "unicode11utf8": "utf_8", "unicode20utf8": "utf_8", "latin9": "iso8859_15",
    "iso88596i": "iso8859_6", "iso88596e": "iso8859_6", "iso88598i": "iso8859_8", "iso88598e": "iso8859_8",
    "logical": "iso8859_8", "visual": "iso8859_8", "koi8r": "koi8_r",
}


def _label_key(label: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", label.lower())
    return key[1:] if key.startswith("x") and key[1:] in _OTHER_LABELS else key


def _codec(label: str | None) -> str | None:
    """Python's codec name for an encoding label, or None if unknown or not a text encoding."""
    if not label:
        return None
    label = label.strip().lower()
    try:
        info = codecs.lookup(label)
    except LookupError:
        other = _OTHER_LABELS.get(_label_key(label))
        if other is None and label.startswith("x-"):  # x-mac-roman, x-cp1251, x-gbk, x-euc-jp
            return _codec(label[2:])
        if other is None:
            return None
        info = codecs.lookup(other)
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None
    name = info.name.replace("-", "_")
    return _SUPERSETS.get(name, name)


def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def _guess(data: bytes) -> str:
    """Best guess at the encoding of undeclared, non-UTF-8 bytes.

    In Western European text the non-ASCII bytes stand alone or in pairs between ASCII letters
    ("tr\xe8s", "informa\xe7\xf5es") and windows-1252 is by far the likeliest; statistical
    detectors often pick a sibling code page (windows-1250, -1257) for such short runs. Longer
    runs (Cyrillic, Greek, Hebrew or Thai words, CJK text) go to charset_normalizer.
    """
    runs = _HIGH_RUN.findall(data)
    high = sum(map(len, runs))
    short = sum(len(r) for r in runs if len(r) <= 2)
    if high and short >= 0.7 * high:
        return "cp1252" if _strict(data, "cp1252") is not None else "latin_1"
    from charset_normalizer import from_bytes
    best = from_bytes(data[:200_000]).best()
    codec = _codec(best.encoding) if best is not None else None
    if codec and _strict(data, codec) is not None:
        return codec
    return "cp1252" if _strict(data, "cp1252") is not None else "latin_1"


def http_charset(content_type: str | None) -> str | None:
    """The charset label of a Content-Type header, if any."""
    m = _HTTP_CHARSET.search(content_type or "")
    return m.group(1) if m else None


@dataclass(frozen=True)
class Decoded:
    text: str
    codec: str  # the codec the bytes were decoded from
    note: str | None = None  # set when the encoding was guessed or bytes were replaced


def decode(data: bytes, declared: Sequence[str | None] = ()) -> Decoded:
    """Decode untrusted bytes; ``declared`` are the labels the document and its server give,
    most trusted first.

    Order: a BOM; a UTF-16/32 byte pattern; valid UTF-8 (bytes that are valid UTF-8 are almost
    never meant as anything else, whatever is declared); the declared labels, when the bytes
    decode under them; mostly-UTF-8 with a few bad bytes; a guess.
    """
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return Decoded(data[len(bom):].decode(codec, "replace"), codec)
    head = data[:256]
    for pattern, codec in _WIDE_PATTERNS:
        if pattern.match(head):
            usable = len(data) - len(data) % (4 if "32" in codec else 2)
            return Decoded(data[:usable].decode(codec, "replace"), codec)
    # 7-bit encodings that switch character sets with escapes (ISO-2022-JP mail-era Japanese
    # feeds, HZ) are valid ASCII, so "valid UTF-8 wins" would keep their escapes as text.
    for codec in (c for c in map(_codec, declared) if c):
        marker = _SEVEN_BIT_MARKERS.get(codec)
        if marker and marker in data and not _HIGH_BYTE.search(data):
            text = _strict(data, codec)
            if text is not None:
                return Decoded(text, codec)
    text = _strict(data, "utf_8")
    if text is not None:
        return Decoded(text, "utf_8")
    for codec in (c for c in map(_codec, declared) if c):
        if codec.startswith(("utf_8", "utf_16", "utf_32")):
            continue  # the bytes are not UTF-8, and have no UTF-16/32 pattern
        text = _strict(data, codec)
        if text is None and codec == "cp1252":  # the five bytes windows-1252 leaves undefined
            codec, text = "latin_1", data.decode("latin_1")
        if text is not None:
            return Decoded(text, codec)
    said = next((label for label in declared if label), None)
    sequences = _UTF8_MULTIBYTE.findall(data)
    strays = len(_HIGH_BYTE.findall(data)) - sum(map(len, sequences))
    if len(sequences) >= strays:
        # Good UTF-8 with a few stray bytes: keep UTF-8 and replace the strays.
        return Decoded(data.decode("utf-8", "replace"), "utf_8", f"{strays} invalid UTF-8 byte(s) replaced")
    codec = _guess(data)
    note = (f"declared encoding {said!r} does not fit the bytes; decoded as {codec}" if said
            else f"no encoding declared and not UTF-8; decoded as {codec}")
    return Decoded(data.decode(codec, "replace"), codec, note)

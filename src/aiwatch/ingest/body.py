"""Untrusted feed bodies made safe and well-formed before an XML parser sees them.

Feed bodies come from servers we do not control. A body still gzip-compressed (a server that
gzips without saying so) is decompressed by :func:`gunzip_capped`, with a cap on the
decompressed size. :func:`prepare_xml` then turns the bytes into UTF-8 XML that expat parses
without surprises:

* the text is decoded once, here: byte-order marks, UTF-16/32 without a BOM (sniffed from the
  byte pattern of the first characters), XML declarations and HTTP charsets that are wrong
  (the bytes are tried against them, valid UTF-8 wins), and a guess when nothing fits;
* everything before the root element (XML declaration, comments, processing instructions,
  junk such as a blank line or a PHP warning, and above all the DOCTYPE with its internal
  subset) is dropped and replaced by one ``<?xml version="1.0" encoding="utf-8"?>``. With no
  DOCTYPE left, no parser can expand nested or huge entities (billion laughs, quadratic
  blow-up) or fetch an external DTD or entity (``SYSTEM "file:///etc/passwd"``);
* entity references are rewritten so that a plain XML parser needs no DTD: HTML named
  entities (``&nbsp;`` ``&eacute;``) become character references, short literal entities the
  document declared itself are inlined within a small budget, unknown names and bare ``&``
  become literal text, and C0 control characters XML forbids are removed.

The result is still parsed tolerantly by feedparser; this module only removes the reasons a
strict parse fails on real feeds, and every reason an XML parser could be made to do harm.
"""

from __future__ import annotations

import html.entities
import re
import zlib
from dataclasses import dataclass

from ..charset import decode, http_charset

MAX_DECOMPRESSED_BYTES = 10_000_000
GZIP_MAGIC = b"\x1f\x8b"
XML_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>'

_MAX_INLINE_ENTITY_CHARS = 256  # a declared entity longer than this is not inlined
_MIN_INLINE_BUDGET = 1_000_000  # chars declared entities may add, at least (or the body's size)
_JUNK_SEARCH_CHARS = 65_536  # how far into leading junk to look for the real XML declaration
_MAX_RESTARTS = 3  # times the prolog walk resumes after junk before it cuts at a start tag


class BodyError(ValueError):
    """The body cannot be turned into a document (e.g. a gzip bomb); ``str()`` is the reason."""


@dataclass(frozen=True)
class PreparedXml:
    data: bytes  # UTF-8, starting with XML_DECLARATION; lines numbered as in the body served
    encoding: str  # the encoding the body was decoded from
    note: str | None = None  # what was repaired that the user may want to know (a guessed encoding)
    root: str = ""  # the name of the first element, lower-cased ("" when there is none)


# -- compression ---------------------------------------------------------------------------

def gunzip_capped(data: bytes, limit: int = MAX_DECOMPRESSED_BYTES) -> bytes:
    """Decompress a gzip body (all members), refusing more than ``limit`` bytes of output.

    A truncated stream yields what could be decompressed; corrupt data raises BodyError.
    """
    out = bytearray()
    rest = data
    while rest[:2] == GZIP_MAGIC:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            if out:
                break  # trailing garbage after a good member
            raise BodyError(f"body looks gzip-compressed but cannot be decompressed ({exc})") from None
        if len(out) > limit:
            raise BodyError(f"gzip-compressed body is over {limit:,} bytes once decompressed")
        if not inflater.eof:
            break  # truncated: keep what we have
        rest = inflater.unused_data
    return bytes(out)


# -- decoding --------------------------------------------------------------------------------

_XML_DECL_ENCODING = re.compile(
    rb"""^[ \t\r\n]*<\?xml[^>]{0,200}?encoding[ \t\r\n]*=[ \t\r\n]*["']([A-Za-z0-9._:+-]{1,40})["']""")


# "<?xml" in EBCDIC, after EBCDIC spaces and line ends: the declaration is unreadable as ASCII.
_EBCDIC_DECLARATION = re.compile(rb"^[\x40\x25\x15\x0d]*\x4c\x6f\xa7\x94\x93")


def decode_body(data: bytes, content_type: str = "") -> tuple[str, str, str | None]:
    """Decode a feed body: returns (text, codec used, a note when the encoding was guessed).

    The XML declaration's encoding comes before the HTTP charset (see :func:`aiwatch.charset.decode`).
    """
    m = _XML_DECL_ENCODING.match(data)
    label = m.group(1).decode("ascii") if m else None
    if label is None and _EBCDIC_DECLARATION.match(data):
        m = _XML_DECL_ENCODING.match(data[:256].decode("cp037").encode("ascii", "replace"))
        label = m.group(1).decode("ascii") if m else "cp037"
    decoded = decode(data, [label, http_charset(content_type)])
    return decoded.text, decoded.codec, decoded.note


# -- the prolog and its DOCTYPE ------------------------------------------------------------------

_NAME_START = re.compile(r"<[A-Za-z_]")
_SPACE = " \t\r\n\ufeff"
_WARNING_TAGS = frozenset({"br", "b", "p", "div", "font", "span", "strong", "pre", "table", "hr"})
_SPACE_RUN = re.compile("[ \t\r\n\ufeff]+")
_ROOT_NAME = re.compile(r"<([A-Za-z_][\w.:-]*)")
_DOCTYPE_STOP = re.compile(r"""["'\[>]""")
_SUBSET_STOP = re.compile(r"""["'\]]|<!--|<\?""")
_ENTITY_DECL = re.compile(
    r"""<!ENTITY\s+([A-Za-z_][\w.:-]*)\s+(?:"([^"]*)"|'([^']*)')\s*>""")
_SAFE_ENTITY_VALUE = re.compile(r"(?:[^&<%]|&#[0-9]{1,7};|&#x[0-9a-fA-F]{1,6};)*")
_ENTITY_VALUE_ESCAPES = str.maketrans({'"': "&quot;", "'": "&apos;", ">": "&gt;"})


def _doctype_end(text: str, start: int) -> tuple[int, str] | None:
    """End of the DOCTYPE at ``start`` and its internal subset ("" if none); None if unterminated."""
    j = start + 9
    subset = ""
    while True:
        m = _DOCTYPE_STOP.search(text, j)
        if m is None:
            return None
        c = m.group()
        if c == ">":
            return m.end(), subset
        if c == "[":
            k = m.end()
            while True:
                s = _SUBSET_STOP.search(text, k)
                if s is None:
                    return None
                tok = s.group()
                if tok == "]":
                    subset = text[m.end():s.start()]
                    j = s.end()
                    break
                close = {"<!--": "-->", "<?": "?>"}.get(tok, tok)
                end = text.find(close, s.end())
                if end < 0:
                    return None
                k = end + len(close)
        else:  # a quoted system or public id
            end = text.find(c, m.end())
            if end < 0:
                return None
            j = end + 1


def _declared_entities(subset: str) -> dict[str, str]:
    """The document's own short literal entities (``<!ENTITY copy "&#169;">``), ready to inline.

    Anything else (references to other entities, external entities, parameter entities, long
    values) is dropped: such declarations exist to expand or to fetch, never to carry a feed.
    """
    out: dict[str, str] = {}
    for m in _ENTITY_DECL.finditer(subset):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        if len(value) <= _MAX_INLINE_ENTITY_CHARS and _SAFE_ENTITY_VALUE.fullmatch(value):
            out.setdefault(m.group(1), value.translate(_ENTITY_VALUE_ESCAPES))
    return out


def split_prolog(text: str) -> tuple[int, dict[str, str]]:
    """Where the root element starts, and the safe entities declared before it.

    Walks the prolog: whitespace, XML declarations, comments, processing instructions and
    DOCTYPEs are skipped. Leading junk (text before the real XML declaration, an unterminated
    DOCTYPE or comment, an HTML-formatted PHP warning) is skipped to the next ``<?xml`` or
    element start tag. After a few such restarts the walk gives up and cuts at the next start
    tag, so that no input makes it slow.
    """
    entities: dict[str, str] = {}
    i, n = 0, len(text)
    restarts = 0
    while i < n:
        if text[i] in _SPACE:
            i = _SPACE_RUN.match(text, i).end()
            continue
        if text.startswith("<!--", i):
            end = text.find("-->", i + 4)
            if end >= 0:
                i = end + 3
                continue
        elif text.startswith("<?", i):
            end = text.find("?>", i + 2)
            if end >= 0:
                i = end + 2
                continue
        elif text[i:i + 9].upper() == "<!DOCTYPE":
            found = _doctype_end(text, i)
            if found is not None:
                i = found[0]
                for name, value in _declared_entities(found[1]).items():
                    entities.setdefault(name, value)
                continue
        elif _NAME_START.match(text, i):
            # A PHP warning or notice printed before the feed ("<br />\n<b>Warning</b>: ...")
            # starts with markup; the real document follows with its XML declaration.
            if _ROOT_NAME.match(text, i).group(1).lower() not in _WARNING_TAGS or restarts >= _MAX_RESTARTS:
                return i, entities
            decl = text.find("<?xml", i + 1, i + _JUNK_SEARCH_CHARS)
            if decl < 0:
                return i, entities
            restarts += 1
            i = decl
            continue
        # Junk, or a construct that never ends: resume at the real XML declaration if one
        # follows soon (text printed before it), otherwise at the next element start tag.
        restarts += 1
        decl = text.find("<?xml", i + 1, i + _JUNK_SEARCH_CHARS) if restarts <= _MAX_RESTARTS else -1
        if decl > i:
            i = decl
            continue
        m = _NAME_START.search(text, i + 1)
        return (m.start() if m else n), entities
    return n, entities


# -- entity references --------------------------------------------------------------------------

_HTML_ENTITIES = {name[:-1]: "".join(f"&#{ord(ch)};" for ch in value)
                  for name, value in html.entities.html5.items() if name.endswith(";")}
_XML_PREDEFINED = frozenset({"amp", "lt", "gt", "quot", "apos"})
_REFERENCES = re.compile(
    r"<!\[CDATA\[.*?(?:\]\]>|\Z)|<!--.*?(?:-->|\Z)"
    r"|&(?!(?:amp|lt|gt|quot|apos);)(?:(#[0-9]{1,8}|#[xX][0-9a-fA-F]{1,8}|[A-Za-z_][\w.:-]{0,63});)?", re.S)
_FORBIDDEN_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_char_ok(cp: int) -> bool:
    return (cp in (0x9, 0xA, 0xD) or 0x20 <= cp <= 0xD7FF or 0xE000 <= cp <= 0xFFFD
            or 0x10000 <= cp <= 0x10FFFF)


def _char_reference(ref: str) -> str:
    cp = int(ref[2:], 16) if ref[1] in "xX" else int(ref[1:])
    if 0x80 <= cp <= 0x9F:  # C1 controls in a feed are windows-1252 characters, written as numbers
        try:
            cp = ord(bytes([cp]).decode("cp1252"))
        except UnicodeDecodeError:
            pass
    return f"&#{cp};" if _xml_char_ok(cp) else "&#xFFFD;"


def normalise_references(body: str, declared: dict[str, str]) -> str:
    """Rewrite ``&...`` so that the body is well-formed without a DTD (CDATA left as it is)."""
    budget = max(_MIN_INLINE_BUDGET, len(body))

    def fix(m: re.Match) -> str:
        nonlocal budget
        ref = m.group(1)
        if ref is None:
            return m.group() if m.group().startswith("<") else "&amp;"  # CDATA, comment, bare "&"
        if ref[0] == "#":
            return _char_reference(ref)
        if ref in _XML_PREDEFINED:
            return m.group()
        value = declared.get(ref)
        if value is not None and budget >= len(value):
            budget -= len(value)
            return value
        value = _HTML_ENTITIES.get(ref)
        if value is not None:
            return value
        return "&amp;" + ref + ";"  # unknown: keep it visible as text, as a browser does

    return _FORBIDDEN_CHARS.sub("", _REFERENCES.sub(fix, body))


# -- all together ----------------------------------------------------------------------------------

def prepare_xml(data: bytes, content_type: str = "") -> PreparedXml:
    """Safe, well-formed-as-possible UTF-8 XML from an untrusted body (see the module doc)."""
    text, codec, note = decode_body(data, content_type)
    start, declared = split_prolog(text)
    body = normalise_references(text[start:], declared)
    m = _ROOT_NAME.match(body)
    root = m.group(1).lower() if m else ""
    # As many line breaks as the dropped prolog had, so that a parser's line numbers still
    # point at the right line of the document as served.
    head = XML_DECLARATION + "\n" * text.count("\n", 0, start)
    # "replace": a lone surrogate (from UTF-7, say) cannot be written as UTF-8.
    return PreparedXml((head + body).encode("utf-8", "replace"), codec, note, root)

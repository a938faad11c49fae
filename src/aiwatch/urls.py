"""URLs: one spelling per article (so copies under other URLs dedup), and links safe to show.

Every function here is total: a URL from a feed or a page can be anything (a port of 99999, a
broken IPv6 literal, control characters), and none of them may raise. A URL that cannot be
parsed is kept as it was written (stripped), which still gives it a stable id.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

_TRACKING = re.compile(
    r"^(utm_[a-z_]+|fbclid|gclid|dclid|gbraid|wbraid|msclkid|mc_cid|mc_eid|yclid|igshid|"
    r"_hsenc|_hsmi|mkt_tok|oly_enc_id|oly_anon_id|vero_id|ref_src|cmpid|sr_share|spm)$",
    re.IGNORECASE,
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f]")


def canonical_url(url: str) -> str:
    """Normalise a URL: scheme and host case, default port, fragment, tracking parameters,
    percent-encoding and an empty path. Idempotent: canonical_url(canonical_url(u)) == canonical_url(u).
    """
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # an unclosed IPv6 bracket, a port of 99999: not fetchable, still an id
        return url
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal keeps its brackets
    port = port if port and _DEFAULT_PORTS.get(scheme) != port else None
    netloc = host if port is None else f"{host}:{port}"
    path = quote(unquote(parts.path or "/"), safe="/:@!$&'()*+,;=-._~")
    path = re.sub(r"/{2,}", "/", path)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING.match(k)]
    return urlunsplit((scheme, netloc, path, urlencode(query, doseq=True), ""))


def url_key(url: str) -> str:
    """The article id: a short stable hash of the canonical URL."""
    return hashlib.sha256(canonical_url(url).encode("utf-8", "surrogatepass")).hexdigest()[:20]


def site_of(url: str) -> str:
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""
    return host[4:] if host.startswith("www.") else host


def safe_link(url: str | None) -> str | None:
    """``url`` when it is fit to be a link in a digest (http or https, a host, no control
    characters or spaces), else None: a feed's ``javascript:`` or ``data:`` link is shown as text."""
    if not url:
        return None
    url = url.strip()
    if _CONTROL.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return url

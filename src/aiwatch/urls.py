"""URL canonicalisation: one spelling per article, so copies under other URLs dedup."""

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


def canonical_url(url: str) -> str:
    """Normalise a URL: scheme and host case, default port, fragment, tracking parameters,
    percent-encoding and an empty path. Idempotent: canonical_url(canonical_url(u)) == canonical_url(u).
    """
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    port = parts.port if parts.port and _DEFAULT_PORTS.get(scheme) != parts.port else None
    netloc = host if port is None else f"{host}:{port}"
    if parts.username:
        netloc = "@" + netloc  # never keep credentials in an identifier
    path = quote(unquote(parts.path or "/"), safe="/:@!$&'()*+,;=-._~")
    path = re.sub(r"/{2,}", "/", path)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING.match(k)]
    return urlunsplit((scheme, netloc.lstrip("@"), path, urlencode(query, doseq=True), ""))


def url_key(url: str) -> str:
    """The article id: a short stable hash of the canonical URL."""
    return hashlib.sha256(canonical_url(url).encode("utf-8")).hexdigest()[:20]


def site_of(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    return host[4:] if host.startswith("www.") else host

"""The only module that talks to the network.

``HttpClient.fetch(url)`` returns the bytes of one response as a :class:`Fetched` record, or
raises :class:`FetchError` with a one-line reason. It enforces the policy aiwatch needs on
untrusted URLs: http(s) only, no private addresses unless allowed (checked on every redirect
hop), a bounded number of redirects, a cap on the decoded body size and a deadline on the
whole response. Transient failures (timeouts, connection errors, 429, 502, 503, 504) are
retried a bounded number of times with jittered exponential backoff, honouring Retry-After.
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping
from urllib.parse import urljoin, urlsplit

import httpx

from . import __version__
from .errors import BlockedURLError, FetchError

log = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Fetched:
    """One HTTP response, read in full: what parse and extract stages work on."""

    requested_url: str
    url: str  # after redirects
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    content: bytes = b""

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def user_agent(contact: str) -> str:
    return f"aiwatch/{__version__} (+{contact})"


def _blocked_address(ip: ipaddress._BaseAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved
            or ip.is_multicast or ip.is_unspecified)


def check_url(url: str, *, allow_private: bool, allowed_hosts: frozenset[str] = frozenset()) -> None:
    """Refuse URLs aiwatch must never fetch; raises BlockedURLError.

    ``allowed_hosts`` ("host:port") are trusted even on private addresses.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise BlockedURLError(url, f"scheme {parts.scheme or '(none)'!r} is not allowed, only http and https")
    host = parts.hostname
    if not host:
        raise BlockedURLError(url, "URL has no host")
    if allow_private or parts.netloc.lower() in allowed_hosts:
        return
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80),
                                   proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise FetchError(url, f"cannot resolve host {host}: {exc.strerror}", transient=True) from None
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if _blocked_address(ip):
            raise BlockedURLError(
                url, f"host {host} resolves to private address {ip}; "
                     "set [fetch] allow_private_addresses = true to allow it")


def _retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


class HostGate:
    """At most ``limit`` requests in flight to one host, and starts at least ``delay`` apart.

    ``clock`` and ``sleep`` are injectable, so the spacing is tested without waiting."""

    def __init__(self, limit: int, delay: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self._sem = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self._delay = delay
        self._next = 0.0
        self._clock, self._sleep = clock, sleep

    def __enter__(self) -> "HostGate":
        self._sem.acquire()
        if self._delay > 0:
            with self._lock:
                now = self._clock()
                start = max(now, self._next)
                self._next = start + self._delay
            if start > now:
                self._sleep(start - now)
        return self

    def __exit__(self, *exc) -> None:
        self._sem.release()


class HttpClient:
    """A thread-safe fetcher with per-host limits (concurrency and spacing). A context manager."""

    def __init__(self, *, timeout: float = 20.0, max_bytes: int = 10_000_000, max_redirects: int = 5,
                 allow_private: bool = False, contact: str = "https://github.com/aiwatch/aiwatch",
                 per_host: int = 2, host_delay: float = 0.0, retries: int = 2, backoff: float = 1.0,
                 max_retry_wait: float = 60.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, allowed_hosts: frozenset[str] = frozenset()):
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.allow_private = allow_private
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)
        self.per_host = per_host
        self.host_delay = host_delay
        self.retries = retries
        self.backoff = backoff
        self.max_retry_wait = max_retry_wait
        self._sleep = sleep
        self._clock = clock
        self._host_gates: dict[str, HostGate] = {}
        self._lock = threading.Lock()
        self._client = httpx.Client(
            follow_redirects=False,
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": user_agent(contact), "Accept-Encoding": "gzip, deflate"},
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            trust_env=False,
        )

    @classmethod
    def from_config(cls, config) -> "HttpClient":
        f = config.fetch
        return cls(timeout=f.timeout, max_bytes=f.max_bytes, max_redirects=f.max_redirects,
                   allow_private=f.allow_private_addresses, contact=f.contact, per_host=f.per_host,
                   host_delay=f.host_delay, retries=f.retries)

    def __enter__(self) -> "HttpClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _host_slot(self, url: str) -> HostGate:
        host = (urlsplit(url).hostname or "").lower()
        with self._lock:
            gate = self._host_gates.get(host)
            if gate is None:
                gate = self._host_gates[host] = HostGate(self.per_host, self.host_delay, self._clock, self._sleep)
            return gate

    def fetch(self, url: str, *, etag: str | None = None, last_modified: str | None = None,
              accept: str | None = None) -> Fetched:
        """GET ``url`` under aiwatch's policy; conditional when etag/last_modified are given."""
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        elif last_modified:  # If-Modified-Since only when there is no ETag
            headers["If-Modified-Since"] = last_modified
        if accept:
            headers["Accept"] = accept
        attempt = 0
        while True:
            try:
                return self._fetch_once(url, headers)
            except FetchError as exc:
                if not exc.transient or attempt >= self.retries:
                    raise
                wait = self.backoff * (2 ** attempt) * (0.5 + random.random())
                if exc.retry_after is not None:
                    wait = max(wait, exc.retry_after)
                if wait > self.max_retry_wait:
                    raise
                attempt += 1
                log.debug("retrying %s in %.1fs after: %s", url, wait, exc.reason)
                self._sleep(wait)

    def _fetch_once(self, url: str, headers: dict[str, str]) -> Fetched:
        start = time.monotonic()
        deadline = start + self.timeout
        current = url
        seen = {url}
        for _hop in range(self.max_redirects + 1):
            check_url(current, allow_private=self.allow_private, allowed_hosts=self.allowed_hosts)
            with self._host_slot(current):
                status, resp_headers, body = self._get(current, headers, deadline, url)
            if status in REDIRECT_STATUS:
                location = resp_headers.get("location")
                if not location:
                    raise FetchError(url, f"HTTP {status} redirect without a Location header", status=status)
                nxt = urljoin(current, location.strip())
                if nxt in seen:
                    raise FetchError(url, f"redirect loop at {nxt}", status=status)
                seen.add(nxt)
                current = nxt
                continue
            if status == 304 or 200 <= status < 300:
                return Fetched(url, current, status, resp_headers, body)
            raise FetchError(url, f"HTTP {status}", status=status, transient=status in TRANSIENT_STATUS,
                             retry_after=_retry_after(resp_headers.get("retry-after"), time.time()))
        raise FetchError(url, f"more than {self.max_redirects} redirects")

    def _get(self, url: str, headers: dict[str, str], deadline: float, original: str):
        try:
            with self._client.stream("GET", url, headers=headers) as resp:
                resp_headers = {k.lower(): v for k, v in resp.headers.items()}
                if resp.status_code in REDIRECT_STATUS or resp.status_code == 304 or resp.status_code >= 400:
                    return resp.status_code, resp_headers, b""
                declared = resp_headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise FetchError(original, f"response of {int(declared):,} bytes is over the "
                                               f"{self.max_bytes:,}-byte cap")
                chunks, size = [], 0
                # iter_bytes decodes gzip/deflate, so the cap bounds the decompressed size too.
                for chunk in resp.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise FetchError(original, f"response is over the {self.max_bytes:,}-byte cap")
                    if time.monotonic() > deadline:
                        raise FetchError(original, f"response took longer than {self.timeout:g}s",
                                         transient=True)
                    chunks.append(chunk)
                return resp.status_code, resp_headers, b"".join(chunks)
        except FetchError:
            raise
        except httpx.TimeoutException:
            raise FetchError(original, f"timed out after {self.timeout:g}s", transient=True) from None
        except httpx.DecodingError as exc:
            raise FetchError(original, f"body could not be decoded: {exc}") from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise FetchError(original, f"connection broke off: {exc or type(exc).__name__}",
                             transient=True) from None
        except httpx.ConnectError as exc:
            raise FetchError(original, f"cannot connect: {exc or type(exc).__name__}", transient=True) from None
        except httpx.HTTPError as exc:
            raise FetchError(original, f"request failed: {exc or type(exc).__name__}") from None


def post_json(url: str, payload: dict, *, timeout: float = 30.0) -> int:
    """POST ``payload`` as JSON (webhook deliveries) and return the HTTP status. A failure is a
    FetchError whose reason names only the kind of error: a webhook URL can be a secret."""
    try:
        # trust_env: a webhook outside the network may have to go through the user's proxy
        with httpx.Client(timeout=timeout, headers={"User-Agent": f"aiwatch/{__version__}"}) as c:
            return c.post(url, json=payload).status_code
    except httpx.HTTPError as exc:
        raise FetchError(urlsplit(url).hostname or "webhook", type(exc).__name__, transient=True) from None


def probe(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status of a GET to a local service (health checks), or None when it does not answer."""
    try:
        with httpx.Client(timeout=timeout, trust_env=False) as c:
            return c.get(url).status_code
    except httpx.HTTPError:
        return None

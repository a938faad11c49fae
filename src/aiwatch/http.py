"""The only module that talks to the network.

``HttpClient.fetch(url)`` returns the bytes of one response as a :class:`Fetched` record, or
raises :class:`FetchError` with a one-line reason, and nothing else, whatever the URL or the
server sends. It enforces the policy aiwatch needs on untrusted URLs: http(s) only, no address
that is not globally routable unless allowed (checked on every redirect hop, and the connection
goes to an address that was checked: a name is resolved once), a bounded number of redirects,
a cap on the decoded body size with bounded memory (the body is decompressed here, piece by
piece) and one deadline on the whole fetch: connect, headers, body and every redirect hop.
Transient failures (timeouts, connection errors, 429, 502, 503, 504) are retried a bounded
number of times with jittered exponential backoff, honouring Retry-After.
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import random
import socket
import threading
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, Sequence
from urllib.parse import quote, urljoin, urlsplit

import httpcore
import httpx

from . import __version__
from .errors import BlockedURLError, FetchError

log = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORT = {"http": 80, "https": 443}
PIECE = 64 * 1024  # the most decompressed output held at once, beyond the body itself
MAX_VALIDATOR = 512  # a longer ETag or Last-Modified is not one a feed needs stored

Resolver = Callable[[str, int], Sequence[str]]  # (host, port) -> IP addresses


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


@dataclass(frozen=True)
class Target:
    """One checked hop: the URL as httpx will send it, and the addresses it may connect to."""

    url: httpx.URL
    host: str  # as the connection pool names it: IDNA-encoded, IPv6 without brackets
    port: int
    addresses: tuple[str, ...]


def user_agent(contact: str) -> str:
    # a header value must be ASCII: anything else in the contact setting is percent-encoded
    return f"aiwatch/{__version__} (+{quote(contact, safe=''.join(map(chr, range(0x21, 0x7f))))})"


def resolve_host(host: str, port: int) -> list[str]:
    """The default resolver: every TCP address of ``host``."""
    return list(dict.fromkeys(info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))


def _one_line(text: object, limit: int = 160) -> str:
    """Outside text (a URL, a header, an exception) made fit for a one-line reason."""
    text = "".join(c if c.isprintable() else "?" for c in str(text))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _visible_ascii(value: str | None) -> str | None:
    """``value`` stripped, if it is visible ASCII (spaces inside allowed) and not absurdly long:
    a validator that is stored and sent back next run must be (a non-ASCII one failed to
    encode and broke every later fetch of its feed)."""
    value = (value or "").strip()
    if 0 < len(value) <= MAX_VALIDATOR and all(" " <= c <= "~" for c in value):
        return value
    return None


# Not globally routable by the IANA registries, whatever this Python's ``is_global`` says (older
# ones lag behind): the cloud metadata services at 100.100.100.200 (Alibaba) and 192.0.0.192
# (Oracle), IPv4-compatible IPv6 (::7f00:1 is 127.0.0.1), 6to4 and Teredo, which carry their
# packets to an embedded IPv4 address.
_NOT_GLOBAL = tuple(ipaddress.ip_network(n) for n in
                    ("100.64.0.0/10", "192.0.0.0/24", "::/96", "2002::/16", "2001::/32"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def blocked_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether aiwatch refuses to connect to ``ip``: not globally routable, or multicast."""
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return blocked_address(ip.ipv4_mapped)
        if ip in _NAT64 and blocked_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)):
            return True
    return not ip.is_global or ip.is_multicast or any(ip in net for net in _NOT_GLOBAL)


def _parse(url: str, original: str, hop: int) -> tuple[httpx.URL, str, int]:
    """``url`` as httpx will send it, its host and port; FetchError when it cannot be fetched."""
    what = "URL" if hop == 0 else "redirect to a URL"
    try:
        parts = urlsplit(url)
        if parts.scheme.lower() not in DEFAULT_PORT:
            raise BlockedURLError(original, f"scheme {_one_line(parts.scheme or '(none)', 20)!r} is not "
                                            "allowed, only http and https")
        parts.port  # noqa: B018 -- raises for a port out of range or not a number
        parsed = httpx.URL(url)
    except FetchError:
        raise
    except Exception as exc:  # noqa: BLE001 -- ValueError, httpx.InvalidURL, UnicodeError: a bad URL
        raise FetchError(original, f"invalid {what}: {_one_line(exc)}") from None
    host = parsed.raw_host.decode("ascii", "replace")
    port = parsed.port if parsed.port is not None else DEFAULT_PORT.get(parsed.scheme, 0)
    if not host:
        raise BlockedURLError(original, f"{what} has no host")
    if not 0 < port < 65536:
        raise FetchError(original, f"invalid {what}: port {port} is out of range")
    return parsed, host, port


def check_url(url: str, *, allow_private: bool, allowed_hosts: frozenset[str] = frozenset(),
              resolve: Resolver = resolve_host, original: str | None = None, hop: int = 0) -> Target:
    """Refuse URLs aiwatch must never fetch (BlockedURLError, or FetchError for a bad URL or a
    name that does not resolve); return the hop with the addresses it may connect to.

    ``allowed_hosts`` ("host:port") are trusted even on private addresses."""
    original = url if original is None else original
    parsed, host, port = _parse(url, original, hop)
    try:
        addresses: Sequence[str] = (str(ipaddress.ip_address(host)),)
    except ValueError:  # a name, not a literal
        try:
            addresses = tuple(resolve(host, port))
        except OSError as exc:
            raise FetchError(original, f"cannot resolve host {_one_line(host, 80)}: "
                                       f"{_one_line(exc.strerror or exc)}", transient=True) from None
        except Exception as exc:  # noqa: BLE001 -- e.g. UnicodeError for a label over 63 characters
            raise FetchError(original, f"cannot resolve host {_one_line(host, 80)}: {_one_line(exc)}") from None
    try:
        ips = [ipaddress.ip_address(a) for a in addresses]
    except ValueError as exc:
        raise FetchError(original, f"cannot resolve host {_one_line(host, 80)}: {_one_line(exc)}") from None
    if not ips:
        raise FetchError(original, f"cannot resolve host {_one_line(host, 80)}: no address", transient=True)
    trusted = allow_private or {parsed.netloc.decode("ascii", "replace").lower(), f"{host}:{port}",
                                f"[{host}]:{port}"} & allowed_hosts
    for ip in ips:
        if not trusted and blocked_address(ip):
            raise BlockedURLError(
                original, f"host {_one_line(host, 80)} resolves to private address {ip}; "
                          "set [fetch] allow_private_addresses = true to allow it")
    return Target(parsed, host, port, tuple(str(ip) for ip in ips))


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: ASCII digits or an HTTP date, else None."""
    value = (value or "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():  # "²".isdigit() is True too
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _ascii_int(value: str | None) -> int | None:
    value = (value or "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) < 20 else None


def _content_coding(value: str | None, original: str) -> str:
    """The one content coding to undo ('' for none); stacked or unknown ones are refused."""
    codings = [c.strip().lower() for c in (value or "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if len(codings) > 1:
        raise FetchError(original, f"stacked content codings ({_one_line(', '.join(codings), 60)}) are refused")
    coding = {"x-gzip": "gzip"}.get(codings[0], codings[0]) if codings else ""
    if coding not in ("", "gzip", "deflate"):
        raise FetchError(original, f"unsupported content coding {_one_line(coding, 40)!r}")
    return coding


def _decoded(chunks: Iterable[bytes], coding: str) -> Iterator[bytes]:
    """The body with its content coding undone, in pieces of at most PIECE bytes: a bomb is
    stopped by the caller's cap while little more than the capped body is held. Bytes after the
    end of the compressed stream are ignored (as httpx did)."""
    if not coding:
        yield from chunks
        return
    inflater, head = None, b""
    for chunk in chunks:
        data = head + chunk
        if inflater is None:
            if len(data) < 2:  # deflate is told apart by its first two bytes
                head = data
                continue
            head = b""
            zlib_wrapped = (data[0] & 0x0F) == 8 and ((data[0] << 8) | data[1]) % 31 == 0
            wbits = 16 + zlib.MAX_WBITS if coding == "gzip" else zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS
            inflater = zlib.decompressobj(wbits)
        while True:
            out = inflater.decompress(data, PIECE)
            if out:
                yield out
            if inflater.eof:
                return
            data = inflater.unconsumed_tail
            if not data and len(out) < PIECE:  # input used up, and no output left pending
                break


class _Pin(threading.local):
    """What the request on this thread may connect to, and by when (read by the backend)."""

    host: str | None = None
    port: int | None = None
    addresses: tuple[str, ...] = ()
    deadline: float | None = None

    def left(self, timeout: float | None, expired: type[Exception]) -> float | None:
        """``timeout`` for one socket operation, cut to the time left before the deadline."""
        if self.deadline is None:
            return timeout
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise expired("deadline passed")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the deadline of the fetch using it: a
    server dripping its headers a byte at a time cannot stretch a fetch past ``timeout``."""

    def __init__(self, stream: httpcore.NetworkStream, pin: _Pin):
        self._stream, self._pin = stream, pin

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._pin.left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._pin.left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.NetworkStream:
        timeout = self._pin.left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, timeout), self._pin)

    def get_extra_info(self, info: str):
        return self._stream.get_extra_info(info)


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects only to the addresses checked for the request on this thread (TLS SNI and the
    Host header still use the name): the name is not resolved a second time, so DNS rebinding
    cannot swap in a private address after the check."""

    def __init__(self, pin: _Pin):
        self._pin = pin
        self._backend = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        pin = self._pin
        if (host, port) != (pin.host, pin.port):  # cannot happen; fail closed if it does
            raise httpcore.ConnectError(f"{host}:{port} was not checked")
        error: Exception = httpcore.ConnectError("no address")
        for address in pin.addresses:
            try:
                stream = self._backend.connect_tcp(address, port, pin.left(timeout, httpcore.ConnectTimeout),
                                                   local_address, socket_options)
            except httpcore.ConnectError as exc:
                error = exc
                continue
            return _DeadlineStream(stream, pin)
        raise error

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise httpcore.ConnectError("unix sockets are not used")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@contextmanager
def _as_httpx_errors():
    """httpcore's errors as httpx's, which share their names: what an httpx transport raises."""
    try:
        yield
    except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError,
            httpcore.UnsupportedProtocol, httpcore.ConnectionNotAvailable, httpcore.ProxyError) as exc:
        raise getattr(httpx, type(exc).__name__, httpx.TransportError)(str(exc)) from exc


class _Body(httpx.SyncByteStream):
    def __init__(self, stream):
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors():
            yield from self._stream

    def close(self) -> None:
        with _as_httpx_errors():
            self._stream.close()


class _Transport(httpx.BaseTransport):
    """httpx over httpcore's pool with the pinned backend (httpx's own transport takes none)."""

    def __init__(self, pin: _Pin):
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False), max_connections=64,
            max_keepalive_connections=16, keepalive_expiry=5.0, network_backend=_PinnedBackend(pin))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        core = httpcore.Request(request.method, httpcore.URL(scheme=url.raw_scheme, host=url.raw_host,
                                                             port=url.port, target=url.raw_path),
                                headers=request.headers.raw, content=request.stream, extensions=request.extensions)
        with _as_httpx_errors():
            resp = self._pool.handle_request(core)
        return httpx.Response(resp.status, headers=resp.headers, stream=_Body(resp.stream),
                              extensions=resp.extensions)

    def close(self) -> None:
        self._pool.close()


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
    """A thread-safe fetcher with per-host limits (concurrency and spacing). A context manager.

    ``resolve`` (host, port) -> addresses is injectable, so a test can play a rebinding DNS."""

    def __init__(self, *, timeout: float = 20.0, max_bytes: int = 10_000_000, max_redirects: int = 5,
                 allow_private: bool = False, contact: str = "https://github.com/aiwatch/aiwatch",
                 per_host: int = 2, host_delay: float = 0.0, retries: int = 2, backoff: float = 1.0,
                 max_retry_wait: float = 60.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, allowed_hosts: frozenset[str] = frozenset(),
                 resolve: Resolver = resolve_host):
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
        self.resolve = resolve
        self._sleep = sleep
        self._clock = clock
        self._host_gates: dict[str, HostGate] = {}
        self._lock = threading.Lock()
        self._pin = _Pin()
        self._client = httpx.Client(
            transport=_Transport(self._pin),
            follow_redirects=False,
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": user_agent(contact), "Accept-Encoding": "gzip, deflate"},
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

    def _host_slot(self, host: str) -> HostGate:
        with self._lock:
            gate = self._host_gates.get(host)
            if gate is None:
                gate = self._host_gates[host] = HostGate(self.per_host, self.host_delay, self._clock, self._sleep)
            return gate

    def fetch(self, url: str, *, etag: str | None = None, last_modified: str | None = None,
              accept: str | None = None) -> Fetched:
        """GET ``url`` under aiwatch's policy; conditional when etag/last_modified are given
        (a validator that is not visible ASCII is not sent)."""
        headers = {}
        etag, last_modified = _visible_ascii(etag), _visible_ascii(last_modified)
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
            except Exception as exc:  # a bug here fails one URL (logged in full), not the whole run
                log.warning("unexpected error fetching %s", _one_line(url), exc_info=True)
                raise FetchError(url, f"unexpected error: {type(exc).__name__}") from None

    def _fetch_once(self, url: str, headers: dict[str, str]) -> Fetched:
        # One budget for the whole fetch, every hop included; time spent waiting at a host's
        # gate (politeness) is not counted, as no request is in flight then.
        budget = self.timeout
        current = url
        seen = {url}
        for hop in range(self.max_redirects + 1):
            target = check_url(current, allow_private=self.allow_private, allowed_hosts=self.allowed_hosts,
                               resolve=self.resolve, original=url, hop=hop)
            with self._host_slot(target.host.lower()):
                started = time.monotonic()
                status, resp_headers, body = self._get(target, headers, started + budget, url)
                budget -= time.monotonic() - started
            if status in REDIRECT_STATUS:
                location = resp_headers.get("location")
                if not location:
                    raise FetchError(url, f"HTTP {status} redirect without a Location header", status=status)
                try:
                    nxt = urljoin(current, location.strip())
                except ValueError as exc:
                    raise FetchError(url, f"invalid redirect to a URL: {_one_line(exc)}", status=status) from None
                if nxt in seen:
                    raise FetchError(url, f"redirect loop at {_one_line(nxt)}", status=status)
                seen.add(nxt)
                current = nxt
                continue
            if status == 304 or 200 <= status < 300:
                return Fetched(url, current, status, resp_headers, body)
            raise FetchError(url, f"HTTP {status}", status=status, transient=status in TRANSIENT_STATUS,
                             retry_after=_retry_after(resp_headers.get("retry-after"), time.time()))
        raise FetchError(url, f"more than {self.max_redirects} redirects")

    def _get(self, target: Target, headers: dict[str, str], deadline: float, original: str):
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchError(original, f"timed out after {self.timeout:g}s", transient=True)
        pin = self._pin
        pin.host, pin.port, pin.addresses, pin.deadline = target.host, target.port, target.addresses, deadline
        try:
            with self._client.stream("GET", target.url, headers=headers, timeout=min(self.timeout, left)) as resp:
                resp_headers = {k.lower(): v for k, v in resp.headers.items()}
                for name in ("etag", "last-modified"):  # stored, and sent back next run
                    if name in resp_headers and not _visible_ascii(resp_headers[name]):
                        del resp_headers[name]
                if resp.status_code in REDIRECT_STATUS or resp.status_code == 304 or resp.status_code >= 400:
                    return resp.status_code, resp_headers, b""
                declared = _ascii_int(resp_headers.get("content-length"))
                if declared is not None and declared > self.max_bytes:
                    raise FetchError(original, f"response of {declared:,} bytes is over the "
                                               f"{self.max_bytes:,}-byte cap")
                coding = _content_coding(resp_headers.get("content-encoding"), original)
                body = bytearray()
                # read raw and decompress here: the cap bounds the decompressed size, piece by piece
                for piece in _decoded(resp.iter_raw(), coding):
                    if len(body) + len(piece) > self.max_bytes:
                        raise FetchError(original, f"response is over the {self.max_bytes:,}-byte cap")
                    if time.monotonic() > deadline:
                        raise FetchError(original, f"response took longer than {self.timeout:g}s",
                                         transient=True)
                    body += piece
                return resp.status_code, resp_headers, bytes(body)
        except FetchError:
            raise
        except httpx.TimeoutException:
            raise FetchError(original, f"timed out after {self.timeout:g}s", transient=True) from None
        except zlib.error as exc:
            raise FetchError(original, f"body could not be decoded: {_one_line(exc)}") from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise FetchError(original, f"connection broke off: {_one_line(exc or type(exc).__name__)}",
                             transient=True) from None
        except httpx.ConnectError as exc:
            raise FetchError(original, f"cannot connect: {_one_line(exc or type(exc).__name__)}",
                             transient=True) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise FetchError(original, f"request failed: {_one_line(exc or type(exc).__name__)}") from None
        finally:
            pin.host, pin.port, pin.addresses, pin.deadline = None, None, (), None


def post_json(url: str, payload: dict, *, timeout: float = 30.0) -> int:
    """POST ``payload`` as JSON (webhook deliveries) and return the HTTP status. A failure is a
    FetchError whose reason names only the kind of error: a webhook URL can be a secret."""
    try:
        # trust_env: a webhook outside the network may have to go through the user's proxy
        with httpx.Client(timeout=timeout, headers={"User-Agent": f"aiwatch/{__version__}"}) as c:
            return c.post(url, json=payload).status_code
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        try:
            host = urlsplit(url).hostname
        except ValueError:
            host = None
        raise FetchError(host or "webhook", type(exc).__name__,
                         transient=not isinstance(exc, httpx.InvalidURL)) from None


def probe(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status of a GET to a local service (health checks), or None when it does not answer."""
    try:
        with httpx.Client(timeout=timeout, trust_env=False) as c:
            return c.get(url).status_code
    except (httpx.HTTPError, httpx.InvalidURL):
        return None

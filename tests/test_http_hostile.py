"""Hostile servers and hostile strings against ``HttpClient``: whatever a feed, a page or a
stored validator holds, a fetch ends in a Fetched or a one-line FetchError, on time, in bounded
memory, and never connects to an address that was not checked.

``LocalServer`` sends what it can; ``RawServer`` below writes raw bytes for what it cannot
(headers dripped a byte at a time, header values that are not Latin-1, IPv6)."""

from __future__ import annotations

import gzip
import socket
import threading
import time
import tracemalloc
import zlib

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aiwatch.errors import BlockedURLError, FetchError
from aiwatch.http import Fetched, HttpClient
from aiwatch.localserver import LocalServer, Response

LAST_MODIFIED = "Tue, 17 Nov 2026 08:00:00 GMT"


class RawServer:
    """A TCP server on loopback that reads each request's head and hands the connection to
    ``answer(conn, head)``, then closes it. A context manager."""

    def __init__(self, answer, host: str = "127.0.0.1"):
        self.answer = answer
        self.heads: list[bytes] = []
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self._sock.listen(32)
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        self.port = self._sock.getsockname()[1]
        self.netloc = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def url(self, path: str) -> str:
        return f"http://{self.netloc}{path}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(5)
                head = b""
                while b"\r\n\r\n" not in head:
                    data = conn.recv(4096)
                    if not data:
                        return
                    head += data
                self.heads.append(head)
                self.answer(conn, head)
            except OSError:
                pass  # the client hung up (a timeout, a cap): expected here

    def __enter__(self) -> "RawServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


def reply(status: int = 200, headers: list[tuple[str, bytes]] = (), body: bytes = b"ok"):
    """An ``answer`` writing one response with raw header bytes."""
    def answer(conn, _head):
        lines = [f"HTTP/1.1 {status} X".encode()] + [k.encode() + b": " + v for k, v in headers]
        lines += [f"Content-Length: {len(body)}".encode(), b"Connection: close"]
        conn.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
    return answer


def no_dns(host: str, port: int) -> list[str]:
    """A resolver for the property tests: every name is a documentation address (refused), so
    nothing generated reaches a real network."""
    return ["192.0.2.1"]


def fetch_outcome(client: HttpClient, url: str, **kw) -> Fetched | FetchError:
    """The fetch's result or its FetchError; anything else is raised and fails the test."""
    try:
        return client.fetch(url, **kw)
    except FetchError as exc:
        assert exc.reason and "\n" not in exc.reason and "\r" not in exc.reason, exc.reason
        assert not exc.reason.startswith("unexpected"), exc.reason  # the safety net is not the answer
        return exc


@pytest.fixture(scope="module")
def server():
    with LocalServer() as s:
        s.add("/ok", Response(200, b"fine", {"Content-Type": "text/plain"}))
        yield s


def client(**kw) -> HttpClient:
    opts = dict(timeout=2.0, allow_private=True, retries=0, backoff=0.01)
    opts.update(kw)
    return HttpClient(**opts)


# 1. every error is a FetchError


def test_port_out_of_range_in_a_link_and_in_a_location(server):
    """urllib's ``.port`` raises ValueError for port 99999: it escaped from the private-address check."""
    start = server.add("/to-99999", Response(302, b"", {"Location": "http://127.0.0.1:99999/x"}))
    with client(allow_private=False, allowed_hosts=frozenset({f"127.0.0.1:{server.port}"})) as c:
        with pytest.raises(FetchError, match="(?i)invalid .*URL: port") as err:
            c.fetch("http://127.0.0.1:99999/feed.xml")
        assert not err.value.transient
        with pytest.raises(FetchError, match="(?i)invalid .*URL: port") as err:
            c.fetch(start)
        assert not err.value.transient


def test_malformed_urls_and_control_characters(server):
    """``http://[oops/`` raised ValueError; a control character raised httpx.InvalidURL (not an
    httpx.HTTPError)."""
    with client() as c:
        for url in ("http://[oops/", server.url("/ok\x01"), server.url("/ok") + "\x7f", "http://exa\x00mple.com/"):
            with pytest.raises(FetchError, match="invalid URL") as err:
                c.fetch(url)
            assert not err.value.transient and "\n" not in err.value.reason
    assert server.hits["/ok\x01"] == 0


def test_ipv6_literal_urls_work():
    """http://[::1]:port/ is fetched, on the address it names (the pinned connection keeps it)."""
    try:
        raw = RawServer(reply(body=b"over v6"), host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with raw:
        with client() as c:
            assert c.fetch(raw.url("/a")).content == b"over v6"
        with client(allow_private=False, allowed_hosts=frozenset({raw.netloc})) as c:
            assert c.fetch(raw.url("/b")).content == b"over v6"
    assert raw.heads[-1].startswith(b"GET /b ")


def test_retry_after_that_is_a_digit_but_not_ascii(server):
    """``"²".isdigit()`` is True and ``float("²")`` fails: the 503 must simply be retried."""
    waits: list[float] = []
    url = server.add("/superscript", Response(503, b"", {"Retry-After": "²"}), Response(200, b"later"))
    with client(retries=1, sleep=waits.append) as c:
        assert c.fetch(url).content == b"later"
    assert len(waits) == 1 and waits[0] < 1  # the plain backoff, not a wait read from "²"


def test_non_ascii_validators_are_neither_kept_nor_sent(server):
    """A non-ASCII ETag a server sent was stored and re-sent next run, failed to encode, and
    broke every later fetch of that feed."""
    url = server.add("/etag", Response(200, b"<rss/>", {"ETag": '"café"',
                                                        "Last-Modified": "Tue, 17 Nov 2026 08:00:00 GMÉ"}))
    long_url = server.add("/long-etag", Response(200, b"<rss/>", {"ETag": '"' + "a" * 5000 + '"'}))
    with client() as c:
        got = c.fetch(url)
        assert "etag" not in got.headers and "last-modified" not in got.headers  # not stored
        assert "etag" not in c.fetch(long_url).headers
        # validators stored by an older version: the bad one is dropped, the good one still sent
        assert c.fetch(url, etag='"café"', last_modified=LAST_MODIFIED).status == 200
        assert c.fetch(url, etag="€", last_modified="Dienstag, 17. März").status == 200
    sent = server.request_headers["/etag"]
    assert "if-none-match" not in sent[1] and sent[1]["if-modified-since"] == LAST_MODIFIED
    assert "if-none-match" not in sent[2] and "if-modified-since" not in sent[2]


# 2. content codings: decompressed here, capped, in bounded memory


def _bomb(megabytes: int) -> bytes:
    """``megabytes`` MB of zeros in one gzip layer, built without holding them."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1_000_000)
    return b"".join([z.compress(zeros) for _ in range(megabytes)] + [z.flush()])


def test_stacked_and_unknown_content_codings_are_refused(server):
    """``gzip, gzip`` bypassed the cap: each network chunk was decompressed twice in full before
    it was counted (a 3 KB response took 4 GB)."""
    twice = gzip.compress(gzip.compress(b"<rss>" + b"x" * 1000 + b"</rss>"))
    stacked = server.add("/stacked", Response(200, twice, {"Content-Encoding": "gzip, gzip"}))
    brotli = server.add("/br", Response(200, b"\x1b\x03\x00", {"Content-Encoding": "br"}))
    with client() as c:
        with pytest.raises(FetchError, match="stacked content codings") as err:
            c.fetch(stacked)
        assert not err.value.transient
        with pytest.raises(FetchError, match="unsupported content coding 'br'"):
            c.fetch(brotli)


def test_supported_content_codings_decode(server):
    text = b"".join(b"line %d of a longer feed body\n" % i for i in range(20_000))  # several pieces
    raw_deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    bodies = {"gzip": gzip.compress(text), "x-gzip": gzip.compress(text), "deflate": zlib.compress(text),
              "identity": text, "Deflate ": raw_deflate.compress(text) + raw_deflate.flush(),
              "identity, gzip": gzip.compress(text)}
    with client(max_bytes=len(text)) as c:
        for i, (coding, body) in enumerate(bodies.items()):
            url = server.add(f"/coded{i}", Response(200, body, {"Content-Encoding": coding}))
            assert c.fetch(url).content == text, coding
    assert server.request_headers["/coded0"][0]["accept-encoding"] == "gzip, deflate"


def test_gzip_bomb_stops_at_the_cap_in_bounded_memory(server):
    """One gzip layer under a 10 MB cap peaked near 150 MB: httpx decompressed each 64 KB
    network chunk in full before the cap was checked."""
    bomb = _bomb(200)
    url = server.add("/bomb", Response(200, bomb, {"Content-Encoding": "gzip"}))
    with client(max_bytes=10_000_000) as c:
        tracemalloc.start()
        try:
            with pytest.raises(FetchError, match="cap"):
                c.fetch(url)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    print(f"gzip bomb (200 MB in {len(bomb) // 1000} KB) under a 10 MB cap: peak {peak / 1e6:.1f} MB")
    assert peak < 30_000_000


# 3. one deadline for the whole fetch


def test_headers_dripped_a_byte_at_a_time_end_at_the_timeout():
    """The timeout was per read: headers at one byte every 0.5 s never tripped it (timeout=5,
    retries=0 took 96 s in a run)."""
    def drip(conn, _head):
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        for _ in range(120):  # up to 60 s
            conn.sendall(b"a")
            time.sleep(0.5)

    with RawServer(drip) as raw, client(timeout=2.0) as c:
        start = time.monotonic()
        with pytest.raises(FetchError, match="timed out|took longer") as err:
            c.fetch(raw.url("/feed.xml"))
        elapsed = time.monotonic() - start
    print(f"dripping headers, timeout=2, retries=0: failed after {elapsed:.2f} s")
    assert err.value.transient and elapsed < 3.5


def test_the_deadline_covers_every_redirect_hop(server):
    first = server.add("/slow-hop1", Response(302, b"", {"Location": "/slow-hop2"}, delay=0.6))
    server.add("/slow-hop2", Response(200, b"late", delay=0.6))
    with client(timeout=1.0) as c:
        start = time.monotonic()
        with pytest.raises(FetchError, match="timed out|took longer"):
            c.fetch(first)
    assert time.monotonic() - start < 1.5


# 4. SSRF: only globally routable addresses, and only the ones checked


@pytest.mark.parametrize("url", [
    "http://100.100.100.200/latest/meta-data/",  # Alibaba Cloud metadata (100.64.0.0/10)
    "http://192.0.0.192/opc/v1/instance/",  # Oracle Cloud metadata
    "http://[2002:7f00:1::1]/",  # 6to4 around 127.0.0.1
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo
    "http://[::7f00:1]/",  # IPv4-compatible 127.0.0.1
    "http://[::ffff:169.254.169.254]/",  # IPv4-mapped
    "http://224.0.0.1/",  # multicast
])
def test_addresses_that_are_not_globally_routable_are_refused(url):
    with client(allow_private=False, timeout=1.0) as c, pytest.raises(BlockedURLError, match="private address"):
        c.fetch(url)


def test_the_address_rule():
    from ipaddress import ip_address

    from aiwatch.http import blocked_address
    for public in ("8.8.8.8", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"):
        assert not blocked_address(ip_address(public)), public
    for private in ("127.0.0.1", "10.1.2.3", "169.254.169.254", "100.100.100.200", "192.0.0.192",
                    "2002:808:808::1", "::1", "fc00::1", "fe80::1", "ff02::1", "64:ff9b::7f00:1", "0.0.0.0"):
        assert blocked_address(ip_address(private)), private


def test_dns_rebinding_cannot_reach_loopback(server):
    """The name was resolved by the check and again by httpx: public first, loopback second,
    and the request reached 127.0.0.1."""
    answers = [["93.184.216.34"], ["127.0.0.1"]]  # what a rebinding DNS server says, in turn
    asked: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[min(len(asked), len(answers)) - 1]

    url = server.add("/secret", Response(200, b"internal"))
    with client(allow_private=False, timeout=1.0, resolve=rebinding) as c, pytest.raises(FetchError):
        c.fetch(url.replace("127.0.0.1", "rebind.example"))
    assert server.hits["/secret"] == 0 and asked == ["rebind.example"]  # resolved once, never loopback
    with client(allow_private=False, resolve=lambda h, p: ["93.184.216.34", "127.0.0.1"]) as c, \
            pytest.raises(BlockedURLError, match="127.0.0.1"):
        c.fetch(url.replace("127.0.0.1", "mixed.example"))  # every address is checked


def test_the_connection_goes_to_the_resolved_address_under_the_name(server):
    url = server.add("/named", Response(200, b"by name")).replace("127.0.0.1", "feeds.example")
    host = f"feeds.example:{server.port}"
    with client(allow_private=False, allowed_hosts=frozenset({host}), resolve=lambda h, p: ["127.0.0.1"]) as c:
        assert c.fetch(url).content == b"by name"
    assert server.request_headers["/named"][0]["host"] == host


# properties: nothing but FetchError, whatever the string


@pytest.fixture(scope="module")
def safe_client(server):
    """Only the local server's address is trusted; every name resolves to a refused address."""
    with client(allow_private=False, allowed_hosts=frozenset({f"127.0.0.1:{server.port}"}), resolve=no_dns,
                timeout=1.0, retries=1, sleep=lambda s: None) as c:
        yield c


FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FEW
@given(st.one_of(st.text(), st.text().map(lambda s: "http://" + s), st.text().map(lambda s: "LOCAL/" + s)))
@example("http://[oops/")
@example("http://127.0.0.1:99999/")
@example("LOCAL:0/")
@example("LOCAL/\x00")
@example("HTTPS://[::1%25eth0]/")
@example("http://" + "a" * 64 + ".com/")
@example("http://xn--/")
def test_any_string_as_a_url(safe_client, server, url):
    fetch_outcome(safe_client, url.replace("LOCAL", server.base_url))


HEADER_CASES = {
    "ETag": 200, "Last-Modified": 200, "Retry-After": 503, "Content-Encoding": 200, "Location": 302,
}


@pytest.fixture(scope="module")
def header_server():
    answer = {"current": reply()}
    with RawServer(lambda conn, head: answer["current"](conn, head)) as raw:
        raw.set = lambda a: answer.__setitem__("current", a)
        with client(allow_private=False, allowed_hosts=frozenset({raw.netloc}), resolve=no_dns, timeout=1.0,
                    retries=1, sleep=lambda s: None) as c:
            raw.client = c
            yield raw


@pytest.mark.parametrize("name", HEADER_CASES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1"))))
@example(value="²")
@example(value="gzip, gzip")
@example(value="http://127.0.0.1:99999/")
@example(value="http://[oops/")
@example(value="é")
def test_any_header_value(header_server, name, value):
    header_server.set(reply(HEADER_CASES[name], [(name, value.encode("utf-8", "surrogatepass"))],
                            body=gzip.compress(b"body")))
    c, url = header_server.client, header_server.url("/x")
    got = fetch_outcome(c, url)
    if isinstance(got, Fetched):  # what a run stores is sent back next run
        fetch_outcome(c, url, etag=got.headers.get("etag"), last_modified=got.headers.get("last-modified"))
    fetch_outcome(c, url, etag=value, last_modified=value)

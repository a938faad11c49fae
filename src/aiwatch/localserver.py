"""One real HTTP server on loopback, for the demo, the tests and the benchmarks.

A request is answered from ``routes`` when its path has fixed responses (served in turn, the
last one repeating: a 503 then a 200, a slow or dripping body, a wrong Content-Length), else
from ``site(path)``, which returns a body and its content type. Site bodies get an ETag (and the
server's Last-Modified, when set), and a conditional request that matches gets 304, as the feeds
aiwatch reads in the wild do. Anything else is a 404. Every request is recorded.

``extra_hosts`` serves the same content on more loopback addresses (127.0.0.2, ...) on the same
port, so a benchmark can have many "sites" without many ports.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Sequence

Site = Callable[[str], "tuple[bytes, str] | None"]  # path -> (body, content type), or None


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the status line
    drip: float = 0.0  # seconds between 64-byte pieces of the body
    declared_length: int | None = None  # a Content-Length other than len(body) (truncation)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # clients hanging up mid-body (caps, timeouts, kept-alive connections closed) are normal here


def free_port(preferred: int) -> int:
    """``preferred`` when it is free on 127.0.0.1, else 0 (any free port)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            return 0
    return preferred


class LocalServer:
    """Serve ``routes`` and ``site`` on 127.0.0.1 (and ``extra_hosts``). A context manager."""

    def __init__(self, site: Site | None = None, host: str = "127.0.0.1", port: int = 0,
                 extra_hosts: Sequence[str] = (), last_modified: str | None = None):
        self.site = site
        self.last_modified = last_modified
        self.routes: dict[str, list[Response]] = {}
        self.hits: Counter[str] = Counter()
        self.posts: dict[str, list[bytes]] = {}
        self.request_headers: dict[str, list[dict[str, str]]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers)
        self.in_flight = self.peak_in_flight = 0  # requests being answered at once
        self._lock = threading.Lock()
        handler = self._handler()
        first = _QuietServer((host, port), handler)
        self._servers = [first] + [_QuietServer((h, first.server_address[1]), handler) for h in extra_hosts]
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return self._servers[0].server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self._servers[0].server_address[0]}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def add(self, path: str, *responses: Response) -> str:
        """Serve ``responses`` in turn at ``path`` (the last one repeats); returns the URL."""
        self.routes[path] = list(responses)
        return self.url(path)

    def _route(self, path: str) -> Response | None:
        with self._lock:
            seq = self.routes.get(path) or self.routes.get(path.split("?", 1)[0])
            if not seq:
                return None
            return seq[0] if len(seq) == 1 else seq.pop(0)

    def _site_response(self, path: str, headers: dict[str, str]) -> Response:
        found = self.site(path) if self.site is not None else None
        if found is None:
            return Response(404, b"<html><body><h1>404 Not Found</h1></body></html>",
                            {"Content-Type": "text/html; charset=utf-8"})
        body, ctype = found
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        validators = {"ETag": etag} | ({"Last-Modified": self.last_modified} if self.last_modified else {})
        if headers.get("if-none-match") == etag or (
                not headers.get("if-none-match") and self.last_modified
                and headers.get("if-modified-since") == self.last_modified):
            return Response(304, b"", validators)
        return Response(200, body, {"Content-Type": ctype} | validators)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                # headers and body go out as two writes on a kept-alive connection: without this,
                # Nagle's algorithm and delayed ACKs add tens of ms to a response
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                server.posts.setdefault(self.path, []).append(self.rfile.read(length))
                self.do_GET(method="POST")

            def do_GET(self, method: str = "GET"):
                headers = {k.lower(): v for k, v in self.headers.items()}
                with server._lock:
                    server.hits[self.path] += 1
                    server.request_headers.setdefault(self.path, []).append(headers)
                    server.requests.append((method, self.path, headers))
                    server.in_flight += 1
                    server.peak_in_flight = max(server.peak_in_flight, server.in_flight)
                try:
                    self._answer(headers)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _answer(self, headers: dict[str, str]) -> None:
                resp = server._route(self.path) or server._site_response(self.path, headers)
                if resp.delay:
                    time.sleep(resp.delay)
                try:
                    self.send_response(resp.status)
                    for k, v in resp.headers.items():
                        self.send_header(k, v)
                    length = resp.declared_length if resp.declared_length is not None else len(resp.body)
                    self.send_header("Content-Length", str(length))
                    self.end_headers()
                    if resp.drip:
                        for i in range(0, len(resp.body), 64):
                            self.wfile.write(resp.body[i:i + 64])
                            self.wfile.flush()
                            time.sleep(resp.drip)
                    else:
                        self.wfile.write(resp.body)
                    if resp.declared_length is not None:
                        self.close_connection = True
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler

    def start(self) -> "LocalServer":
        for httpd in self._servers:
            # a short poll interval: shutdown() waits for it, once per server
            t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                                 name="aiwatch-local-server")
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        for httpd in self._servers:
            httpd.shutdown()
            httpd.server_close()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

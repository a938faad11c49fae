"""A real HTTP server on 127.0.0.1 with a route table, for tests of bad and odd responses."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the status line
    drip: float = 0.0  # seconds between 64-byte pieces of the body
    declared_length: int | None = None  # a Content-Length other than len(body) (truncation)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # clients hanging up mid-body (caps, timeouts) are what these tests provoke


class RouteServer:
    def __init__(self):
        self.routes: dict[str, list[Response]] = {}
        self.hits: Counter[str] = Counter()
        self.posts: dict[str, list[bytes]] = {}
        self.request_headers: dict[str, list[dict[str, str]]] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                server.posts.setdefault(self.path, []).append(self.rfile.read(length))
                self.do_GET()

            def do_GET(self):
                path = self.path
                server.hits[path] += 1
                server.request_headers.setdefault(path, []).append(
                    {k.lower(): v for k, v in self.headers.items()})
                seq = server.routes.get(path) or server.routes.get(path.split("?", 1)[0])
                if not seq:
                    resp = Response(404, b"not found")
                else:
                    resp = seq[0] if len(seq) == 1 else seq.pop(0)
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

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def add(self, path: str, *responses: Response) -> str:
        """Serve ``responses`` in turn at ``path`` (the last one repeats); returns the URL."""
        self.routes[path] = list(responses)
        return self.url(path)

    def __enter__(self) -> "RouteServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def rss(items: list[dict], title: str = "Test feed") -> bytes:
    """A small RSS 2.0 document from dicts with title, link, guid, description, pubDate."""
    parts = [f'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>{title}</title>'
             "<link>http://example.invalid/</link><description>test</description>"]
    for it in items:
        parts.append("<item>" + "".join(f"<{k}>{v}</{k}>" for k, v in it.items()) + "</item>")
    parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")


def page(title: str, paragraphs: list[str]) -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>"
            f"<body><nav><a href='/'>Home</a> <a href='/news'>News</a></nav>"
            f"<article><h1>{title}</h1>{body}</article><footer>Copyright test</footer></body></html>"
            ).encode("utf-8")

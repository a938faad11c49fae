"""The bundled demo: a small news corpus written by the project, served on 127.0.0.1.

``CorpusServer`` is a real HTTP server (standard library) that serves ``corpus/site`` with
``{{BASE}}`` replaced by its own address, answers conditional requests with 304, and returns
404 for anything missing. ``aiwatch demo`` and the tests use it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

CONTENT_TYPES = {
    ".xml": "application/xml; charset=utf-8",
    ".rdf": "application/rdf+xml; charset=utf-8",
    ".atom": "application/atom+xml; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
_LAST_MODIFIED = formatdate(1795000000, usegmt=True)  # fixed: the corpus does not change


def corpus_dir() -> Path:
    return Path(str(resources.files("aiwatch").joinpath("demo", "corpus")))


def manifest() -> dict[str, Any]:
    return json.loads((corpus_dir() / "manifest.json").read_text("utf-8"))


class _QuietHTTPServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client closing a kept-alive connection is not worth a traceback


class CorpusServer:
    """Serve a folder over HTTP on 127.0.0.1 with ``{{BASE}}`` substituted. A context manager."""

    def __init__(self, root: Path | None = None, host: str = "127.0.0.1", port: int = 0):
        self.root = (root or corpus_dir() / "site").resolve()
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep the demo's output clean
                pass

            def do_GET(self):
                server.requests.append(("GET", self.path, {k.lower(): v for k, v in self.headers.items()}))
                body, ctype = server._load(self.path)
                if body is None:
                    payload = b"<html><body><h1>404 Not Found</h1></body></html>"
                    self.send_response(404)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag or (
                        not self.headers.get("If-None-Match")
                        and self.headers.get("If-Modified-Since") == _LAST_MODIFIED):
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", _LAST_MODIFIED)
                self.end_headers()
                self.wfile.write(body)

        self._httpd = _QuietHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def _load(self, raw_path: str) -> tuple[bytes | None, str]:
        path = unquote(urlsplit(raw_path).path)
        target = (self.root / path.lstrip("/")).resolve()
        if self.root not in target.parents or not target.is_file():
            return None, ""
        body = target.read_bytes()
        if target.suffix in (".xml", ".rdf", ".atom", ".html", ".json"):
            body = body.replace(b"{{BASE}}", self.base_url.encode("ascii"))
        return body, CONTENT_TYPES.get(target.suffix, "application/octet-stream")

    def start(self) -> "CorpusServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="aiwatch-demo-server",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> "CorpusServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def demo_feeds(base_url: str) -> list[dict[str, str]]:
    """The demo's feed list as flow parameters: url and outlet name."""
    return [{"url": base_url + f["path"], "name": f["name"]} for f in manifest()["feeds"]]


def demo_settings(out_dir: Path) -> dict[str, Any]:
    """Settings the demo overrides: its own database and digest folder, and local addresses."""
    return {
        "storage.database": str(out_dir / "aiwatch.duckdb"),
        "digest.dir": str(out_dir),
        "fetch.allow_private_addresses": True,
        "fetch.host_delay": 0.0,  # our own local server: no need to space requests out
    }

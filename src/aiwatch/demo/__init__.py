"""The bundled demo: a small news corpus written by the project, served on 127.0.0.1.

:class:`CorpusServer` serves ``corpus/site`` with ``{{BASE}}`` replaced by its own address,
answers conditional requests with 304 and anything missing with 404, on the same local server
the tests and benchmarks use (:mod:`aiwatch.localserver`). ``aiwatch demo`` and the tests use it.
"""

from __future__ import annotations

import json
from email.utils import formatdate
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ..localserver import LocalServer, free_port

CONTENT_TYPES = {
    ".xml": "application/xml; charset=utf-8",
    ".rdf": "application/rdf+xml; charset=utf-8",
    ".atom": "application/atom+xml; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
_LAST_MODIFIED = formatdate(1795000000, usegmt=True)  # fixed: the corpus does not change

__all__ = ["CorpusServer", "corpus_dir", "demo_feeds", "demo_settings", "free_port", "manifest"]


def corpus_dir() -> Path:
    return Path(str(resources.files("aiwatch").joinpath("demo", "corpus")))


def manifest() -> dict[str, Any]:
    return json.loads((corpus_dir() / "manifest.json").read_text("utf-8"))


class CorpusServer(LocalServer):
    """Serve a folder over HTTP on 127.0.0.1 with ``{{BASE}}`` substituted. A context manager."""

    def __init__(self, root: Path | None = None, host: str = "127.0.0.1", port: int = 0):
        self.root = (root or corpus_dir() / "site").resolve()
        super().__init__(site=self._load, host=host, port=port, last_modified=_LAST_MODIFIED)

    def _load(self, raw_path: str) -> tuple[bytes, str] | None:
        path = unquote(urlsplit(raw_path).path)
        target = (self.root / path.lstrip("/")).resolve()
        if self.root not in target.parents or not target.is_file():
            return None
        body = target.read_bytes()
        if target.suffix in (".xml", ".rdf", ".atom", ".html", ".json"):
            body = body.replace(b"{{BASE}}", self.base_url.encode("ascii"))
        return body, CONTENT_TYPES.get(target.suffix, "application/octet-stream")


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

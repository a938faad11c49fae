"""The tests' HTTP server (aiwatch's own local server, :mod:`aiwatch.localserver`) and small
builders of feeds and pages."""

from __future__ import annotations

from aiwatch.localserver import LocalServer as RouteServer, Response

__all__ = ["Response", "RouteServer", "page", "rss"]


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

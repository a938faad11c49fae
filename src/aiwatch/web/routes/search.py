"""Search: the archive by meaning (the engine of `aiwatch search`), with filters."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from fastapi import APIRouter, Request

from ...relevance.embed import model_id
from ...report.digest import excerpt
from ...urls import safe_link
from ..app import ctx

router = APIRouter()


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@router.get("/search")
def search(request: Request, q: str = "", theme: str = "", since: str = "", until: str = "", outlet: str = "",
           k: int = 20):
    web = ctx(request)
    config = web.config()
    k = min(max(k, 1), 100)
    q = q.strip()[:500]
    start, end = _day(since), _day(until)
    theme = theme if any(t.name == theme for t in config.themes) else ""
    hits, error = [], None
    with web.db.read() as store:
        outlets = store.outlets()
        last = store.last_run()
        if q:
            store.check_model(model_id(config.embed.backend))
            embedder = web.embedder()
            hits = store.search(
                embedder.embed([q])[0], embedder.model_id, k=k, theme=theme or None,
                since=datetime.combine(start, time(), timezone.utc) if start else None,
                until=datetime.combine(end, time(), timezone.utc) + timedelta(days=1) if end else None,
                outlet=outlet or None)
    if (since and start is None) or (until and end is None):
        error = "dates are written like 2026-11-20"
    results = [{"hit": h, "link": safe_link(h.url) or "", "passage": excerpt(h.passage or "", h.title or "", 420)}
               for h in hits]
    return web.render(request, "search.html", q=q, theme=theme, since=since, until=until, outlet=outlet, k=k,
                      outlets=outlets, results=results, error=error, last_run=last)

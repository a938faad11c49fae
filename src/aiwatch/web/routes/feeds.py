"""Feeds: the health of every feed; add a feed or a site, import and export OPML."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ... import ops
from ...errors import AiwatchError
from ...ingest.subscriptions import render_opml
from ..app import WebContext, checked_form, ctx
from ..present import feed_badges

router = APIRouter()
MAX_OPML_BYTES = 5_000_000


def _page(request: Request, web: WebContext, status: int = 200, message: str | None = None,
          error: str | None = None, url: str = "", name: str = ""):
    config = web.config()
    now = datetime.now(timezone.utc)
    last = None
    if web.db.exists:
        with web.db.read() as store:
            rows = ops.feed_rows(config, store)
            last = store.last_run()
    else:
        rows = ops.feed_rows(config)
    for r in rows:
        r["badges"] = feed_badges(r, now, config.health.stale_days)
    order = {"failing": 0, "backoff": 1, "stale": 2, "dropping": 3}
    rows.sort(key=lambda r: (min(order.get(k, 9) for k, _ in r["badges"]), (r["name"] or r["feed_url"]).lower()))
    counts = {kind: sum(1 for r in rows if any(k == kind for k, _ in r["badges"]))
              for kind in ("failing", "backoff", "stale", "dropping")}
    return web.render(request, "feeds.html", status=status, rows=rows, counts=counts, message=message, error=error,
                      url=url, name=name, last_run=last)


@router.get("/feeds")
def feeds(request: Request, added: str = "", imported: str = ""):
    message = None
    if added:
        message = f"Added {added} to the config file: the next run fetches it."
    elif imported:
        message = f"Imported {imported} new feeds into the config file: the next run fetches them."
    return _page(request, ctx(request), message=message)


@router.post("/feeds/add")
async def add_feed(request: Request):
    web = ctx(request)
    form = await checked_form(request)
    url, name = str(form.get("url", "")).strip(), str(form.get("name", "")).strip()
    try:
        if not url:
            raise AiwatchError("give the URL of a feed, or of a site whose page links to its feed")
        found, _, new = await run_in_threadpool(ops.add_feed, web.config(), url, name or None)
    except AiwatchError as exc:
        return await run_in_threadpool(_page, request, web, 400, None, str(exc), url, name)
    if not new:
        return await run_in_threadpool(_page, request, web, 200, f"{found.url} is already in the config file.")
    return RedirectResponse(f"/feeds?added={quote(found.url, safe='')}", 303)


@router.post("/feeds/import")
async def import_opml(request: Request):
    web = ctx(request)
    form = await checked_form(request)
    upload = form.get("opml")
    try:
        if upload is None or isinstance(upload, str) or not upload.filename:
            raise AiwatchError("choose an OPML file to import")
        data = await upload.read(MAX_OPML_BYTES + 1)
        if len(data) > MAX_OPML_BYTES:
            raise AiwatchError(f"{upload.filename}: larger than {MAX_OPML_BYTES // 1_000_000} MB")
        _, added, _ = await run_in_threadpool(ops.import_opml, web.config(), upload.filename, data)
    except AiwatchError as exc:
        return await run_in_threadpool(_page, request, web, 400, None, str(exc))
    return RedirectResponse(f"/feeds?imported={len(added)}", 303)


@router.get("/feeds/export.opml")
def export_opml(request: Request):
    text = render_opml(ctx(request).config().feeds)
    return Response(text, media_type="text/x-opml; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="aiwatch-feeds.opml"'})

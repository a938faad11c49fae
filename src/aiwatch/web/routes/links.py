"""The digest's signed links: /judge shows the story and a button that applies the one judgement
the link names, once; a link altered or out of date is refused with a plain page."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from ...errors import StoreBusy
from ...urls import safe_link
from ..app import WebContext, checked_form, ctx
from ..present import likelihood, when
from ..signing import JudgeLink, read_link

router = APIRouter()


def _story(web: WebContext, link: JudgeLink) -> dict:
    with web.db.read() as store:
        found = store.review_matches(theme=link.theme, article_id=link.article_id)
        card = store.article_cards([link.article_id]).get(link.article_id)
        used = store.link_used(link.link_hash)
        judged = {j.article_id: j.relevant for j in store.feedback(link.theme)}.get(link.article_id)
        last = store.last_run()
    m = found[0] if found else None
    return {"card": card, "match": m, "used": used, "judgement": judged, "last_run": last,
            "link": safe_link(card.url) if card else "", "date": when(card.published_at) if card else "",
            "likelihood": likelihood(m.score) if m else ""}


@router.get("/judge")
def judge_link(request: Request):
    web = ctx(request)
    link = read_link(web.guard.key, request.query_params, datetime.now(timezone.utc))
    story = _story(web, link)
    if story["card"] is None:
        return web.problem(request, 404, "Story not found", "The article this link names is no longer stored "
                                                            "(pruned, perhaps). Nothing was changed.")
    return web.render(request, "link.html", judge=link, params=link.params, **story)


@router.post("/judge")
async def apply_link(request: Request):
    web = ctx(request)
    form = await checked_form(request)
    link = read_link(web.guard.key, {k: str(form.get(k, "")) for k in "atres"}, datetime.now(timezone.utc))

    def apply() -> bool:
        with web.db.write() as store:
            if not store.article_cards([link.article_id]):
                return False
            return store.use_link(link.link_hash, link.article_id, link.theme, link.relevant,
                                  datetime.now(timezone.utc))

    try:
        await run_in_threadpool(apply)
    except StoreBusy as exc:
        return web.problem(request, 503, "Your judgement was NOT saved",
                           f"A run is writing the database and held it longer than {web.write_wait:g} s. Go back "
                           f"and press the button again in a moment. ({exc})")
    return RedirectResponse(f"/judge?{urlencode(link.params)}", 303)

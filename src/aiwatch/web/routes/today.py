"""Today: the flagged stories by theme and story, newest first, each judged with one button."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from ...errors import AiwatchError, StoreBusy
from ..app import WebContext, checked_form, ctx
from ..present import story_cards
from ..security import safe_next

router = APIRouter()
MAX_ARTICLES = 50  # articles one judgement may name (a story's)
_ANCHOR = re.compile(r"^[A-Za-z0-9_-]{1,120}$")


@router.get("/")
def today(request: Request, theme: str = "", days: int = 0):
    web = ctx(request)
    config = web.config()
    days = min(max(days or config.digest.window_days, 1), 3650)
    with web.db.read() as store:
        matches = store.review_matches(datetime.now(timezone.utc) - timedelta(days=days))
        story_of = store.stories_of([m.article_id for m in matches])
        members = store.story_members(sorted({story_of.get(m.article_id, m.article_id) for m in matches}))
        last = store.last_run()
    sections = story_cards(config.themes, matches, story_of, members)
    return web.render(request, "today.html", sections=[s for s in sections if not theme or s.theme.name == theme],
                      all_sections=sections, theme=theme, days=days, last_run=last)


def apply_judgement(web: WebContext, theme: str, article_ids: list[str], verdict: str) -> int:
    """Record (or, with ``undo``, forget) a judgement of each article for ``theme``; returns how
    many were changed. StoreBusy when a run holds the file past the write wait."""
    now = datetime.now(timezone.utc)
    with web.db.write() as store:
        known = store.article_cards(article_ids)
        missing = [a for a in article_ids if a not in known]
        if missing:
            raise AiwatchError(f"no stored article has the id {missing[0]!r}")
        for aid in article_ids:
            if verdict == "undo":
                store.undo_feedback(aid, theme)
            else:
                store.record_feedback(aid, theme, verdict == "yes", now)
    return len(article_ids)


@router.post("/feedback")
async def feedback(request: Request):
    """Judge a story (every article the card names) for a theme, or undo the judgement."""
    web = ctx(request)
    form = await checked_form(request)
    theme, verdict = str(form.get("theme", "")), str(form.get("verdict", ""))
    ids = [str(a) for a in form.getlist("article")][:MAX_ARTICLES]
    web.config().theme(theme)  # ConfigError (a 400 page) for a theme that is not configured
    if verdict not in ("yes", "no", "undo") or not ids:
        raise AiwatchError("a judgement needs a verdict (yes, no or undo) and at least one article")
    try:
        await run_in_threadpool(apply_judgement, web, theme, ids, verdict)
    except StoreBusy as exc:
        return web.problem(request, 503, "Your judgement was NOT saved",
                           f"A run is writing the database and held it longer than {web.write_wait:g} s. Go back "
                           f"and press the button again in a moment. ({exc})")
    anchor = str(form.get("anchor", ""))
    back = safe_next(str(form.get("back", "/")))
    return RedirectResponse(back + (f"#{anchor}" if _ANCHOR.match(anchor) else ""), 303)

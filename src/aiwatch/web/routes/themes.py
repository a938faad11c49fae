"""Themes: each theme's definition, an editor with a live preview of what it would flag among
the stored articles (precision and recall against your judgements as the threshold moves),
saving to aiwatch.toml (comments kept) with a re-score, and new themes from an article."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from ... import configfile, ops
from ...errors import AiwatchError, ConfigError
from ...relevance.model import shipped_models_for
from ...relevance.preview import ThemePreview, preview_theme
from ...relevance.themes import Theme, theme_from_mapping
from ...urls import safe_link
from ..app import WebContext, checked_form, ctx
from ..jobs import JobRefused
from ..present import when

router = APIRouter()
LISTS = ("positive_examples", "negative_examples", "must_have", "must_also_have", "must_not", "key_terms")
SHOWN = 60  # preview rows listed (the counts cover every article)
MESSAGES = {
    "saved": "Saved to the config file. The stored articles are being re-scored in the background (see Runs); "
             "Today shows the new flags when it is done.",
    "saved-later": "Saved to the config file. A job is already running here, so the theme's new version will be "
                   "scored by the next run (or `aiwatch rescore --theme NAME`).",
    "added": "Added to the config file from the article: edit the description, examples and terms, preview, "
             "then save. It is being scored in the background (see Runs).",
}


def _theme_from_form(name: str, form, title: str = "") -> Theme:
    """The edited theme; its title (not edited here) is the configured one's."""
    mapping: dict = {"name": name, "description": str(form.get("description", "")), "title": title}
    try:
        mapping["threshold"] = float(str(form.get("threshold", "")).strip())
    except ValueError:
        raise ConfigError(f"themes.{name}.threshold", "expected a number from 0 to 1") from None
    for key in LISTS:
        mapping[key] = [line.strip() for line in str(form.get(key, "")).splitlines() if line.strip()]
    return theme_from_mapping(mapping, where=f"themes.{name}")


def _preview_page(request: Request, web: WebContext, theme: Theme, status: int = 200, message: str | None = None,
                  error: str | None = None, edited: dict | None = None):
    config = web.config()
    with web.db.read() as store:
        preview = preview_theme(store, web.embedder(), config.themes, theme)
        cards = store.article_cards([i.article_id for i in preview.items[:SHOWN]])
        last = store.last_run()
    return web.render(request, "theme_edit.html", status=status, theme=theme, edited=edited or _fields(theme),
                      preview=preview, rows=_rows(preview, cards), data=_data(preview), message=message,
                      error=error, shipped=shipped_models_for(theme) is not None, last_run=last)


def _fields(theme: Theme) -> dict:
    out = {"description": theme.description, "threshold": f"{theme.threshold:g}"}
    out.update({k: "\n".join(getattr(theme, k)) for k in LISTS})
    return out


def _rows(preview: ThemePreview, cards: dict) -> list[dict]:
    rows = []
    for item in preview.items[:SHOWN]:
        card = cards.get(item.article_id)
        if card is None:
            continue
        rows.append({"item": item, "title": card.title or card.url, "link": safe_link(card.url) or "",
                     "outlet": card.outlet or "", "date": when(card.published_at)})
    return rows


def _data(preview: ThemePreview) -> dict:
    """What the page's script needs to recount as the threshold moves."""
    return {"p": [i.probability for i in preview.items],
            "j": [-1 if i.judgement is None else int(i.judgement) for i in preview.items],
            "now": [int(i.flagged_now) for i in preview.items]}


@router.get("/themes")
def themes(request: Request):
    web = ctx(request)
    config = web.config()
    with web.db.read() as store:
        flagged, judged, last = store.flagged_counts(), store.judgement_counts(), store.last_run()
    rows = [{"theme": t, "flagged": flagged.get(t.name, 0), "judged": judged.get(t.name, (0, 0)),
             "shipped": shipped_models_for(t) is not None} for t in config.themes]
    return web.render(request, "themes.html", rows=rows, last_run=last)


@router.get("/themes/new")
def new_theme(request: Request, article: str = "", url: str = ""):
    web = ctx(request)
    card = None
    with web.db.read() as store:
        if article:
            card = store.article_cards([article]).get(article)
        last = store.last_run()
    return web.render(request, "theme_new.html", card=card, url=url, name="", last_run=last)


@router.post("/themes/new")
async def add_theme(request: Request):
    web = ctx(request)
    form = await checked_form(request)
    name, article, url = (str(form.get(k, "")).strip() for k in ("name", "article", "url"))

    def add() -> Theme:
        config = web.config()
        if article:
            with web.db.read() as store:
                found = store.article(article)
            if found is None:
                raise AiwatchError(f"no stored article has the id {article!r}")
            return ops.add_theme_from_text(config, name, found.title or "", found.text or "", found.url)[0]
        if not url:
            raise AiwatchError("give the URL of an example article")
        return ops.add_theme(config, name, from_url=url)[0]

    try:
        theme = await run_in_threadpool(add)
    except AiwatchError as exc:
        card = None
        if article:
            with web.db.read() as store:
                card = store.article_cards([article]).get(article)
        return web.render(request, "theme_new.html", status=400, card=card, url=url, name=name, error=str(exc))
    _rescore(web, theme.name)
    return RedirectResponse(f"/themes/{theme.name}?done=added", 303)


@router.get("/themes/{name}")
def edit_theme(request: Request, name: str, done: str = ""):
    web = ctx(request)
    return _preview_page(request, web, web.config().theme(name), message=MESSAGES.get(done))


@router.post("/themes/{name}/preview")
async def preview(request: Request, name: str):
    web = ctx(request)
    form = await checked_form(request)
    title = web.config().theme(name).title
    edited = {k: str(form.get(k, "")) for k in ("description", "threshold", *LISTS)}
    try:
        theme = _theme_from_form(name, form, title)
    except ConfigError as exc:
        return await run_in_threadpool(_preview_page, request, web, web.config().theme(name), 400, None, str(exc),
                                       edited)
    return await run_in_threadpool(_preview_page, request, web, theme, 200, None, None, edited)


@router.post("/themes/{name}/save")
async def save(request: Request, name: str):
    web = ctx(request)
    form = await checked_form(request)
    config = web.config()
    title = config.theme(name).title
    edited = {k: str(form.get(k, "")) for k in ("description", "threshold", *LISTS)}
    try:
        theme = _theme_from_form(name, form, title)
    except ConfigError as exc:
        return await run_in_threadpool(_preview_page, request, web, config.theme(name), 400, None, str(exc), edited)
    await run_in_threadpool(configfile.set_theme, web.config_file, config.themes, theme)
    return RedirectResponse(f"/themes/{name}?done={'saved' if _rescore(web, name) else 'saved-later'}", 303)


def _rescore(web: WebContext, name: str) -> bool:
    """Start re-scoring the stored articles for a theme; False when another job is running."""
    try:
        web.jobs.start("rescore", ["rescore", "--theme", name], refuse_when_locked=False)
    except JobRefused:
        return False
    return True

"""Runs: the recent runs with their counts, stage timings and failures; start one."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from ...urls import safe_link
from ..app import WebContext, checked_form, ctx
from ..jobs import JobRefused

router = APIRouter()


def prefect_ui() -> str:
    """Prefect's UI, when a Prefect server is configured (PREFECT_UI_URL, else from PREFECT_API_URL)."""
    ui = os.environ.get("PREFECT_UI_URL", "").strip()
    if not ui:
        api = os.environ.get("PREFECT_API_URL", "").strip().rstrip("/")
        ui = api.removesuffix("/api")
    return safe_link(ui) or ""


def _page(request: Request, web: WebContext, status: int = 200, message: str | None = None,
          error: str | None = None):
    runs, last = [], None
    if web.db.exists:
        with web.db.read() as store:
            runs = store.recent_runs(20)
            last = runs[0] if runs else None
    return web.render(request, "runs.html", status=status, runs=runs, job=web.jobs.state(), prefect=prefect_ui(),
                      message=message, error=error, last_run=last)


@router.get("/runs")
def runs(request: Request, started: str = ""):
    started_note = "The run has started; this page shows how it goes." if started else None
    return _page(request, ctx(request), message=started_note)


@router.post("/runs/start")
async def start_run(request: Request):
    """Start `aiwatch run` in the background; refused while another run holds the database."""
    web = ctx(request)
    await checked_form(request)
    # With a Prefect server configured the run is a flow run there (seen in its UI); without
    # one, the stages run directly rather than starting Prefect's embedded API for one run.
    args = ["run"] if os.environ.get("PREFECT_API_URL") else ["run", "--no-prefect"]
    try:
        await run_in_threadpool(web.jobs.start, "run", args)
    except JobRefused as exc:
        return await run_in_threadpool(_page, request, web, 409, None, f"Not started: {exc}.")
    return RedirectResponse("/runs?started=1", 303)

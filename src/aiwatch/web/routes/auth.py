"""Logging in, when the app has a password (``web.password_env``)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from ..app import checked_form, ctx
from ..security import SESSION_COOKIE, SESSION_DAYS, safe_next

router = APIRouter()


@router.get("/login")
def login_page(request: Request, next: str = "/"):
    web = ctx(request)
    if web.guard.password is None:
        return RedirectResponse("/", 303)
    return web.render(request, "login.html", next=safe_next(next))


@router.post("/login")
async def login(request: Request):
    web = ctx(request)
    form = await checked_form(request)
    target = safe_next(str(form.get("next", "/")))
    if not web.guard.password_ok(str(form.get("password", ""))):
        await asyncio.sleep(1.0)  # a guesser gets one try a second
        return web.render(request, "login.html", status=401, next=target, error="That is not the password.")
    response = RedirectResponse(target, 303)
    response.set_cookie(SESSION_COOKIE, web.guard.session_value(), max_age=SESSION_DAYS * 86400, httponly=True,
                        samesite="lax", secure=web.guard.secure_cookies, path="/")
    return response


@router.post("/logout")
async def logout(request: Request):
    await checked_form(request)
    response = RedirectResponse("/login", 303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response

"""The app: its context (config, database, key, jobs, templates), the guard in front of every
request, the error pages, and :func:`serve_app` (uvicorn)."""

from __future__ import annotations

import logging
import socket
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

import jinja2
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import DEFAULT_CONFIG_NAME, Config, load_config
from ..errors import AiwatchError, ConfigError, StoreBusy, StoreError
from ..relevance.embed import embedder_for, model_id
from .db import WRITE_WAIT, Database
from .jobs import Jobs
from .present import ago, likelihood, when
from .security import CSRF_COOKIE, Guard, is_loopback, open_path, password_for
from .signing import LinkError, load_secret

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
NAV = (("/", "Today"), ("/search", "Search"), ("/themes", "Themes"), ("/feeds", "Feeds"), ("/runs", "Runs"))


class WebContext:
    """What every request reads: the config (read again when the file changes), the database,
    the key, the guard, the background jobs and the templates."""

    def __init__(self, config_path: str | Path | None, host: str, job_command: Sequence[str] | None = None,
                 write_wait: float = WRITE_WAIT):
        self._given = Path(config_path) if config_path else None
        self._config: Config | None = None
        self._stamp: int | None = None
        self._lock = threading.Lock()
        config = self.config()
        # Secure cookies only where the app is reached over https (its own TLS proxy); on
        # http://127.0.0.1 a browser would drop them and every form would fail.
        self.guard = Guard(key=load_secret(config.web_secret_file), password=password_for(config, host),
                           loopback_only=is_loopback(host),
                           secure_cookies=config.web.base_url.startswith("https:") and not is_loopback(host))
        self.write_wait = write_wait
        self._db = Database(config.database, write_wait=write_wait)
        self._db.migrate()
        self.jobs = Jobs(config.path, config.database, job_command)
        self.templates = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                                            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.templates.filters.update(likelihood=likelihood, when=when, ago=ago, theme_title=self.theme_title)

    def theme_title(self, name: str) -> str:
        """How a theme is named on the pages: its configured title (``Theme.display_title``)."""
        for theme in self._config.themes if self._config else ():
            if theme.name == name:
                return theme.display_title
        return name.replace("_", " ").capitalize()

    @property
    def config_file(self) -> Path:
        """The file edits go to (made from the template on the first edit when missing)."""
        return self._given or Path.cwd() / DEFAULT_CONFIG_NAME

    def config(self) -> Config:
        """The config, read again when its file changed (an edit here, or by hand)."""
        path = self.config_file
        try:
            stamp = path.stat().st_mtime_ns if path.exists() else None
        except OSError:
            stamp = None
        with self._lock:
            if self._config is None or stamp != self._stamp:
                self._config = load_config(self._given if self._given or stamp is not None else None)
                self._stamp = stamp
            return self._config

    @property
    def db(self) -> Database:
        database = self.config().database
        if self._db.path != database:
            self._db = Database(database, write_wait=self.write_wait)
        return self._db

    def embedder(self) -> "LazyEmbedder":
        return LazyEmbedder(self.config())

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("last_run", None)
        context.setdefault("message", None)
        context.setdefault("error", None)
        # the config last read well: the error page of a config broken by hand must still render
        html = self.templates.get_template(template).render(
            request=request, path=request.url.path, nav=NAV, csrf=self.guard.csrf_token(request),
            logged_in=self.guard.password is not None and self.guard.logged_in(request),
            now=datetime.now(timezone.utc), config=self._config, **context)
        return HTMLResponse(html, status_code=status)

    def problem(self, request: Request, status: int, title: str, detail: str) -> HTMLResponse:
        """A plain page saying what went wrong and what to do (no database read)."""
        return self.render(request, "problem.html", status=status, title=title, detail=detail, last_run="")


class LazyEmbedder:
    """The configured embedder, loaded only when something is embedded: a theme preview that
    only moves the threshold, or reads stored vectors, never loads the model."""

    def __init__(self, config: Config):
        self.config = config
        self.model_id = model_id(config.embed.backend)

    def embed(self, texts):
        return embedder_for(self.config).embed(texts)


def ctx(request: Request) -> WebContext:
    return request.app.state.web


async def checked_form(request: Request) -> FormData:
    """The POSTed form, after its token is checked (403 otherwise)."""
    form = await request.form()
    if not ctx(request).guard.csrf_ok(request, form.get("csrf")):  # type: ignore[arg-type]
        raise HTTPException(403, "the form's token is missing or out of date: reload the page and try again")
    return form


SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # a signed link in the address never leaks to an outlet's site
}


def create_app(config_path: str | Path | None = None, *, host: str = "127.0.0.1",
               job_command: Sequence[str] | None = None, write_wait: float = WRITE_WAIT) -> FastAPI:
    """The app over the config at ``config_path`` (or ./aiwatch.toml, or the defaults), as served
    on ``host``: ConfigError when it may not be served there (see :mod:`aiwatch.web.security`)."""
    from .routes import auth, feeds, links, runs, search, themes, today

    web = WebContext(config_path, host, job_command, write_wait)
    app = FastAPI(title="aiwatch", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.web = web
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (today, search, themes, feeds, runs, links, auth):
        app.include_router(module.router)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        g = web.guard
        if not g.host_ok(request):
            return PlainTextResponse("aiwatch: this app answers on 127.0.0.1 or localhost only", 400)
        if request.method not in ("GET", "HEAD") and not g.same_origin(request):
            return PlainTextResponse("aiwatch: a form from another site was refused", 403)
        if not open_path(request.url.path) and not g.logged_in(request):
            if request.method in ("GET", "HEAD"):
                return RedirectResponse(f"/login?next={quote(request.url.path)}", 303)
            return PlainTextResponse("aiwatch: log in first", 403)
        response: Response = await call_next(request)
        seed = getattr(request.state, "csrf_seed", None)
        if seed and request.cookies.get(CSRF_COOKIE) != seed:
            response.set_cookie(CSRF_COOKIE, seed, httponly=True, samesite="lax", secure=g.secure_cookies, path="/")
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        if response.media_type == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(LinkError)
    async def bad_link(request: Request, exc: LinkError):
        return PlainTextResponse(f"aiwatch: {exc}\n", 410 if exc.expired else 403)

    @app.exception_handler(StoreBusy)
    async def busy(request: Request, exc: StoreBusy):
        return web.problem(request, 503, "The database is busy", f"{exc}. Nothing was changed; reload the page "
                                                                 "in a moment.")

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError):
        return web.problem(request, 503, "The database cannot be read", str(exc))

    @app.exception_handler(AiwatchError)
    async def aiwatch_error(request: Request, exc: AiwatchError):
        return web.problem(request, 400, "That did not work", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code in (403, 404) or exc.status_code >= 500:
            return web.problem(request, exc.status_code, {404: "Not found", 403: "Refused"}.get(
                exc.status_code, "Error"), str(exc.detail))
        return PlainTextResponse(f"aiwatch: {exc.detail}\n", exc.status_code)

    return app


def check_port(host: str, port: int) -> None:
    """Refuse early, in one line, when the address is taken (uvicorn would log a traceback-ish error)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError("--host", f"{host}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            raise ConfigError("--port", f"{host}:{port} cannot be used ({exc.strerror}); "
                                        "choose another --port") from None


def serve_app(app: FastAPI, host: str, port: int) -> None:
    """Serve ``app`` until Ctrl-C."""
    import uvicorn
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False, proxy_headers=False)

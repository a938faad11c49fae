"""Who may use the app and what a request may change.

- **Where it listens.** 127.0.0.1 by default; any other address needs ``web.password_env``
  (a login form, a session cookie; TLS is the user's own proxy's job). The app refuses to start
  otherwise. On a loopback address it answers only to loopback host names, so a web page that
  rebinds its own name to 127.0.0.1 cannot read it.
- **Changes.** Every state-changing request is a POST carrying a form token: an HMAC of a random
  cookie, so another site can neither read nor forge it; a POST from another origin is refused.
- **Signed digest links** (``/judge``) need no login: the signature is the permission, for the
  one judgement it names.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request

from ..config import Config
from ..errors import ConfigError
from .signing import sign, signed

CSRF_COOKIE = "aiwatch_csrf"
SESSION_COOKIE = "aiwatch_session"
SESSION_DAYS = 7
OPEN_PATHS = ("/login", "/judge")  # reachable without a session, with /static/...
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def is_loopback(host: str) -> bool:
    if host.strip("[]") in LOOPBACK_NAMES or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def password_for(config: Config, host: str) -> str | None:
    """The app's password, or None when it runs without login; ConfigError when it may not
    start: another address than loopback without a password, or the password's variable unset."""
    env = config.web.password_env
    if env:
        value = os.environ.get(env)
        if not value:
            raise ConfigError("web.password_env", f"environment variable {env} is not set (or empty): "
                                                  "set it to the app's password")
        return value
    if not is_loopback(host):
        raise ConfigError("--host", f"{host} is reachable from other machines: set web.password_env to the name "
                                    "of an environment variable holding a password (and serve it behind your "
                                    "own TLS proxy), or keep the default 127.0.0.1")
    return None


@dataclass(frozen=True)
class Guard:
    key: bytes
    password: str | None
    loopback_only: bool  # answer only to loopback host names (DNS rebinding)
    secure_cookies: bool = False  # the app is reached over https (web.base_url)

    # -- form tokens ------------------------------------------------------------------------

    @staticmethod
    def seed(request: Request) -> str:
        """The request's CSRF cookie value (a new one when it has none; set on the response)."""
        seed = getattr(request.state, "csrf_seed", None)
        if seed is None:
            cookie = request.cookies.get(CSRF_COOKIE, "")
            seed = cookie if 20 <= len(cookie) <= 100 else secrets.token_urlsafe(24)
            request.state.csrf_seed = seed
        return seed

    def csrf_token(self, request: Request) -> str:
        return sign(self.key, "csrf", self.seed(request))

    def csrf_ok(self, request: Request, token: str | None) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE)
        return bool(cookie) and signed(self.key, "csrf", cookie, token or "")

    @staticmethod
    def same_origin(request: Request) -> bool:
        """A browser's POST names its origin; one from another site is refused. (An opaque
        "null" origin says nothing either way: the form token decides.)"""
        origin = request.headers.get("origin")
        if not origin or origin == "null":
            return True
        return urlsplit(origin).netloc == request.headers.get("host", "")

    def host_ok(self, request: Request) -> bool:
        if not self.loopback_only:
            return True
        host = request.headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return is_loopback(name)

    # -- sessions ---------------------------------------------------------------------------

    def session_value(self) -> str:
        expires = int(time.time()) + SESSION_DAYS * 86400
        return f"{expires}.{sign(self.key, 'session', str(expires))}"

    def logged_in(self, request: Request) -> bool:
        if self.password is None:
            return True
        expires, _, sig = request.cookies.get(SESSION_COOKIE, "").partition(".")
        return expires.isdigit() and int(expires) > time.time() and signed(self.key, "session", expires, sig)

    def password_ok(self, given: str) -> bool:
        return self.password is not None and hmac.compare_digest(given.encode("utf-8"), self.password.encode("utf-8"))


def open_path(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith("/static/")


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this app only."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target

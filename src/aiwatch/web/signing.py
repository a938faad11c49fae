"""The app's key and what it signs: the digest's judgement links, sessions and form tokens.

The key lives in ``web.secret_file`` beside the config, made with mode 0600 on first use (by the
first digest that carries links, or the app's first start). Every signature is HMAC-SHA256 over
a purpose and a message, so a form token can never pass for a link or a session.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlencode

from ..errors import AiwatchError, ConfigError

LINK_DAYS = 30  # a digest's links work this long


def load_secret(path: Path) -> bytes:
    """The key kept in ``path``, created (mode 0600, never overwritten) when missing."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: read theirs
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
    try:
        mode = path.stat().st_mode
        text = path.read_text("ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("web.secret_file", f"{path} cannot be read: {exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError("web.secret_file", f"{path} can be read by other users (mode {stat.S_IMODE(mode):o}); "
                                             f"run `chmod 600 {path}`")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise ConfigError("web.secret_file", f"{path} holds no usable key; delete it and one is made anew")
    return key


def sign(key: bytes, purpose: str, message: str) -> str:
    return hmac.new(key, f"{purpose}\n{message}".encode("utf-8"), hashlib.sha256).hexdigest()


def signed(key: bytes, purpose: str, message: str, signature: str) -> bool:
    return hmac.compare_digest(sign(key, purpose, message), signature or "")


class LinkError(AiwatchError):
    """A judgement link that cannot be followed: ``expired`` or not signed by this app."""

    def __init__(self, reason: str, expired: bool = False):
        self.expired = expired
        super().__init__(reason)


@dataclass(frozen=True)
class JudgeLink:
    """One judgement a digest's link may apply: this article is (not) relevant for this theme."""

    article_id: str
    theme: str
    relevant: bool
    expires: int  # Unix time
    signature: str = ""

    @property
    def message(self) -> str:
        return f"{self.article_id}\x1f{self.theme}\x1f{int(self.relevant)}\x1f{self.expires}"

    @property
    def link_hash(self) -> str:
        """What is recorded when the link is used (the signature itself is never stored)."""
        return hashlib.sha256(self.signature.encode("ascii", "replace")).hexdigest()

    @property
    def params(self) -> dict[str, str]:
        return {"a": self.article_id, "t": self.theme, "r": "yes" if self.relevant else "no",
                "e": str(self.expires), "s": self.signature}


def judge_link(key: bytes, article_id: str, theme: str, relevant: bool, now: datetime,
               days: int = LINK_DAYS) -> JudgeLink:
    link = JudgeLink(article_id, theme, relevant, int(now.timestamp()) + days * 86400)
    return JudgeLink(article_id, theme, relevant, link.expires, sign(key, "judge", link.message))


def judge_url(base_url: str, link: JudgeLink) -> str:
    return f"{base_url.rstrip('/')}/judge?{urlencode(link.params)}"


def read_link(key: bytes, params, now: datetime) -> JudgeLink:
    """The link whose query parameters are ``params``; LinkError when it was altered or is out of date."""
    try:
        relevant = {"yes": True, "no": False}[params.get("r", "")]
        link = JudgeLink(str(params["a"]), str(params["t"]), relevant, int(params["e"]), str(params["s"]))
    except (KeyError, ValueError):
        raise LinkError("this link is incomplete or altered: it was not signed by this aiwatch") from None
    if not signed(key, "judge", link.message, link.signature):
        raise LinkError("this link is altered or was not signed by this aiwatch")
    if now.timestamp() > link.expires:
        raise LinkError(f"this link expired on {datetime.fromtimestamp(link.expires, timezone.utc):%Y-%m-%d} "
                        f"(links work for {LINK_DAYS} days); judge the story in the app instead", expired=True)
    return link

"""Delivering a digest by email (SMTP) and webhook. The files are always written first.

A failed delivery is recorded in ``core.deliveries`` and tried again by the next run; one
channel failing never stops another. Secrets (SMTP password, webhook URL, which for Slack is
itself a secret) never appear in logs, errors or the digest.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import ssl
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from urllib.parse import urlsplit

from ..config import Config
from ..errors import FetchError
from ..http import post_json
from ..store import Store
from ..urls import safe_link
from .digest import DigestData, render_html, render_json, render_markdown

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5


class DeliveryError(Exception):
    """A delivery failed; the message is safe to log (no secrets)."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def build_email(config: Config, subject: str, text: str, html: str, chart: bytes | None) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = _one_line(subject)[:200]  # no newline can reach a header
    msg["From"] = config.digest.email.sender
    msg["To"] = ", ".join(a.strip() for a in config.digest.email.to.split(",") if a.strip())
    msg["Date"] = formatdate(localtime=False, usegmt=True)  # RFC 5322 requires it; spam filters check it
    domain = config.digest.email.sender.rpartition("@")[2] or "aiwatch.local"
    msg["Message-ID"] = make_msgid(idstring="aiwatch", domain=_one_line(domain))
    msg.set_content(text)
    if chart:
        cid = make_msgid(domain="aiwatch.local")
        msg.add_alternative(html.replace("__AIWATCH_CHART__", "cid:" + cid[1:-1]), subtype="html")
        msg.get_payload()[1].add_related(chart, maintype="image", subtype="png", cid=cid,
                                         filename="trend.png", disposition="inline")
    else:
        msg.add_alternative(html, subtype="html")
    return msg


def send_email(config: Config, msg: EmailMessage) -> None:
    host, port = config.digest.email.host, config.digest.email.port
    user_env, pass_env = config.digest.email.username_env, config.digest.email.password_env
    user = os.environ.get(user_env) if user_env else None
    password = os.environ.get(pass_env) if pass_env else None
    if user_env and user is None:
        raise DeliveryError(f"environment variable {user_env} (digest.email.username_env) is not set")
    if pass_env and password is None:
        raise DeliveryError(f"environment variable {pass_env} (digest.email.password_env) is not set")
    ca_file = config.resolve(config.digest.email.ca_file) if config.digest.email.ca_file else None
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        if config.digest.email.ssl:
            smtp = smtplib.SMTP_SSL(host, port, timeout=30, context=context)
        else:
            smtp = smtplib.SMTP(host, port, timeout=30)
        with smtp:
            if config.digest.email.starttls and not config.digest.email.ssl:
                smtp.starttls(context=context)
            if user is not None:
                smtp.login(user, password or "")
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        detail = _one_line(exc)
        if password:
            detail = detail.replace(password, "***")
        raise DeliveryError(f"SMTP {host}:{port}: {type(exc).__name__}: {detail}") from None


SLACK_SECTION_CHARS = 3000  # Slack's limit for a section's text
SLACK_MAX_BLOCKS = 50


def _slack_text(text: str) -> str:
    """Text as Slack shows it literally: &, < and > escaped, so a feed's "<!here>" or "<url|label>"
    is never a mention or a link."""
    return " ".join(str(text).split()).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_link(url: str, label: str) -> str:
    link = safe_link(url)
    if not link:
        return _slack_text(label)
    link = "".join(f"%{ord(ch):02X}" if ch in "|<> " else ch for ch in link)
    return f"<{link}|{_slack_text(label).replace('|', '/')}>"


def webhook_payload(config: Config, data: DigestData) -> dict:
    """The digest for a webhook: the JSON digest, or Slack blocks. Stories are packed into as many
    sections as they need (never cut mid-story); past Slack's 50 blocks the rest are counted."""
    if config.digest.webhook.format == "json":
        return json.loads(render_json(data))
    lines: list[str] = []
    for t in data.themes:
        lines.append(f"*{_slack_text(t.title or t.name.replace('_', ' '))}*")
        for i in t.items:
            also = f" (+{len(i.also)} outlets)" if i.also else ""
            mark = " _updated_" if i.updated else ""
            lines.append(f"• {_slack_link(i.url, i.title)} · {_slack_text(i.outlet)}{also} · {i.score:.2f}{mark}")
        if not t.items:
            lines.append("nothing new")
        if t.more:
            lines.append(f"…and {t.more} more")
    sections: list[str] = []
    for line in lines:
        line = line[:SLACK_SECTION_CHARS]
        if sections and len(sections[-1]) + 1 + len(line) <= SLACK_SECTION_CHARS:
            sections[-1] += "\n" + line
        else:
            sections.append(line)
    room = SLACK_MAX_BLOCKS - 1  # the header takes one block
    if len(sections) > room:
        left = sum(s.count("\n• ") + s.startswith("• ") for s in sections[room - 1:])
        sections = sections[:room - 1] + [f"…and {left} more stories that did not fit in one message"]
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": data.subject()[:150]}}]
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": text}} for text in sections]
    return {"text": data.subject(), "blocks": blocks}


def post_webhook(config: Config, payload: dict) -> None:
    url = config.digest.webhook.url
    where = urlsplit(url).hostname or "webhook"  # the full URL can be a secret (Slack): never shown
    try:
        status = post_json(url, payload)
    except FetchError as exc:
        raise DeliveryError(f"webhook at {where}: {exc.reason}") from None
    if status >= 300:
        raise DeliveryError(f"webhook at {where}: HTTP {status}")


def _attempt(store: Store, digest_id: str, channel: str, send, now: datetime) -> bool:
    try:
        send()
        status, error = "sent", None
    except DeliveryError as exc:
        status, error = "failed", str(exc)
        log.warning("digest %s by %s failed: %s (tried again next run)", digest_id, channel, error)
    store.record_delivery(digest_id, channel, status, now, error)
    return status == "sent"


def channels(config: Config) -> list[str]:
    out = []
    if config.digest.email.host and config.digest.email.to:
        out.append("email")
    if config.digest.webhook.url:
        out.append("webhook")
    return out


def deliver(store: Store, config: Config, data: DigestData, now: datetime) -> dict[str, bool]:
    """Send a freshly written digest on every configured channel; returns channel -> sent."""
    results = {}
    for channel in channels(config):
        if channel == "email":
            msg = build_email(config, data.subject(), render_markdown(data),
                              render_html(data, chart_src="__AIWATCH_CHART__" if data.chart_png else None),
                              data.chart_png)
            results[channel] = _attempt(store, data.digest_id, channel, lambda: send_email(config, msg), now)
        else:
            payload = webhook_payload(config, data)
            results[channel] = _attempt(store, data.digest_id, channel, lambda: post_webhook(config, payload), now)
    return results


def retry_failed(store: Store, config: Config, now: datetime) -> int:
    """Try earlier failed deliveries again from the files those digests wrote. Returns how many
    went through."""
    sent = 0
    for pending in store.pending_deliveries(MAX_ATTEMPTS):
        digest_id, channel = pending.digest_id, pending.channel
        if channel not in channels(config):
            continue
        paths = {Path(f).suffix: Path(f) for f in pending.files}
        md, html, js = paths.get(".md"), paths.get(".html"), paths.get(".json")
        if channel == "email" and md and html and md.exists() and html.exists():
            msg = build_email(config, f"aiwatch digest {digest_id} (delivered late)", md.read_text("utf-8"),
                              html.read_text("utf-8"), None)  # the HTML file carries its chart inline
            sent += _attempt(store, digest_id, channel, lambda: send_email(config, msg), now)
        elif channel == "webhook" and js and js.exists():
            payload = {"text": f"aiwatch digest {digest_id} (delivered late)",
                       "digest": json.loads(js.read_text("utf-8"))}
            sent += _attempt(store, digest_id, channel, lambda: post_webhook(config, payload), now)
    return sent

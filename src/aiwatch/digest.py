"""The digest: what was flagged, per theme, with why; rendered to Markdown and HTML."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import jinja2

from .config import Config
from .store import Store

PASSAGE_CHARS = 320


@dataclass(frozen=True)
class DigestItem:
    article_id: str
    title: str
    url: str
    outlet: str
    published_at: datetime | None
    score: float
    passage: str
    also: tuple[tuple[str, str], ...] = ()  # (outlet, url) of copies elsewhere


@dataclass(frozen=True)
class ThemeSection:
    name: str
    description: str
    threshold: float
    items: tuple[DigestItem, ...]
    more: int = 0  # flagged but over the per-theme budget


@dataclass(frozen=True)
class FeedStatus:
    feed_url: str
    name: str | None
    detail: str  # the error, how long it has been quiet, or when it came back
    consecutive_failures: int = 0


@dataclass(frozen=True)
class FeedHealth:
    failing: tuple[FeedStatus, ...] = ()
    stale: tuple[FeedStatus, ...] = ()
    recovered: tuple[FeedStatus, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.failing or self.stale or self.recovered)


@dataclass(frozen=True)
class DigestData:
    generated_at: datetime
    scope: str  # what the digest covers, in words
    run_id: str | None
    themes: tuple[ThemeSection, ...]
    stats: dict = field(default_factory=dict)
    article_failures: tuple[tuple[str, str], ...] = ()  # (url, error)
    health: FeedHealth = FeedHealth()

    @property
    def flagged_total(self) -> int:
        return sum(len(t.items) + t.more for t in self.themes)


def excerpt(passage: str, title: str, limit: int = PASSAGE_CHARS) -> str:
    text = passage.strip()
    if title and text.startswith(title):
        text = text[len(title):].strip()
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + " …"


def _sections(store: Store, config: Config, where: str, params: list) -> tuple[ThemeSection, ...]:
    budget = config["digest.max_per_theme"]
    sections = []
    for theme in config.themes:
        cols, rows = store.query(f"""
            SELECT m.article_id, m.title, m.url, m.outlet, m.published_at, m.score, m.passage
            FROM matches m JOIN core.articles a USING (article_id)
            WHERE m.theme = ? AND m.theme_version = ? AND {where}
            ORDER BY coalesce(m.published_at, a.fetched_at) DESC, m.score DESC""",
                                 [theme.name, theme.version, *params])
        items = []
        for aid, title, url, outlet, published, score, passage in rows[:budget]:
            copies = store.query("SELECT outlet, url FROM core.articles WHERE duplicate_of = ? ORDER BY outlet",
                                 [aid])[1]
            items.append(DigestItem(aid, title or url, url, outlet or "", published, float(score),
                                    excerpt(passage or "", title or ""), tuple(copies)))
        sections.append(ThemeSection(theme.name, theme.description, theme.threshold, tuple(items),
                                     max(0, len(rows) - budget)))
    return tuple(sections)


def feed_health_report(store: Store, config: Config, since: datetime, now: datetime) -> FeedHealth:
    """Failing feeds, stale feeds (no new item in health.stale_days) and feeds that came back
    since ``since``, among the configured feeds."""
    urls = [f.url for f in config.feeds]
    if not urls:
        return FeedHealth()
    days = config["health.stale_days"]
    rows = store.query("""
        SELECT feed_url, name, last_status, consecutive_failures, last_error, last_new_at, first_seen_at,
               recovered_at, next_fetch_at
        FROM core.feeds WHERE feed_url IN (SELECT unnest(?::VARCHAR[])) ORDER BY feed_url""", [urls])[1]
    failing, stale, recovered = [], [], []
    for url, name, status, failures, error, last_new, first_seen, recovered_at, next_at in rows:
        if status == "failed":
            retry = f"; next try after {next_at:%Y-%m-%d %H:%M} UTC" if next_at else ""
            failing.append(FeedStatus(url, name, f"{error} (failed {failures} time{'s' if failures != 1 else ''} "
                                                 f"in a row{retry})", failures))
            continue
        quiet_since = last_new or first_seen
        if quiet_since is not None and (now - quiet_since).days >= days:
            what = f"no new item since {last_new:%Y-%m-%d}" if last_new else f"no item at all in {days}+ days"
            stale.append(FeedStatus(url, name, what))
        if recovered_at is not None and recovered_at >= since:
            recovered.append(FeedStatus(url, name, f"working again since {recovered_at:%Y-%m-%d %H:%M} UTC"))
    failing.sort(key=lambda f: -f.consecutive_failures)
    return FeedHealth(tuple(failing), tuple(stale), tuple(recovered))


def digest_for_run(store: Store, config: Config, run_id: str, now: datetime) -> DigestData:
    """What one run flagged (the articles it scored), plus its statistics and failures."""
    cols, rows = store.query("SELECT * FROM runs WHERE run_id = ?", [run_id])
    stats = dict(zip(cols, rows[0])) if rows else {}
    failures = store.query("SELECT url, error FROM core.failures WHERE run_id = ? AND stage <> 'feed' "
                           "ORDER BY url", [run_id])[1]
    started = stats.get("started_at") or now
    return DigestData(
        generated_at=now, scope=f"run {run_id}", run_id=run_id,
        themes=_sections(store, config, "m.run_id = ?", [run_id]),
        stats=stats, article_failures=tuple(failures), health=feed_health_report(store, config, started, now),
    )


def digest_since(store: Store, config: Config, since: datetime, now: datetime) -> DigestData:
    """Everything flagged among articles first fetched since ``since``."""
    cols, rows = store.query("""
        SELECT count(*) AS runs, sum(articles_new) AS articles_new, sum(flagged) AS flagged
        FROM runs WHERE started_at >= ?""", [since])
    stats = dict(zip(cols, rows[0])) if rows else {}
    failures = store.query("""SELECT f.url, any_value(f.error) FROM core.failures f JOIN core.runs r USING (run_id)
                              WHERE r.started_at >= ? AND f.stage <> 'feed' GROUP BY f.url ORDER BY f.url""",
                           [since])[1]
    return DigestData(
        generated_at=now, scope=f"articles fetched since {since:%Y-%m-%d %H:%M} UTC", run_id=None,
        themes=_sections(store, config, "a.fetched_at >= ?", [since]),
        stats=stats, article_failures=tuple(failures), health=feed_health_report(store, config, since, now),
    )


def latest_run_id(store: Store) -> str | None:
    rows = store.query("SELECT run_id FROM runs WHERE status <> 'running' ORDER BY started_at DESC LIMIT 1")[1]
    return rows[0][0] if rows else None


_env_cache: dict[bool, jinja2.Environment] = {}


def _env(html: bool) -> jinja2.Environment:
    if html not in _env_cache:
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("aiwatch", "templates"),
            autoescape=html, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
            undefined=jinja2.StrictUndefined,
        )
        env.filters["date"] = lambda d: d.strftime("%Y-%m-%d") if d else "date unknown"
        env.filters["md"] = _md_escape
        env.filters["theme_title"] = lambda n: n.replace("_", " ")
        _env_cache[html] = env
    return _env_cache[html]


def _md_escape(text: str) -> str:
    """Escape text so Markdown shows it literally (titles come from untrusted feeds)."""
    out = []
    for ch in str(text):
        if ch in "\\`*_[]<>|#":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out).replace("\n", " ")


def render_markdown(data: DigestData) -> str:
    return _env(False).get_template("digest.md.j2").render(d=data)


def render_html(data: DigestData) -> str:
    return _env(True).get_template("digest.html.j2").render(d=data)


def write_digest_files(data: DigestData, folder: Path) -> tuple[Path, Path]:
    """Write digest-<run id or time>.md and .html into ``folder``; returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = "digest-" + (data.run_id or data.generated_at.strftime("%Y%m%dT%H%M%SZ"))
    md, html = folder / f"{stem}.md", folder / f"{stem}.html"
    md.write_text(render_markdown(data), "utf-8")
    html.write_text(render_html(data), "utf-8")
    return md, html

"""The digest: new flagged stories per theme, explained, with feed health and a trend chart.

A digest offers the stories flagged in the last ``digest.window_days`` that no earlier digest
listed, or that changed materially since (more outlets, or a score at least UPDATE_MARGIN
higher; those are marked as updated). ``core.digests`` and ``core.digest_items`` record what
each digest listed, so tomorrow's digest never repeats today's news. It is rendered to
Markdown, HTML (email-safe: inline CSS, no script), JSON and an Atom feed.
"""

from __future__ import annotations

import base64
import io
import json
import secrets
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree as ET

import jinja2

from .. import __version__
from ..config import Config
from ..records import FlaggedMatch, StoryMember
from ..store import Store
from ..urls import safe_link
from ..web.signing import judge_link, judge_url, load_secret

PASSAGE_CHARS = 320
UPDATE_MARGIN = 0.1  # a score this much higher than when last sent makes a story "updated"
TREND_DAYS = 30


@dataclass(frozen=True)
class DigestItem:
    story_id: str
    title: str
    url: str  # "" when the feed's link is not a safe http(s) link: the title is then shown as text
    outlet: str
    published_at: datetime | None
    score: float
    passage: str
    terms: tuple[str, ...] = ()
    also: tuple[tuple[str, str], ...] = ()  # (outlet, url) of the other copies
    updated: bool = False  # listed before; back because it changed
    article_id: str = ""  # the article shown (the story's best for the theme)
    relevant_url: str = ""  # signed links that judge it in `aiwatch web` (when web.base_url is set)
    not_relevant_url: str = ""

    @property
    def n_outlets(self) -> int:
        return 1 + len(self.also)


@dataclass(frozen=True)
class ThemeSection:
    name: str
    description: str
    threshold: float
    items: tuple[DigestItem, ...]
    more: int = 0  # new stories beyond the alert budget


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
    dropping: tuple[FeedStatus, ...] = ()  # working feeds whose last fetch dropped entries

    def __bool__(self) -> bool:
        return bool(self.failing or self.stale or self.recovered or self.dropping)


@dataclass(frozen=True)
class DigestData:
    digest_id: str
    generated_at: datetime
    scope: str  # what the digest covers, in words
    run_id: str | None
    themes: tuple[ThemeSection, ...]
    stats: dict = field(default_factory=dict)
    article_failures: tuple[tuple[str, str], ...] = ()  # (url, error)
    health: FeedHealth = FeedHealth()
    chart_png: bytes | None = None

    @property
    def flagged_total(self) -> int:
        return sum(len(t.items) + t.more for t in self.themes)

    @property
    def chart_data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.chart_png).decode("ascii") if self.chart_png else ""

    def subject(self) -> str:
        n = self.flagged_total
        return f"aiwatch digest {self.generated_at:%Y-%m-%d}: " + (
            f"{n} new stor{'ies' if n != 1 else 'y'}" if n else "nothing new")


def excerpt(passage: str, title: str, limit: int = PASSAGE_CHARS) -> str:
    text = passage.strip()
    if title and text.startswith(title):
        text = text[len(title):].strip()
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + " …"


def _candidates(store: Store, theme: str, version: str, since: datetime, run_id: str | None) -> list[DigestItem]:
    matches = store.digest_candidates(theme, version, since, run_id)
    story_of = store.stories_of([m.article_id for m in matches])
    members: dict[str, list[StoryMember]] = {}
    for member in store.story_members(sorted({story_of.get(m.article_id, m.article_id) for m in matches})):
        members.setdefault(member.story_id, []).append(member)
    best: dict[str, FlaggedMatch] = {}  # one entry per story: its best-scoring flagged article
    for m in matches:
        sid = story_of.get(m.article_id, m.article_id)
        if sid not in best or m.score > best[sid].score:
            best[sid] = m
    items = []
    for sid, m in best.items():
        others: dict[str, str] = {}  # other outlets only: a re-post by the same outlet is no news
        for member in members.get(sid, ()):
            if member.article_id != m.article_id and member.outlet != (m.outlet or "") and member.outlet not in others:
                others[member.outlet] = safe_link(member.url) or ""
        shown: dict[str, str] = {}  # a few distinct terms are an explanation; thirty are noise
        for term in m.terms:
            shown.setdefault(term.casefold().rstrip("s"), term)
        items.append(DigestItem(sid, m.title or m.url, safe_link(m.url) or "", m.outlet or "", m.published_at, m.score,
                                excerpt(m.passage or "", m.title or ""), tuple(shown.values())[:6],
                                tuple(others.items()), article_id=m.article_id))
    return items


def _with_links(config: Config, theme: str, items: list[DigestItem], now: datetime) -> list[DigestItem]:
    """The items with signed relevant / not relevant links to the web app, when it has an address."""
    if not config.web.base_url or not items:
        return items
    key = load_secret(config.web_secret_file)
    base = config.web.base_url
    return [replace(i, relevant_url=judge_url(base, judge_link(key, i.article_id, theme, True, now)),
                    not_relevant_url=judge_url(base, judge_link(key, i.article_id, theme, False, now)))
            for i in items]


def _rank(item: DigestItem) -> tuple:
    # the probability first (to the hundredth: 0.9986 and 0.9997 say the same), then how many
    # outlets carry the story, then genuine novelty
    return round(item.score, 2), item.n_outlets, not item.updated, item.score


def collect_digest(store: Store, config: Config, now: datetime, *, run_id: str | None = None,
                   since: datetime | None = None, theme: str | None = None, only_new: bool = True) -> DigestData:
    """The stories of one digest. ``only_new`` leaves out what earlier digests already listed
    (unless materially updated); ``since`` defaults to the digest window. Without ``only_new``,
    ``run_id`` narrows the stories to those that run flagged (a re-render of its digest)."""
    window_start = since or (now - timedelta(days=config.digest.window_days) if only_new else datetime.min.replace(
        tzinfo=now.tzinfo))
    sent = store.sent_stories() if only_new else {}
    budget = config.digest.max_per_theme
    sections = []
    for t in config.themes:
        if theme and t.name != theme:
            continue
        fresh = []
        for item in _candidates(store, t.name, t.version, window_start, None if only_new else run_id):
            before = sent.get((item.story_id, t.name))
            if before is not None:
                if not (item.n_outlets > before[1] or item.score >= before[0] + UPDATE_MARGIN):
                    continue
                item = replace(item, updated=True)
            fresh.append(item)
        fresh.sort(key=_rank, reverse=True)
        shown = _with_links(config, t.name, fresh[:budget], now)
        sections.append(ThemeSection(t.name, t.description, t.threshold, tuple(shown), max(0, len(fresh) - budget)))
    if run_id:
        stats = store.run_row(run_id) or {}
        failures = store.article_failures(run_id=run_id)
        health_since = stats.get("started_at") or now
        scope = f"run {run_id}"
    else:
        stats = store.window_stats(window_start)
        failures = store.article_failures(since=window_start)
        health_since = window_start
        scope = (f"stories first seen since {window_start:%Y-%m-%d %H:%M} UTC" if window_start.year > 1
                 else "all stored stories")
    if only_new:
        scope += ", not in an earlier digest"
    return DigestData(
        digest_id=now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3), generated_at=now, scope=scope,
        run_id=run_id, themes=tuple(sections), stats=stats, article_failures=tuple(failures),
        health=feed_health_report(store, config, health_since, now), chart_png=trend_chart(store, config, now),
    )


def record_digest(store: Store, data: DigestData, files: list[Path]) -> None:
    """Remember what this digest listed, so the next one does not repeat it."""
    store.record_digest(data.digest_id, data.generated_at, data.run_id, data.scope,
                        [(i.story_id, t.name, i.score, i.n_outlets, i.updated) for t in data.themes for i in t.items],
                        [str(f) for f in files])


def trend_chart(store: Store, config: Config, now: datetime, days: int = TREND_DAYS) -> bytes:
    """Flagged stories per theme per day over the last ``days`` days, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    start = (now - timedelta(days=days - 1)).date()
    counts = store.theme_daily(start)
    dates = [start + timedelta(days=i) for i in range(days)]
    fig, ax = plt.subplots(figsize=(6.4, 2.4), dpi=100)
    colors = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#9a6700", "#57606a"]
    for i, t in enumerate(config.themes):
        ax.plot(dates, [counts.get((t.name, d), 0) for d in dates], marker="o", markersize=2.5, linewidth=1.6,
                color=colors[i % len(colors)], label=t.name.replace("_", " "))
    ax.set_title(f"Flagged stories per day, last {days} days", fontsize=10, loc="left")
    ax.tick_params(labelsize=8)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_ylim(bottom=0)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=7, frameon=False, ncol=min(3, len(config.themes)), loc="upper left")
    fig.autofmt_xdate(rotation=0, ha="center")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def feed_health_report(store: Store, config: Config, since: datetime, now: datetime) -> FeedHealth:
    """Failing feeds, stale feeds (no new item in health.stale_days), feeds that came back
    since ``since`` and feeds whose last fetch dropped entries, among the configured feeds."""
    urls = [f.url for f in config.feeds]
    if not urls:
        return FeedHealth()
    days = config.health.stale_days
    failing, stale, recovered, dropping = [], [], [], []
    for r in store.feed_health_rows(urls):
        if r.last_status == "failed":
            n = r.consecutive_failures
            retry = f"; next try after {r.next_fetch_at:%Y-%m-%d %H:%M} UTC" if r.next_fetch_at else ""
            failing.append(FeedStatus(r.feed_url, r.name, f"{r.last_error} (failed {n} time{'s' if n != 1 else ''} "
                                                          f"in a row{retry})", n))
            continue
        quiet_since = r.last_new_at or r.first_seen_at
        if quiet_since is not None and (now - quiet_since).days >= days:
            what = f"no new item since {r.last_new_at:%Y-%m-%d}" if r.last_new_at else f"no item at all in {days}+ days"
            stale.append(FeedStatus(r.feed_url, r.name, what))
        if r.recovered_at is not None and r.recovered_at >= since:
            recovered.append(FeedStatus(r.feed_url, r.name, f"working again since {r.recovered_at:%Y-%m-%d %H:%M} UTC"))
        if r.entries_dropped:
            dropping.append(FeedStatus(r.feed_url, r.name, r.dropped_detail or f"{r.entries_dropped} dropped"))
    failing.sort(key=lambda f: -f.consecutive_failures)
    return FeedHealth(tuple(failing), tuple(stale), tuple(recovered), tuple(dropping))


_env_cache: dict[bool, jinja2.Environment] = {}


def _env(html: bool) -> jinja2.Environment:
    if html not in _env_cache:
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("aiwatch.report", "templates"),
            autoescape=html, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
            undefined=jinja2.StrictUndefined,
        )
        env.filters["date"] = lambda d: d.strftime("%Y-%m-%d") if d else "date unknown"
        env.filters["md"] = _md_escape
        env.filters["md_url"] = md_url
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


def md_url(url: str) -> str:
    """A safe link's URL as a Markdown link target: the characters that could end the target or
    start another link are percent-encoded (a URL with ``)[x](javascript:...)`` stays one link)."""
    return "".join(f"%{ord(ch):02X}" if ch in "()[]<> \\`" else ch for ch in url)


def render_markdown(data: DigestData) -> str:
    return _env(False).get_template("digest.md.j2").render(d=data)


def render_html(data: DigestData, chart_src: str | None = None) -> str:
    """The HTML digest; the chart inline as a data URI, or ``chart_src`` (e.g. "cid:trend")."""
    return _env(True).get_template("digest.html.j2").render(d=data, chart_src=chart_src or data.chart_data_uri)


def render_json(data: DigestData) -> str:
    doc = asdict(data)
    doc.pop("chart_png")
    return json.dumps(doc, default=str, ensure_ascii=False, indent=1)


ATOM = "http://www.w3.org/2005/Atom"


def render_atom(store: Store, config: Config, now: datetime, limit: int = 100) -> str:
    """A rolling Atom feed of the stories flagged in the last 30 days, newest first, so any feed
    reader can subscribe to aiwatch's output."""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    ET.SubElement(feed, f"{{{ATOM}}}title").text = "aiwatch: flagged stories"
    ET.SubElement(feed, f"{{{ATOM}}}id").text = f"urn:aiwatch:feed:{config.database.name}"
    ET.SubElement(feed, f"{{{ATOM}}}updated").text = now.isoformat(timespec="seconds")
    ET.SubElement(feed, f"{{{ATOM}}}generator", version=__version__).text = "aiwatch"
    author = ET.SubElement(feed, f"{{{ATOM}}}author")
    ET.SubElement(author, f"{{{ATOM}}}name").text = "aiwatch"
    for e in store.atom_entries(now - timedelta(days=TREND_DAYS), limit):
        entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
        ET.SubElement(entry, f"{{{ATOM}}}id").text = f"urn:aiwatch:story:{e.article_id}:{e.theme}"
        ET.SubElement(entry, f"{{{ATOM}}}title").text = f"[{e.theme.replace('_', ' ')}] {e.title or e.url}"
        if safe_link(e.url):
            ET.SubElement(entry, f"{{{ATOM}}}link", rel="alternate", href=e.url)
        ET.SubElement(entry, f"{{{ATOM}}}updated").text = e.flagged_at.isoformat(timespec="seconds")
        if e.published_at:
            ET.SubElement(entry, f"{{{ATOM}}}published").text = e.published_at.isoformat(timespec="seconds")
        ET.SubElement(entry, f"{{{ATOM}}}category", term=e.theme)
        ET.SubElement(entry, f"{{{ATOM}}}summary", type="text").text = (
            f"{e.outlet} · score {e.score:.2f} · {excerpt(e.passage or '', e.title or '')}")
    ET.indent(feed)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(feed, encoding="unicode") + "\n"


def write_digest_files(data: DigestData, folder: Path, formats: str = "md,html,json,atom",
                       store: Store | None = None, config: Config | None = None) -> list[Path]:
    """Write digest-<id>.{md,html,json} (+ the chart as a PNG) and the rolling aiwatch.atom."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {f.strip() for f in formats.split(",")}
    stem = folder / f"digest-{data.run_id or data.digest_id}"
    out = []
    if "md" in wanted:
        out.append(stem.with_suffix(".md"))
        out[-1].write_text(render_markdown(data), "utf-8")
    if "html" in wanted:
        out.append(stem.with_suffix(".html"))
        out[-1].write_text(render_html(data), "utf-8")
    if "json" in wanted:
        out.append(stem.with_suffix(".json"))
        out[-1].write_text(render_json(data), "utf-8")
    if data.chart_png:
        out.append(folder / f"{stem.name}-trend.png")
        out[-1].write_bytes(data.chart_png)
    if "atom" in wanted and store is not None and config is not None:
        out.append(folder / "aiwatch.atom")
        out[-1].write_text(render_atom(store, config, data.generated_at), "utf-8")
    return out

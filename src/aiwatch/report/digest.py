"""The digest: new flagged stories per theme, explained, with feed health and a trend chart.

A digest offers the stories flagged in the last ``digest.window_days`` that no earlier digest
listed, or that changed materially since (more outlets, or a score at least UPDATE_MARGIN
higher; those are marked as updated). ``core.digests`` and ``core.digest_items`` record what
each digest listed, so tomorrow's digest never repeats today's news. It is rendered to
Markdown, HTML (email-safe: inline CSS, no script), JSON and an Atom feed.
"""

from __future__ import annotations

import base64
import html as html_lib
import io
import json
import re
import secrets
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urljoin
from xml.etree import ElementTree as ET

import jinja2

from .. import __version__
from ..config import Config
from ..records import FlaggedMatch, StoryMember
from ..relevance.themes import Theme
from ..store import Store
from ..urls import safe_link
from ..web.signing import judge_link, judge_url, load_secret

PASSAGE_CHARS = 320
KICKER_CHARS, KICKER_WORDS = 60, 6  # a section label before a repeated headline: "Trade & security"
MAX_TERMS = 6
UPDATE_MARGIN = 0.1  # a score this much higher than when last sent makes a story "updated"
TREND_DAYS = 30
CHART_THEMES = 6  # panels in the trend chart
# 4.2 inches at 150 dpi: 630 pixels, shown at most 480 wide; on a 390-pixel phone about 320 wide,
# where 9-point tick labels are still 9 to 10 pixels tall (tests/test_digest.py measures it)
CHART_INCHES, CHART_DPI, CHART_TITLE_PT, CHART_TICK_PT = 4.2, 150, 11, 9
ARTICLE_SUBSTAGES = ("fetch", "extract", "dedup", "store", "embed_overlapped")  # parts of the articles stage


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
    example: str = ""  # the theme's example sentence the story was nearest to, if any
    article_id: str = ""  # the article shown (the story's best for the theme)
    relevant_url: str = ""  # signed links that judge it in `aiwatch web` (when web.base_url is set)
    not_relevant_url: str = ""

    @property
    def n_outlets(self) -> int:
        return 1 + len(self.also)

    @property
    def likelihood(self) -> str:
        return likelihood(self.score)


def likelihood(score: float) -> str:
    """A calibrated probability in words, for readers who do not think in probabilities."""
    if score >= 0.95:
        return "almost certainly on the theme"
    if score >= 0.8:
        return "very likely on the theme"
    if score >= 0.6:
        return "likely on the theme"
    return "possibly on the theme"


@dataclass(frozen=True)
class ThemeSection:
    name: str
    description: str
    threshold: float
    items: tuple[DigestItem, ...]
    more: int = 0  # new stories beyond the alert budget
    title: str = ""  # the theme's title (its name in words when it has none)


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

    @property
    def facts(self) -> list[tuple[str, str]]:
        return run_facts(self.stats)

    def subject(self) -> str:
        n = self.flagged_total
        return f"aiwatch digest {self.generated_at:%Y-%m-%d}: " + (
            f"{n} new stor{'ies' if n != 1 else 'y'}" if n else "nothing new")


def excerpt(passage: str, title: str, limit: int = PASSAGE_CHARS) -> str:
    """The passage as a reader wants it: without the page's kicker and repeated headline at its
    start ("Trade & security US blacklists 27 firms... The Commerce Department..."), cut at a
    word near ``limit`` characters."""
    text = " ".join(passage.split())
    head = " ".join(title.split())
    for _ in range(2 if head else 0):  # the first passage is the title, then the page: kicker and headline again
        at = text.casefold().find(head.casefold(), 0, KICKER_CHARS + len(head))
        if at < 0 or len(text[:at].split()) > KICKER_WORDS:
            break
        text = text[at + len(head):].lstrip(" :|-–—·•")
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + " …"


def distinct_terms(terms: tuple[str, ...], rarity: dict[str, float] | None = None) -> tuple[str, ...]:
    """A few distinct terms (an explanation; thirty are noise): "chip", "chips" and "Chip" once,
    the telling ones first ("entity list" before "AI", by how rarely they occur in scored articles)."""
    shown: dict[str, str] = {}
    for term in sorted(terms, key=lambda t: (rarity or {}).get(t, 0.0)):
        shown.setdefault(term.casefold().rstrip("s"), term)
    return tuple(shown.values())[:MAX_TERMS]


def _candidates(store: Store, theme: Theme, since: datetime, run_id: str | None) -> list[DigestItem]:
    matches = store.digest_candidates(theme.name, theme.version, since, run_id)
    rarity = store.term_rarity(theme.name, theme.version) if matches else {}
    examples = set(theme.positive_examples)
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
        items.append(DigestItem(sid, m.title or m.url, safe_link(m.url) or "", m.outlet or "", m.published_at, m.score,
                                excerpt(m.passage or "", m.title or ""), distinct_terms(m.terms, rarity),
                                tuple(others.items()), example=m.example if m.example in examples else "",
                                article_id=m.article_id))
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
        for item in _candidates(store, t, window_start, None if only_new else run_id):
            before = sent.get((item.story_id, t.name))
            if before is not None:
                if not (item.n_outlets > before[1] or item.score >= before[0] + UPDATE_MARGIN):
                    continue
                item = replace(item, updated=True)
            fresh.append(item)
        fresh.sort(key=_rank, reverse=True)
        shown = _with_links(config, t.name, fresh[:budget], now)
        sections.append(ThemeSection(t.name, t.description, t.threshold, tuple(shown),
                                     max(0, len(fresh) - budget), title=t.display_title))
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
        health=feed_health_report(store, config, health_since, now, run_feeds=bool(run_id)), chart_png=trend_chart(store, config, now),
    )


def record_digest(store: Store, data: DigestData, files: list[Path]) -> None:
    """Remember what this digest listed, so the next one does not repeat it."""
    store.record_digest(data.digest_id, data.generated_at, data.run_id, data.scope,
                        [(i.story_id, t.name, i.score, i.n_outlets, i.updated) for t in data.themes for i in t.items],
                        [str(f) for f in files])


def trend_chart(store: Store, config: Config, now: datetime, days: int = TREND_DAYS) -> bytes:
    """Flagged stories per theme per day of publication over the last ``days`` days, as a PNG:
    one small panel per theme (lines of several themes hide each other), sized to stay
    legible when a phone shows it 360 pixels wide."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    start = (now - timedelta(days=days - 1)).date()
    counts = store.theme_daily(start)
    dates = [start + timedelta(days=i) for i in range(days)]
    themes = config.themes[:CHART_THEMES]
    colors = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#9a6700", "#57606a"]
    fig, axes = plt.subplots(len(themes), 1, figsize=(CHART_INCHES, 0.6 + 1.1 * len(themes)), dpi=CHART_DPI,
                             sharex=True, squeeze=False)
    top = max([counts.get((t.name, d), 0) for t in themes for d in dates] + [1])
    for i, (t, ax) in enumerate(zip(themes, axes[:, 0])):
        values = [counts.get((t.name, d), 0) for d in dates]
        ax.bar(dates, values, width=0.8, color=colors[i % len(colors)])
        ax.set_title(f"{t.display_title}: {sum(values)}", fontsize=CHART_TITLE_PT, loc="left", pad=3)
        ax.set_ylim(0, top * 1.15)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=2, integer=True))
        ax.tick_params(labelsize=CHART_TICK_PT, length=2)
        ax.spines[["top", "right"]].set_visible(False)
    axes[-1, 0].xaxis.set_major_locator(mdates.DayLocator(interval=max(1, days // 4)))
    axes[-1, 0].xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))
    fig.suptitle(f"Flagged stories by day published, last {days} days", fontsize=CHART_TITLE_PT, x=0.02,
                 ha="left")
    fig.tight_layout(h_pad=0.4)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def run_facts(stats: dict) -> list[tuple[str, str]]:
    """A run's (or a window's) statistics as a reader wants them: minutes, not microseconds;
    seconds per stage, not a JSON object."""
    if not stats:
        return []
    facts: list[tuple[str, str]] = []
    started, finished = stats.get("started_at"), stats.get("finished_at")
    if isinstance(started, datetime):
        facts.append(("Started", f"{started.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC"))
        if isinstance(finished, datetime):
            facts.append(("Took", _duration((finished - started).total_seconds())))
    if stats.get("status"):
        facts.append(("Status", str(stats["status"])))
    if "runs" in stats:
        facts.append(("Runs", f"{stats['runs'] or 0}"))
    if stats.get("feeds_total") is not None:
        parts = [f"{stats.get(k) or 0} {label}" for k, label in (
            ("feeds_ok", "fetched"), ("feeds_not_modified", "unchanged"), ("feeds_failed", "failed"),
            ("feeds_deferred", "waiting to retry")) if stats.get(k)]
        facts.append(("Feeds", f"{stats['feeds_total']}" + (f" ({', '.join(parts)})" if parts else "")))
    if stats.get("articles_new") is not None:
        failed = stats.get("articles_failed") or 0
        facts.append(("New articles", f"{stats['articles_new'] or 0}"
                      + (f" ({failed} page{'s' if failed != 1 else ''} failed)" if failed else "")))
    if stats.get("passages_embedded") is not None:
        facts.append(("Passages embedded", f"{stats['passages_embedded']}"))
    if stats.get("flagged") is not None:
        facts.append(("Flagged", f"{stats['flagged'] or 0}"))
    stages = stats.get("stage_seconds")
    if isinstance(stages, str):
        try:
            stages = json.loads(stages)
        except ValueError:
            stages = None
    if isinstance(stages, dict):
        timed = {k: v for k, v in stages.items() if isinstance(v, (int, float)) and v >= 0.05}
        parts = []
        for k, v in timed.items():
            if k in ARTICLE_SUBSTAGES:
                continue
            inner = [f"{int(timed[p])} passages embedded meanwhile" if p == "embed_overlapped"  # a count, not seconds
                     else f"{p.replace('_', ' ')} {_duration(timed[p])}" for p in ARTICLE_SUBSTAGES if p in timed]
            parts.append(f"{k} {_duration(v)}" + (f" ({', '.join(inner)})" if k == "articles" and inner else ""))
        if parts:
            facts.append(("Time per stage", " · ".join(parts)))
    if stats.get("peak_rss_mb"):
        facts.append(("Peak memory", f"{float(stats['peak_rss_mb']):.0f} MB"))
    if stats.get("error"):
        facts.append(("Error", " ".join(str(stats["error"]).split())[:300]))
    return facts


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes, sec = divmod(round(seconds), 60)
    return f"{minutes} min {sec:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


_SAX = re.compile(r"\(?SAXParseException: <unknown>:(\d+):(\d+): ([^()]*?)\)?(?:, no entries found)?$")


def plain_error(error: str | None) -> str:
    """A stored feed error as a reader wants it (errors recorded before aiwatch worded XML
    errors itself said "SAXParseException: <unknown>:12:2: mismatched tag")."""
    text = " ".join((error or "unknown error").split())
    return _SAX.sub(lambda m: f": broken XML at line {m[1]}, column {m[2]}: {m[3]}; no entries could be read",
                    text).replace("feed :", "feed:")


def feed_health_report(store: Store, config: Config, since: datetime, now: datetime,
                       run_feeds: bool = False) -> FeedHealth:
    """Failing feeds, stale feeds (no new item in health.stale_days), feeds that came back
    since ``since`` and feeds whose last fetch dropped entries, among the configured feeds and,
    with ``run_feeds``, every feed tried since ``since`` (a run given its feeds on the command line)."""
    urls = [f.url for f in config.feeds]
    if not urls and not run_feeds:
        return FeedHealth()
    days = config.health.stale_days
    failing, stale, recovered, dropping = [], [], [], []
    for r in store.feed_health_rows(urls, attempted_since=since if run_feeds else None):
        if r.last_status == "failed":
            n = r.consecutive_failures
            retry = f"; next try after {r.next_fetch_at:%Y-%m-%d %H:%M} UTC" if r.next_fetch_at else ""
            failing.append(FeedStatus(r.feed_url, r.name, f"{plain_error(r.last_error)} (failed {n} time{'s' if n != 1 else ''} "
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


def render_atom(store: Store, config: Config, now: datetime, limit: int = 100, html_name: str = "") -> str:
    """A rolling Atom feed of the stories flagged in the last 30 days, newest first, so any feed
    reader can subscribe to aiwatch's output. Its id is the database's own (made once); each
    entry carries the story's explanation as content. With ``digest.atom_url`` the feed links
    to itself and, as its alternate, to ``html_name`` (the latest HTML digest, written beside it)."""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    ET.SubElement(feed, f"{{{ATOM}}}title").text = "aiwatch: flagged stories"
    install = store.install_id()
    ET.SubElement(feed, f"{{{ATOM}}}id").text = f"urn:uuid:{install}" if install else "urn:aiwatch:feed"
    ET.SubElement(feed, f"{{{ATOM}}}updated").text = now.isoformat(timespec="seconds")
    self_url = safe_link(config.digest.atom_url) if config.digest.atom_url else None
    if self_url:
        ET.SubElement(feed, f"{{{ATOM}}}link", rel="self", type="application/atom+xml", href=self_url)
    if html_name:
        ET.SubElement(feed, f"{{{ATOM}}}link", rel="alternate", type="text/html",
                      href=urljoin(self_url, html_name) if self_url else html_name)
    ET.SubElement(feed, f"{{{ATOM}}}generator", version=__version__).text = "aiwatch"
    author = ET.SubElement(feed, f"{{{ATOM}}}author")
    ET.SubElement(author, f"{{{ATOM}}}name").text = "aiwatch"
    titles = {t.name: t.display_title for t in config.themes}
    for e in store.atom_entries(now - timedelta(days=TREND_DAYS), limit):
        theme_title = titles.get(e.theme, e.theme.replace("_", " "))
        entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
        ET.SubElement(entry, f"{{{ATOM}}}id").text = f"urn:aiwatch:story:{e.article_id}:{e.theme}"
        ET.SubElement(entry, f"{{{ATOM}}}title").text = f"[{theme_title}] {e.title or e.url}"
        if safe_link(e.url):
            ET.SubElement(entry, f"{{{ATOM}}}link", rel="alternate", href=e.url)
        ET.SubElement(entry, f"{{{ATOM}}}updated").text = e.flagged_at.isoformat(timespec="seconds")
        if e.published_at:
            ET.SubElement(entry, f"{{{ATOM}}}published").text = e.published_at.isoformat(timespec="seconds")
        ET.SubElement(entry, f"{{{ATOM}}}category", term=e.theme, label=theme_title)
        passage = excerpt(e.passage or "", e.title or "")
        ET.SubElement(entry, f"{{{ATOM}}}summary", type="text").text = (
            f"{e.outlet} · score {e.score:.2f} ({likelihood(e.score)}) · {passage}")
        ET.SubElement(entry, f"{{{ATOM}}}content", type="html").text = _atom_content(e, theme_title, passage)
    ET.indent(feed)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(feed, encoding="unicode") + "\n"


def _atom_content(e, theme_title: str, passage: str) -> str:
    """An entry's explanation as HTML (escaped once here; the XML writer escapes it again, as
    Atom's type="html" wants)."""
    esc = html_lib.escape
    parts = [f"<p><strong>{esc(theme_title)}</strong>: score {e.score:.2f}, {esc(likelihood(e.score))}."
             f" {esc(e.outlet or '')}" + (f", published {e.published_at:%Y-%m-%d}" if e.published_at else "") + "</p>",
             f"<blockquote>{esc(passage)}</blockquote>"]
    if e.terms:
        parts.append(f"<p>Matched terms: {esc(', '.join(distinct_terms(e.terms)))}</p>")
    link = safe_link(e.url)
    if link:
        parts.append(f'<p><a href="{esc(link)}">Read the article</a></p>')
    return "".join(parts)


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
        html_name = stem.with_suffix(".html").name if "html" in wanted else ""
        out.append(folder / "aiwatch.atom")
        out[-1].write_text(render_atom(store, config, data.generated_at, html_name=html_name), "utf-8")
    return out

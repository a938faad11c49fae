"""The library calls behind the maintenance commands: each one opens what it needs, takes the
write lock when it writes, and returns a record for the command line to print.

``reextract``, ``reembed``, ``rescore``, ``prune`` and ``record_feedback`` change the database;
``calibrate`` and ``add_theme`` change the config file (through :mod:`aiwatch.configfile`);
``add_feed`` and ``import_opml`` add feeds to it. Digests are :func:`aiwatch.report.write_digest`.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator, Sequence

from . import configfile
from .articles.build import article_passages, page_text
from .articles.extract import extract_article
from .clock import new_run_id, utcnow
from .config import Config, FeedSpec
from .errors import AiwatchError, ConfigError
from .http import Fetched, HttpClient
from .ingest.subscriptions import Discovered, discover_feed, parse_opml
from .records import ArticleRef, ArticleToStore
from .relevance.embed import default_cache_dir, embedder_for, model_id
from .relevance.embedding import embed_passages
from .relevance.evaluate import ItemScorer, LabelledItem, load_labels
from .relevance.protocols import calibrate
from .relevance.propose import propose_theme
from .relevance.scoring import ScoreResult, score_articles
from .relevance.themes import Theme, theme_from_mapping
from .store import Store, compact, open_store, write_lock
from .text import content_hash

log = logging.getLogger(__name__)


@contextmanager
def writing(config: Config) -> Iterator[None]:
    """Hold the run lock of an existing database: what every maintenance command that writes
    needs first (a second writer waits up to storage.lock_timeout)."""
    if not config.database.exists():
        raise AiwatchError(f"{config.database}: no such database; run `aiwatch run` or `aiwatch demo` first")
    with write_lock(config.database, config.storage.lock_timeout):
        yield


def reading(config: Config, sandbox: bool = False) -> Store:
    """A read-only connection to the config's database (migrated first if it is older);
    ``sandbox``: for a user's own SQL, which may read this database and nothing else."""
    return Store.open_for_reading(config.database, lock_timeout=10, sandbox=sandbox)


# -- the database ---------------------------------------------------------------------------

def reextract(config: Config, since: datetime | None = None, now: datetime | None = None) -> tuple[int, int]:
    """Extract the stored raw pages again (after an upgrade or a settings change), without
    fetching. Changed texts replace the old ones; their passages are embedded and scored anew.
    Returns (pages checked, articles changed)."""
    now = now or utcnow()
    run_id = new_run_id(now, "reextract-")
    checked, rows, psg = 0, [], []
    with writing(config):
        with open_store(config) as store:
            for stored in store.stored_pages(since):
                checked += 1
                old = store.article(stored.article_id)
                if old is None:
                    continue
                fetched = Fetched(stored.url, stored.url, 200, {"content-type": stored.content_type}, stored.html)
                page = page_text(config.extract, fetched, old.title or "", "")
                if page.text is None or page.text == old.text:
                    continue
                new = replace(old, text=page.text, text_source="page", language=page.language or old.language,
                              content_hash=content_hash(page.text), page_error=None, extractor=page.extractor,
                              extraction_notes=page.notes, extraction_agreement=page.agreement)
                rows.append(ArticleToStore(new))
                psg += article_passages(new, config.embed.chunk_words, config.embed.max_chunks)
            if rows:
                store.save_articles(rows, psg, run_id)
        if rows:
            embed_passages(config, now)
            score_articles(config, run_id, now)
    log.info("reextract: %d stored pages checked, %d articles changed", checked, len(rows))
    return checked, len(rows)


@dataclass(frozen=True)
class ReembedResult:
    embedded: int  # passages embedded with the configured backend
    dropped: int  # vectors of other backends deleted
    scored: int  # article-theme pairs scored again


def reembed(config: Config, now: datetime | None = None) -> ReembedResult:
    """Switch a database to the configured embedding backend: embed every stored passage with
    it, drop the other backends' vectors, and score the articles again with the new vectors."""
    now = now or utcnow()
    model = model_id(config.embed.backend)
    with writing(config):
        embedded = embed_passages(config, now)
        with open_store(config) as store:
            dropped = store.drop_other_models(model)
            store.sync_themes(config.themes, now)
            for theme in config.themes:
                store.clear_scores(theme)
        scored = score_articles(config, new_run_id(now, "reembed-"), now).scored
    log.info("reembed: %d passages embedded with %s, %d other vectors dropped", embedded, model, dropped)
    return ReembedResult(embedded, dropped, scored)


def rescore(config: Config, theme: str | None = None, since: timedelta | None = None) -> tuple[int, ScoreResult]:
    """Score stored articles again against the current themes (or one), those fetched within
    ``since`` or all, from the stored vectors. Returns (scores cleared first, the new scores)."""
    themes = [config.theme(theme)] if theme else list(config.themes)
    now = utcnow()
    with writing(config):
        with open_store(config) as store:
            cleared = sum(store.clear_scores(t, now - since if since else None) for t in themes)
        return cleared, score_articles(config, new_run_id(now, "rescore-"), only=[t.name for t in themes])


def prune(config: Config, older_than: timedelta) -> tuple[datetime, dict[str, int], int]:
    """Delete what was fetched more than ``older_than`` ago and compact the file. Returns the
    cutoff, the rows deleted per kind and the bytes freed."""
    cutoff = utcnow() - older_than
    with writing(config):
        with open_store(config) as store:
            counts = store.prune(cutoff)
        freed = compact(config.database)
    return cutoff, counts, freed


def compact_database(config: Config) -> int:
    """Rewrite the database without its free space, in the file format DuckDB 1.1+ reads;
    returns the bytes saved."""
    with writing(config):
        return compact(config.database)


def record_feedback(config: Config, url: str, theme: str, relevant: bool) -> ArticleRef:
    """Record a judgement of the article stored under ``url``; it counts from the next scoring."""
    config.theme(theme)
    with writing(config):
        with open_store(config) as store:
            found = store.article_for_url(url)
            if found is None:
                raise AiwatchError(f"{url}: no stored article has this URL")
            store.record_feedback(found.article_id, theme, relevant, utcnow())
    return found


# -- themes -------------------------------------------------------------------------------------

def labelled_items(config: Config, folders: Sequence[str | Path], with_feedback: bool = False) -> list[LabelledItem]:
    """Items of the labels folders (each ``DIR``, or ``DIR=FILE`` naming where its items are),
    plus the user's judgements (for calibration) when asked."""
    out = []
    for spec in folders:
        folder, _, items = str(spec).partition("=")
        out += load_labels(Path(folder), Path(items) if items else None)
    if with_feedback and config.database.exists():
        with reading(config) as store:
            out += [LabelledItem(j.article_id, j.title, j.text, j.feed_url, {j.theme: 2 if j.relevant else 0},
                                 source="your judgements") for j in store.judged_articles()]
    return out


def item_scorer(config: Config, items: Sequence[LabelledItem]) -> ItemScorer:
    """The items embedded once; vectors cached beside the ONNX files, so a second evaluation of
    the same items embeds nothing."""
    cache = Path(config.embed.cache_dir).expanduser() if config.embed.cache_dir else default_cache_dir()
    return ItemScorer(items, embedder_for(config), config, cache_dir=cache / "eval")


def calibrate_thresholds(config: Config, folders: Sequence[str | Path], targets: dict[str, float],
                         write: bool = True) -> tuple[dict[str, float], dict[str, list], Path | None]:
    """Thresholds chosen on labelled items and the user's judgements as `aiwatch run` scores them
    (best F1, or the best recall at a precision target), with each theme's reliability curve;
    written to the config file unless ``write`` is false."""
    scorer = item_scorer(config, labelled_items(config, folders, with_feedback=True))
    thresholds, curves = calibrate(scorer, targets)
    path = configfile.set_theme_thresholds(config.path, config.themes, thresholds) if write else None
    return thresholds, curves, path


def add_theme(config: Config, name: str, *, from_file: str | None = None,
              from_url: str | None = None) -> tuple[Theme, Path]:
    """Propose a theme from an example article (a file, or a URL fetched and extracted) and add
    it to the config file for the user to edit."""
    if bool(from_file) == bool(from_url):
        raise ConfigError("themes add", "give exactly one of --from-file FILE or --from-url URL")
    if any(t.name == name for t in config.themes):
        raise ConfigError("themes add", f"a theme named {name!r} exists already")
    if from_url:
        with HttpClient.from_config(config) as client:
            fetched = client.fetch(from_url)
        title, text = _article_text(fetched, from_url)
    else:
        try:
            raw = Path(from_file).read_bytes()
        except OSError as exc:
            raise AiwatchError(f"{from_file}: cannot be read: {exc.strerror}") from None
        if raw.lstrip()[:1] == b"<":
            title, text = _article_text(Fetched(from_file, from_file, 200, {}, raw), from_file)
        else:
            title, _, text = raw.decode("utf-8", errors="replace").strip().partition("\n")
    return add_theme_from_text(config, name, title, text, from_file or from_url or "")


def add_theme_from_text(config: Config, name: str, title: str, text: str, where: str) -> tuple[Theme, Path]:
    """Propose a theme from an article's title and text (a stored article, in the web app) and
    add it to the config file."""
    if any(t.name == name for t in config.themes):
        raise ConfigError("themes add", f"a theme named {name!r} exists already")
    theme = propose_theme(name, title, text or title)
    theme_from_mapping(json.loads(theme.to_json()), where=f"themes.{name}")  # a bad name is refused here
    note = (f"Proposed by `aiwatch themes add` from {where}:\n"
            "edit the description, examples and terms, then calibrate the threshold.")
    return theme, configfile.add_theme(config.path, theme, config.themes, note)


def _article_text(fetched: Fetched, where: str) -> tuple[str, str]:
    got = extract_article(fetched)
    if got is None:
        raise AiwatchError(f"{where}: no article text could be extracted")
    return got.title or "", got.text


# -- feeds --------------------------------------------------------------------------------------

def add_feed(config: Config, url: str, name: str | None = None) -> tuple[Discovered, Path, bool]:
    """Add the feed at ``url``, or the feed a site page links to, to the config file. Returns
    what was found, the file, and whether it was new there."""
    with HttpClient.from_config(config) as client:
        found = discover_feed(client, url)
    path, added = configfile.add_feeds(config.path, [FeedSpec(found.url, name or found.title)])
    return found, path, bool(added)


def import_opml(config: Config, file: str, data: bytes | None = None) -> tuple[list[FeedSpec], list[FeedSpec], Path]:
    """Add the feeds of an OPML file (or of ``data``, an upload named ``file``) to the config
    file. Returns (feeds in the file, feeds added, the config file)."""
    if data is None:
        try:
            data = Path(file).read_bytes()
        except OSError as exc:
            raise AiwatchError(f"{file}: cannot be read: {exc.strerror}") from None
    feeds = parse_opml(data, file)
    path, added = configfile.add_feeds(config.path, feeds)
    return feeds, added, path


def feed_rows(config: Config, store: Store | None = None) -> list[dict]:
    """Every configured feed with its health (``feed_health``), for `aiwatch feeds` and the app
    (which passes its own open ``store``)."""
    state: dict[str, dict] = {}
    if store is not None:
        state = store.feed_health()
    elif config.database.exists():
        with reading(config) as store:
            state = store.feed_health()
    out = []
    for f in config.feeds:
        row = dict(state.get(f.url) or {"feed_url": f.url, "last_status": "never fetched"})
        row["name"] = f.name or row.get("title") or ""
        out.append(row)
    return out

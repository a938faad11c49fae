"""Writing ``aiwatch.toml``: the commented template, and edits that keep the user's comments.

Every edit (feeds added, a theme added, thresholds calibrated) goes through tomlkit, which
keeps the file's comments, order and layout and writes correct TOML for any value (a feed
title with a newline, quotes or backslashes included). A file that uses the built-in feeds or
themes (it has no ``[[feeds]]`` or ``[[themes]]``) gets them written out first, so an edit never
silently drops the defaults.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Iterable

import tomlkit
from tomlkit.items import AoT, Table

from .config import DEFAULT_CONFIG_NAME, SETTINGS, TABLES, FeedSpec, default_feeds, default_themes
from .errors import ConfigError
from .relevance.themes import Theme

_THEME_LISTS = ("positive_examples", "negative_examples", "must_have", "must_also_have", "must_not", "key_terms")


def _string_array(items: tuple[str, ...]):
    array = tomlkit.array()
    array.extend(items)
    return array.multiline(True) if items else array


def theme_table(theme: Theme, note: str | None = None) -> Table:
    """A ``[[themes]]`` table for ``theme``, opening with ``note`` as comment lines."""
    table = tomlkit.table()
    for line in (note or "").splitlines():
        table.add(tomlkit.comment(line))
    table.add("name", theme.name)
    if theme.title:
        table.add("title", theme.title)
    table.add("description", theme.description)
    table.add("threshold", theme.threshold)
    for key in _THEME_LISTS:
        table.add(key, _string_array(getattr(theme, key)))
    return table


def _feed_table(feed: FeedSpec) -> Table:
    table = tomlkit.table()
    table.add("url", feed.url)
    if feed.name:
        table.add("name", feed.name)
    if feed.category:
        table.add("category", feed.category)
    if feed.site_url:
        table.add("site_url", feed.site_url)
    return table


def theme_toml(theme: Theme, note: str | None = None) -> str:
    """``theme`` as TOML text (what `aiwatch themes add` shows)."""
    doc = tomlkit.document()
    doc.append("themes", tomlkit.aot())
    doc["themes"].append(theme_table(theme, note))
    return tomlkit.dumps(doc)


def config_template() -> str:
    """The commented aiwatch.toml that `aiwatch init` writes: every setting at its default."""
    doc = tomlkit.document()
    for line in ("aiwatch configuration. Every setting is shown at its default value.",
                 "Any setting can also be overridden by an environment variable,",
                 "e.g. AIWATCH_FETCH_TIMEOUT=30 for [fetch] timeout."):
        doc.add(tomlkit.comment(line))
    doc.add(tomlkit.nl())
    for table_key in TABLES:
        table = tomlkit.table()
        for s in SETTINGS:
            if s.table == table_key:
                for line in textwrap.wrap(s.help, 96):
                    table.add(tomlkit.comment(line))
                table.add(s.name, s.default)
        table.add(tomlkit.nl())
        parent, _, name = table_key.rpartition(".")
        (doc[parent] if parent else doc).add(name, table)  # [digest.email] inside [digest]
    for line in ("Feeds to watch. Without any [[feeds]] table aiwatch uses its built-in list of",
                 "public AI and tech news feeds (shown here). name is optional (shown as the outlet)."):
        doc.add(tomlkit.comment(line))
    feeds = tomlkit.aot()
    for feed in default_feeds():
        feeds.append(_feed_table(feed))
    doc.append("feeds", feeds)
    doc.add(tomlkit.nl())
    for line in (
            "Themes to flag. Without any [[themes]] table aiwatch uses its three default themes",
            "(shown here). An article is flagged when its probability of being on the theme reaches",
            "the theme's threshold (0.45 by default: the same meaning on every theme).",
            "positive_examples and negative_examples are short texts that are, and are not, on the",
            "theme; they sharpen the match. must_have: an article with none of these terms gets half",
            "its score (must_also_have: a second group, one of which must appear too); must_not: an",
            "article with any of them gets half its score. key_terms: the theme's action words in",
            "any language; in text the English model cannot read, a must_have term plus a key term",
            "counts as lexical evidence. Edit freely: an edited theme gets a new version and stored",
            "articles are re-scored on the next run."):
        doc.add(tomlkit.comment(line))
    themes = tomlkit.aot()
    for theme in default_themes():
        themes.append(theme_table(theme))
    doc.append("themes", themes)
    return tomlkit.dumps(doc)


def _read(path: Path) -> tomlkit.TOMLDocument:
    if not path.exists():
        path.write_text(config_template(), "utf-8")
    try:
        return tomlkit.parse(path.read_text("utf-8"))
    except tomlkit.exceptions.ParseError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"cannot be read: {exc}") from None


def _write(path: Path, doc: tomlkit.TOMLDocument) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(tomlkit.dumps(doc), "utf-8")
    tmp.replace(path)  # never a half-written config


def _array_of_tables(doc: tomlkit.TOMLDocument, key: str, defaults: Iterable, make, note: str) -> AoT:
    """The document's ``[[key]]`` array, created with the built-in entries when it has none."""
    if key not in doc:
        doc.add(tomlkit.nl())
        doc.add(tomlkit.comment(note))
        aot = tomlkit.aot()
        for item in defaults:
            aot.append(make(item))
        doc.append(key, aot)
    return doc[key]


def add_feeds(path: Path | None, feeds: Iterable[FeedSpec]) -> tuple[Path, list[FeedSpec]]:
    """Add ``[[feeds]]`` tables (the file is made from the template when missing). Returns the
    file and the feeds actually added (URLs already listed are skipped)."""
    path = path or Path(DEFAULT_CONFIG_NAME)
    doc = _read(path)
    wrote_defaults = "feeds" not in doc
    aot = _array_of_tables(doc, "feeds", default_feeds(), _feed_table,
                           "The built-in feeds, written out when the first feed was added.")
    known = {str(t.get("url")) for t in aot}
    added = []
    for feed in feeds:
        if feed.url not in known:
            known.add(feed.url)
            added.append(feed)
            aot.append(_feed_table(feed))
    if added or wrote_defaults:
        _write(path, doc)
    return path, added


def _themes(doc: tomlkit.TOMLDocument, themes: tuple[Theme, ...], note: str) -> AoT:
    return _array_of_tables(doc, "themes", themes, theme_table, note)


def add_theme(path: Path | None, theme: Theme, themes_in_use: tuple[Theme, ...], note: str) -> Path:
    """Append ``theme`` as a ``[[themes]]`` table, after writing out the themes in use when the
    file has none (so the defaults are kept)."""
    path = path or Path(DEFAULT_CONFIG_NAME)
    doc = _read(path)
    aot = _themes(doc, themes_in_use, "The themes in use, written out when a theme was added.")
    aot.append(theme_table(theme, note))
    _write(path, doc)
    return path


def set_theme_thresholds(path: Path | None, themes: tuple[Theme, ...], thresholds: dict[str, float]) -> Path:
    """Write new thresholds into the config file, keeping everything else as it was. A file
    without ``[[themes]]`` gets the themes in use written out with the new thresholds."""
    path = path or Path(DEFAULT_CONFIG_NAME)
    doc = _read(path)
    aot = _themes(doc, themes, "Themes written out by `aiwatch themes calibrate`.")
    for table in aot:
        name = str(table.get("name"))
        if name in thresholds:
            table["threshold"] = thresholds[name]
    _write(path, doc)
    return path

"""Settings, declared once: name, type, default and help.

A config is read from a TOML file (``aiwatch.toml``), then ``AIWATCH_<SECTION>_<KEY>``
environment variables override single settings. Every value is validated at start, and a
bad one raises :class:`ConfigError` naming its key. ``aiwatch init`` writes the commented
template built from the same declarations, and a test checks the README documents each.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import ConfigError
from .themes import Theme, theme_from_mapping

DEFAULT_CONFIG_NAME = "aiwatch.toml"


@dataclass(frozen=True)
class Setting:
    key: str  # "section.name" or "section.table.name"
    type: type
    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None  # returns a problem, or None
    optional: bool = False  # a string that may be empty ("not set")

    @property
    def table(self) -> str:
        return self.key.rsplit(".", 1)[0]

    @property
    def name(self) -> str:
        return self.key.rsplit(".", 1)[1]


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def _cron(value: str) -> str | None:
    return None if len(value.split()) == 5 else "must be a 5-field cron expression, e.g. '0 7 * * *'"


def _formats(value: str) -> str | None:
    bad = [f for f in (x.strip() for x in value.split(",")) if f not in ("md", "html", "json", "atom")]
    return f"unknown format {bad[0]!r} (known: md, html, json, atom)" if bad else None


def _contact(value: str) -> str | None:
    return None if re.match(r"^(https?://|mailto:)\S+$", value) else "must be an http(s):// or mailto: URL"


SETTINGS: tuple[Setting, ...] = (
    Setting("storage.database", str, "aiwatch.duckdb",
            "DuckDB file holding everything; relative paths are relative to the config file's folder."),
    Setting("storage.lock_timeout", float, 600.0,
            "Seconds a run waits for another run writing the same database before it gives up.",
            _non_negative),
    Setting("fetch.articles", bool, True,
            "Fetch each new entry's page and extract its text; false uses the feed's own content only."),
    Setting("fetch.allow_private_addresses", bool, False,
            "Allow feeds and pages on loopback or private addresses (local test servers); "
            "off by default so a feed cannot point aiwatch at your internal network."),
    Setting("fetch.timeout", float, 20.0, "Seconds allowed for one whole response (connect + body).", _positive),
    Setting("fetch.max_bytes", int, 10_000_000, "Largest response body accepted, in bytes.", _positive),
    Setting("fetch.max_redirects", int, 5, "Redirects followed per request.", _non_negative),
    Setting("fetch.concurrency", int, 8, "Requests in flight at once, across all hosts.", _positive),
    Setting("fetch.per_host", int, 2, "Requests in flight at once to one host.", _positive),
    Setting("fetch.host_delay", float, 0.5, "Least seconds between the starts of two requests to one host.",
            _non_negative),
    Setting("fetch.retries", int, 2,
            "Retries of a transient failure (timeout, connection error, 429, 502, 503, 504); "
            "other errors are not retried.", _non_negative),
    Setting("fetch.robots", bool, True,
            "Honour robots.txt for article pages; a disallowed page keeps the feed's own text."),
    Setting("health.backoff_hours", float, 12.0,
            "After k failures in a row a feed waits backoff_hours x 2^(k-1) before the next try, "
            "at most a week; it is never dropped.", _positive),
    Setting("health.stale_days", int, 14,
            "A feed with no new item for this many days is listed as stale in the digest.", _positive),
    Setting("fetch.contact", str, "https://github.com/aiwatch/aiwatch",
            "Contact URL sent in the User-Agent, so site owners can reach you.", _contact),
    Setting("extract.min_chars", int, 300,
            "Extracted text shorter than this falls back to the feed's own content.", _non_negative),
    Setting("embed.backend", str, "onnx-int8",
            "How the model runs: torch (sentence-transformers, fp32), onnx (onnxruntime, fp32) or "
            "onnx-int8 (onnxruntime, int8 weights per channel; the fastest, and as accurate on "
            "relevance-dev). Vectors of two backends are never mixed: switching needs `aiwatch reembed`.",
            lambda v: None if v in ("torch", "onnx", "onnx-int8") else "must be 'torch', 'onnx' or 'onnx-int8'"),
    Setting("embed.cache_dir", str, "",
            "Folder for the ONNX files made locally from the packaged model on first use (never "
            "downloaded); empty: $XDG_CACHE_HOME/aiwatch/models, else ~/.cache/aiwatch/models.",
            optional=True),
    Setting("embed.threads", int, 0, "Cores the model may use: threads of the embed stage, and single-threaded workers embedding "
            "while pages are fetched; 0: every core.", _non_negative),
    Setting("embed.overlap", bool, False,
            "Experimental: embed each stored batch of articles on background workers while the next pages "
            "are fetched and extracted (measured 1.2x faster end to end on 2 cores), but two long benchmark "
            "runs with it ended in a native crash, so it is off until that is understood."),
    Setting("embed.batch_size", int, 8,
            "Texts per embedding batch, after sorting by length (measured fastest for onnx-int8: 8).", _positive),
    Setting("embed.max_chunks", int, 8, "Passages embedded per article (title + lead, then body chunks).", _positive),
    Setting("embed.chunk_words", int, 150,
            "Words per passage; 150 English words stay inside the model's 256-token window.", _positive),
    Setting("stories.window_hours", float, 72.0,
            "Articles about one event are grouped into a story only within this many hours of its "
            "first article.", _positive),
    Setting("stories.threshold", float, 0.85,
            "How alike an article must be to a story's first article to join it: cosine of their "
            "title + lead plus a quarter of their headlines' word overlap.", _positive),
    Setting("digest.dir", str, ".", "Folder the digest files are written to (relative to the config file)."),
    Setting("digest.max_per_theme", int, 10,
            "Most stories listed per theme in one digest (the alert budget); the rest are counted, "
            "with the command that lists them.", _positive),
    Setting("digest.formats", str, "md,html,json,atom",
            "Digest files to write, comma-separated: md, html, json, atom.", _formats),
    Setting("digest.window_days", int, 7,
            "A digest offers stories first seen in the last window_days that no earlier digest sent "
            "(or that were materially updated since).", _positive),
    Setting("digest.email.host", str, "", "SMTP server; empty: no email.", optional=True),
    Setting("digest.email.port", int, 587, "SMTP port (587 for STARTTLS, 465 for SSL).", _positive),
    Setting("digest.email.starttls", bool, True, "Upgrade the connection with STARTTLS."),
    Setting("digest.email.ssl", bool, False, "Connect with SSL from the start (port 465)."),
    Setting("digest.email.from", str, "aiwatch@localhost", "Sender address.", optional=True),
    Setting("digest.email.to", str, "", "Recipients, comma-separated.", optional=True),
    Setting("digest.email.username_env", str, "",
            "Name of the environment variable holding the SMTP user name (never the name itself).",
            optional=True),
    Setting("digest.email.password_env", str, "",
            "Name of the environment variable holding the SMTP password (never the password itself).",
            optional=True),
    Setting("digest.webhook.url", str, "", "Webhook to post the digest to; empty: none.", optional=True),
    Setting("digest.webhook.format", str, "slack", "slack (Slack-compatible blocks) or json (the digest).",
            lambda v: None if v in ("slack", "json") else "must be 'slack' or 'json'"),
    Setting("prefect.task_runner", str, "default",
            "default: stages run in the flow's process; dask: stages run on a local Dask cluster and "
            "embedding is spread over its workers (needs prefect-dask: pip install 'aiwatch[dask]').",
            lambda v: None if v in ("default", "dask") else "must be 'default' or 'dask'"),
    Setting("prefect.dask_workers", int, 2, "Worker processes of the local Dask cluster.", _positive),
    Setting("schedule.cron", str, "0 7 * * *", "When `aiwatch serve` runs the daily flow (cron, 5 fields).", _cron),
    Setting("schedule.timezone", str, "UTC", "Time zone of schedule.cron."),
)
SETTINGS_BY_KEY = {s.key: s for s in SETTINGS}
SECTIONS = tuple(dict.fromkeys(s.key.split(".")[0] for s in SETTINGS))
TABLES = tuple(dict.fromkeys(s.table for s in SETTINGS))


@dataclass(frozen=True)
class FeedSpec:
    url: str
    name: str | None = None


@dataclass(frozen=True)
class Config:
    values: Mapping[str, Any]
    feeds: tuple[FeedSpec, ...]
    themes: tuple[Theme, ...]
    path: Path | None = None  # the file read, if any
    base_dir: Path = field(default_factory=Path.cwd)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def database(self) -> Path:
        return self.resolve(self["storage.database"])

    @property
    def digest_dir(self) -> Path:
        return self.resolve(self["digest.dir"])

    def resolve(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def replace(self, **values: Any) -> "Config":
        """A copy with some settings changed (keys as in SETTINGS, dots as in the TOML)."""
        merged = dict(self.values)
        for key, value in values.items():
            merged[key] = _coerce(key, value)
        return Config(merged, self.feeds, self.themes, self.path, self.base_dir)

    def with_feeds(self, feeds: tuple[FeedSpec, ...]) -> "Config":
        return Config(self.values, feeds, self.themes, self.path, self.base_dir)

    def with_themes(self, themes: tuple[Theme, ...]) -> "Config":
        return Config(self.values, self.feeds, themes, self.path, self.base_dir)


def _coerce(key: str, value: Any) -> Any:
    setting = SETTINGS_BY_KEY.get(key)
    if setting is None:
        raise ConfigError(key, "unknown setting")
    typ = setting.type
    if typ is bool:
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                value = True
            elif low in ("0", "false", "no", "off"):
                value = False
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
    elif typ is int:
        if isinstance(value, str):
            try:
                value = int(value.replace("_", ""))
            except ValueError:
                raise ConfigError(key, f"expected a whole number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected a whole number, got {value!r}")
    elif typ is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(key, f"expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"expected a number, got {value!r}")
        value = float(value)
    elif typ is str:
        if not isinstance(value, str) or (not value.strip() and not setting.optional):
            raise ConfigError(key, f"expected a non-empty string, got {value!r}")
        if not value.strip():
            return ""
    if setting.check:
        problem = setting.check(value)
        if problem:
            raise ConfigError(key, f"{problem} (got {value!r})")
    return value


def _defaults_document() -> dict[str, Any]:
    text = resources.files("aiwatch").joinpath("defaults.toml").read_text("utf-8")
    return tomllib.loads(text)


def default_feeds() -> tuple[FeedSpec, ...]:
    return tuple(_parse_feeds(_defaults_document()["feeds"]))


def default_themes() -> tuple[Theme, ...]:
    return tuple(_parse_themes(_defaults_document()["themes"]))


def _parse_feeds(items: Any) -> list[FeedSpec]:
    if not isinstance(items, list):
        raise ConfigError("feeds", "must be an array of tables ([[feeds]])")
    out, seen = [], set()
    for i, item in enumerate(items):
        where = f"feeds[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(where, "must be a table with url and name")
        unknown = set(item) - {"url", "name"}
        if unknown:
            raise ConfigError(f"{where}.{sorted(unknown)[0]}", "unknown key (known: url, name)")
        url = item.get("url")
        if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url.strip()):
            raise ConfigError(f"{where}.url", f"expected an http:// or https:// URL, got {url!r}")
        url = url.strip()
        name = item.get("name")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ConfigError(f"{where}.name", f"expected a non-empty string, got {name!r}")
        if url in seen:
            raise ConfigError(f"{where}.url", f"{url} is listed twice")
        seen.add(url)
        out.append(FeedSpec(url=url, name=name.strip() if name else None))
    return out


def _parse_themes(items: Any) -> list[Theme]:
    if not isinstance(items, list):
        raise ConfigError("themes", "must be an array of tables ([[themes]])")
    out, seen = [], set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(f"themes[{i}]", "must be a table with name, description and threshold")
        theme = theme_from_mapping(item, where=f"themes[{i}]")
        if theme.name in seen:
            raise ConfigError(f"themes[{i}].name", f"theme {theme.name!r} is defined twice")
        seen.add(theme.name)
        out.append(theme)
    if not out:
        raise ConfigError("themes", "at least one theme is needed")
    return out


def find_config(path: str | os.PathLike | None) -> Path | None:
    """The file to read: the given path, else ./aiwatch.toml when present, else none."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError("--config", f"no such file: {p}")
        return p
    local = Path.cwd() / DEFAULT_CONFIG_NAME
    return local if local.is_file() else None


def load_config(path: str | os.PathLike | None = None, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the configuration; see :data:`SETTINGS` for the keys."""
    environ = os.environ if environ is None else environ
    file = find_config(path)
    doc: dict[str, Any] = {}
    if file is not None:
        try:
            doc = tomllib.loads(file.read_text("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(file), f"not valid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(str(file), f"cannot be read: {exc}") from None
    return config_from_document(doc, path=file, environ=environ)


def build_config(config_path: str | os.PathLike | None = None, settings: Mapping[str, Any] | None = None,
                 feeds: list[Mapping[str, Any]] | None = None) -> Config:
    """A config file (or the defaults), then JSON-able overrides: how flows and the demo get theirs."""
    config = load_config(config_path)
    if settings:
        config = config.replace(**settings)
    if feeds is not None:
        config = config.with_feeds(tuple(_parse_feeds([dict(f) for f in feeds])))
    return config


def _read_table(prefix: str, body: dict, values: dict) -> None:
    for name, value in body.items():
        key = f"{prefix}.{name}"
        if isinstance(value, dict):
            if key not in TABLES:
                raise ConfigError(key, "unknown table")
            _read_table(key, value, values)
        else:
            values[key] = _coerce(key, value)


def config_from_document(doc: Mapping[str, Any], *, path: Path | None = None,
                         environ: Mapping[str, str] | None = None) -> Config:
    environ = {} if environ is None else environ
    values = {s.key: s.default for s in SETTINGS}
    for section, body in doc.items():
        if section in ("feeds", "themes"):
            continue
        if section not in SECTIONS:
            raise ConfigError(section, f"unknown section (known: {', '.join(SECTIONS + ('feeds', 'themes'))})")
        if not isinstance(body, dict):
            raise ConfigError(section, "must be a table ([section])")
        _read_table(section, body, values)
    for setting in SETTINGS:
        env_name = "AIWATCH_" + setting.key.replace(".", "_").upper()
        if env_name in environ:
            values[setting.key] = _coerce(setting.key, environ[env_name])
    feeds = tuple(_parse_feeds(doc["feeds"])) if "feeds" in doc else default_feeds()
    themes = tuple(_parse_themes(doc["themes"])) if "themes" in doc else default_themes()
    base_dir = path.resolve().parent if path is not None else Path.cwd()
    return Config(values, feeds, themes, path, base_dir)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:_}" if value >= 100_000 else str(value)
    if isinstance(value, float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_string_list(items: tuple[str, ...], indent: str = "  ") -> str:
    if not items:
        return "[]"
    body = ",\n".join(indent + _toml_value(x) for x in items)
    return "[\n" + body + ",\n]"


def theme_toml(theme: Theme) -> list[str]:
    """A [[themes]] table for ``theme``, as lines of TOML."""
    return [
        "[[themes]]",
        f"name = {_toml_value(theme.name)}",
        f"description = {_toml_value(theme.description)}",
        f"threshold = {theme.threshold}",
        f"positive_examples = {_toml_string_list(theme.positive_examples)}",
        f"negative_examples = {_toml_string_list(theme.negative_examples)}",
        f"must_have = {_toml_string_list(theme.must_have)}",
        f"must_also_have = {_toml_string_list(theme.must_also_have)}",
        f"must_not = {_toml_string_list(theme.must_not)}",
        f"key_terms = {_toml_string_list(theme.key_terms)}",
        "",
    ]


def write_out_themes(path: Path, themes: tuple[Theme, ...], note: str) -> bool:
    """Append [[themes]] tables to a config file that has none (so it uses the defaults), so
    that editing or adding one theme never silently drops the others. Returns whether it wrote."""
    text = path.read_text("utf-8") if path.exists() else ""
    if text and "themes" in tomllib.loads(text):
        return False
    blocks = [line for t in themes for line in theme_toml(t)]
    path.write_text(text.rstrip("\n") + f"\n\n# {note}\n" + "\n".join(blocks) + "\n", "utf-8")
    return True


def set_theme_thresholds(path: Path, themes: tuple[Theme, ...], thresholds: dict[str, float]) -> None:
    """Write new thresholds into the config file. A file without [[themes]] (so using the
    defaults) gets the themes written out with the new thresholds."""
    from dataclasses import replace
    recalibrated = tuple(replace(t, threshold=thresholds.get(t.name, t.threshold)) for t in themes)
    if write_out_themes(path, recalibrated, "Themes written out by `aiwatch themes calibrate`."):
        return
    text = path.read_text("utf-8")
    lines = text.splitlines()
    current, in_theme = None, False
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("["):
            in_theme, current = stripped == "[[themes]]", None
            continue
        m = re.match(r'name\s*=\s*"([^"]+)"', stripped)
        if in_theme and m:
            current = m.group(1)
        elif in_theme and current in thresholds and re.match(r"threshold\s*=", stripped):
            lines[i] = f"threshold = {thresholds[current]}"
    path.write_text("\n".join(lines) + "\n", "utf-8")


def config_template() -> str:
    """The commented aiwatch.toml that `aiwatch init` writes: every setting at its default."""
    lines = [
        "# aiwatch configuration. Every setting is shown at its default value.",
        "# Any setting can also be overridden by an environment variable,",
        "# e.g. AIWATCH_FETCH_TIMEOUT=30 for [fetch] timeout.",
        "",
    ]
    for table in TABLES:
        lines.append(f"[{table}]")
        for s in SETTINGS:
            if s.table != table:
                continue
            lines.append(f"# {s.help}")
            lines.append(f"{s.name} = {_toml_value(s.default)}")
        lines.append("")
    lines += [
        "# Feeds to watch. Without any [[feeds]] table aiwatch uses its built-in list of",
        "# public AI and tech news feeds (shown here). name is optional (shown as the outlet).",
    ]
    for feed in default_feeds():
        lines += ["[[feeds]]", f"url = {_toml_value(feed.url)}"]
        if feed.name:
            lines.append(f"name = {_toml_value(feed.name)}")
        lines.append("")
    lines += [
        "# Themes to flag. Without any [[themes]] table aiwatch uses its three default themes",
        "# (shown here). An article is flagged when its score reaches the theme's threshold.",
        "# positive_examples and negative_examples are short texts that are, and are not, on the",
        "# theme; they sharpen the match. must_have: an article with none of these terms gets half",
        "# its score (must_also_have: a second group, one of which must appear too); must_not: an",
        "# article with any of them gets half its score. key_terms: the",
        "# theme's action words in any language; in text the English model cannot read, a",
        "# must_have term plus a key term counts as lexical evidence. Edit freely:",
        "# an edited theme gets a new version and stored articles are re-scored on the next run.",
    ]
    for theme in default_themes():
        lines += theme_toml(theme)
    return "\n".join(lines)

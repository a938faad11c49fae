"""Settings, declared once: name, type, default and help, as typed dataclasses.

Each ``[section]`` of ``aiwatch.toml`` is a frozen dataclass below, and each setting a field of
it with its help text and check. Code reads settings as typed attributes
(``config.fetch.timeout``), so a misspelt name fails in tests rather than in a user's run.
:data:`SETTINGS` lists them all with dotted keys ("fetch.timeout"); ``aiwatch init`` writes its
commented template from it, and a test checks the README documents each.

A config is read from a TOML file, then ``AIWATCH_<SECTION>_<KEY>`` environment variables
override single settings. Every value is validated at start, and a bad one raises
:class:`ConfigError` naming its key. Edits of the file itself are in :mod:`aiwatch.configfile`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import urlsplit

from .errors import ConfigError
from .hints import did_you_mean, warn_unknown_environment
from .relevance.themes import Theme, theme_from_mapping

log = logging.getLogger(__name__)

DEFAULT_CONFIG_NAME = "aiwatch.toml"
Check = Callable[[Any], "str | None"]  # returns a problem, or None


def _between(low: float, high: float, *, above: bool = False) -> Check:
    """A check that a number is finite and within [low, high] (or (low, high] with ``above``):
    a value that passes validation must never crash a run later (inf seconds, 1e300 hours)."""
    def check(value: Any) -> str | None:
        if not math.isfinite(value) or value > high or value < low or (above and value == low):
            return f"must be {'greater than' if above else 'at least'} {low:g} and at most {high:g}"
        return None
    return check


def _positive(high: float) -> Check:
    return _between(0, high, above=True)


def _non_negative(high: float) -> Check:
    return _between(0, high)


def _cron(value: str) -> str | None:
    return None if len(value.split()) == 5 else "must be a 5-field cron expression, e.g. '0 7 * * *'"


def _formats(value: str) -> str | None:
    bad = [f for f in (x.strip() for x in value.split(",")) if f not in ("md", "html", "json", "atom")]
    return f"unknown format {bad[0]!r} (known: md, html, json, atom)" if bad else None


def _contact(value: str) -> str | None:
    return None if re.match(r"^(https?://|mailto:)\S+$", value) else "must be an http(s):// or mailto: URL"


def _env_name(value: str) -> str | None:
    return None if re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value) else "must be the name of an environment variable"


def _http_url(value: str) -> str | None:
    return None if re.match(r"^https?://[^\s/]+\S*$", value) else "must be an http:// or https:// URL"


def _one_of(*choices: str) -> Check:
    said = " or ".join(", ".join(repr(c) for c in choices).rsplit(", ", 1))
    return lambda v: None if v in choices else f"must be {said}"


def _setting(default: Any, help: str, check: Check | None = None, *, optional: bool = False,
             name: str | None = None) -> Any:
    """A field of a settings section. ``optional``: a string that may be empty ("not set");
    ``name``: the TOML key when it is not a Python name (``from``)."""
    return field(default=default, metadata={"help": help, "check": check, "optional": optional, "name": name})


def _table(cls: type) -> Any:
    return field(default_factory=cls, metadata={"table": True})


@dataclass(frozen=True)
class StorageSettings:
    database: str = _setting("aiwatch.duckdb", "DuckDB file holding everything; relative paths are relative to "
                                               "the config file's folder.")
    lock_timeout: float = _setting(600.0, "Seconds a run waits for another run writing the same database before "
                                          "it gives up.", _non_negative(7 * 86400))
    shards: str = _setting("", "Shared folder for the articles stage in shards (a local path, NFS, or an fsspec URL "
                               "such as s3://bucket/aiwatch): workers fetch, extract and embed there without the "
                               "database, and this run merges. Empty: no shards, all in this process.", optional=True)
    shard_entries: int = _setting(100, "Most entries in one shard (a site's entries stay in one shard when they fit). "
                                       "A shard should span several sites: one site's pages are fetched at most "
                                       "fetch.per_host at a time.", _positive(100_000))


@dataclass(frozen=True)
class FetchSettings:
    articles: bool = _setting(True, "Fetch each new entry's page and extract its text; false uses the feed's own "
                                    "content only.")
    allow_private_addresses: bool = _setting(
        False, "Allow feeds and pages on loopback or private addresses (local test servers); off by default so "
               "a feed cannot point aiwatch at your internal network.")
    timeout: float = _setting(20.0, "Seconds allowed for one whole response: connect, headers and body, every "
                                    "redirect hop included.", _positive(3600))
    max_bytes: int = _setting(10_000_000, "Largest response body accepted, in bytes.", _positive(1_000_000_000))
    max_redirects: int = _setting(5, "Redirects followed per request.", _non_negative(30))
    max_feed_entries: int = _setting(1000, "Most entries kept from one feed in one fetch (the first ones in the "
                                           "feed); the rest are dropped and counted in the feed's health.",
                                     _positive(1_000_000))
    concurrency: int = _setting(8, "Requests in flight at once, across all hosts.", _positive(256))
    per_host: int = _setting(2, "Requests in flight at once to one host.", _positive(64))
    host_delay: float = _setting(0.5, "Least seconds between the starts of two requests to one host.", _non_negative(300))
    retries: int = _setting(2, "Retries of a transient failure (timeout, connection error, 429, 502, 503, 504); "
                               "other errors are not retried.", _non_negative(10))
    robots: bool = _setting(True, "Honour robots.txt for article pages; a disallowed page keeps the feed's own text.")
    contact: str = _setting("https://github.com/aiwatch/aiwatch",
                            "Contact URL sent in the User-Agent, so site owners can reach you.", _contact)


@dataclass(frozen=True)
class HealthSettings:
    backoff_hours: float = _setting(12.0, "After k failures in a row a feed waits backoff_hours x 2^(k-1) before "
                                          "the next try, at most a week; it is never dropped.", _positive(168))
    stale_days: int = _setting(14, "A feed with no new item for this many days is listed as stale in the digest.",
                               _positive(3650))


@dataclass(frozen=True)
class ExtractSettings:
    method: str = _setting("agree", "agree: trafilatura (two modes) and resiliparse read each page and the text that "
                                    "agrees best with the others is kept, asking readability and newspaper4k too when "
                                    "they disagree (more accurate on every benchmark measured, about 2x the time); "
                                    "cascade: trafilatura, then readability, the first that passes the quality gates.",
                           _one_of("agree", "cascade"))
    agreement: float = _setting(0.5, "Method agree: below this agreement among the first extractors (mean word "
                                     "3-shingle Jaccard similarity of the best text to the other libraries' texts) "
                                     "readability and newspaper4k run too; 0 asks them only when no text passes the "
                                     "quality gates, above 1 always.", _non_negative(2))
    min_chars: int = _setting(500, "Extracted text shorter than this is too short: the next extractor's text is "
                                   "tried, and the feed's own content is used when it is longer.",
                              _non_negative(100_000))
    processes: int = _setting(0, "Worker processes extracting pages (every core works, and a parser's crash costs a "
                                 "page, not the run); 0: one per core, -1: none (the fetching threads).", _between(-1, 256))


@dataclass(frozen=True)
class EmbedSettings:
    backend: str = _setting(
        "onnx-int8", "How the model runs: torch (sentence-transformers, fp32), onnx (onnxruntime, fp32) or "
                     "onnx-int8 (onnxruntime, int8 weights per channel; the fastest, and as accurate on "
                     "relevance-dev). Vectors of two backends are never mixed: switching needs `aiwatch reembed`.",
        _one_of("torch", "onnx", "onnx-int8"))
    cache_dir: str = _setting("", "Folder for the ONNX files made locally from the packaged model on first use "
                                  "(never downloaded); empty: $XDG_CACHE_HOME/aiwatch/models, else "
                                  "~/.cache/aiwatch/models.", optional=True)
    threads: int = _setting(0, "Cores the model may use: threads of the embed stage, and single-threaded workers "
                               "embedding while pages are fetched; 0: every core.", _non_negative(1024))
    overlap: bool = _setting(True, "Embed each stored batch of articles on background workers while the next pages "
                                   "are fetched and extracted (measured 1.2x faster end to end on 2 cores); the "
                                   "workers only compute vectors, stored between batches on the stage's own thread. "
                                   "false: everything is embedded in the embed stage afterwards.")
    batch_size: int = _setting(8, "Texts per embedding batch, after sorting by length (measured fastest for "
                                  "onnx-int8: 8).", _positive(1024))
    max_chunks: int = _setting(8, "Passages embedded per article (title + lead, then body chunks).", _positive(256))
    chunk_words: int = _setting(150, "Words per passage; 150 English words stay inside the model's 256-token "
                                     "window.", _positive(1000))


@dataclass(frozen=True)
class StoriesSettings:
    window_hours: float = _setting(72.0, "Articles about one event are grouped into a story only within this many "
                                         "hours of its first article.", _positive(24 * 366))
    threshold: float = _setting(0.85, "How alike an article must be to a story's first article to join it: cosine "
                                      "of their title + lead plus a quarter of their headlines' word overlap.",
                                _positive(1.25))


@dataclass(frozen=True)
class EmailSettings:
    host: str = _setting("", "SMTP server; empty: no email.", optional=True)
    port: int = _setting(587, "SMTP port (587 for STARTTLS, 465 for SSL).", _between(1, 65535))
    starttls: bool = _setting(True, "Upgrade the connection with STARTTLS.")
    ssl: bool = _setting(False, "Connect with SSL from the start (port 465).")
    sender: str = _setting("aiwatch@localhost", "Sender address.", optional=True, name="from")
    to: str = _setting("", "Recipients, comma-separated (or a TOML list of addresses).", optional=True)
    username_env: str = _setting("", "Name of the environment variable holding the SMTP user name (never the name "
                                     "itself).", optional=True)
    password_env: str = _setting("", "Name of the environment variable holding the SMTP password (never the "
                                     "password itself).", optional=True)
    ca_file: str = _setting("", "PEM file of the certificate authority to trust for the SMTP server (a private CA); "
                                "empty: the system's (relative paths are relative to the config file).", optional=True)


@dataclass(frozen=True)
class WebhookSettings:
    url: str = _setting("", "Webhook to post the digest to; empty: none.", optional=True)
    format: str = _setting("slack", "slack (Slack-compatible blocks) or json (the digest).",
                           _one_of("slack", "json"))


@dataclass(frozen=True)
class DigestSettings:
    dir: str = _setting(".", "Folder the digest files are written to (relative to the config file).")
    max_per_theme: int = _setting(10, "Most stories listed per theme in one digest (the alert budget); the rest "
                                      "are counted, with the command that lists them.", _positive(10_000))
    formats: str = _setting("md,html,json,atom", "Digest files to write, comma-separated or a TOML list: md, html, "
                                                 "json, atom.", _formats)
    window_days: int = _setting(7, "A digest offers stories first seen in the last window_days that no earlier "
                                   "digest sent (or that were materially updated since).", _positive(3650))
    atom_url: str = _setting("", "The address the Atom feed (aiwatch.atom) is published at, for its self link; the "
                                 "HTML digests written beside it become its alternate link. Empty: no self link.",
                             _http_url, optional=True)
    email: EmailSettings = _table(EmailSettings)
    webhook: WebhookSettings = _table(WebhookSettings)


@dataclass(frozen=True)
class PrefectSettings:
    task_runner: str = _setting("default", "default: stages run in the flow's process; dask: stages run on a local "
                                           "Dask cluster and embedding is spread over its workers (needs "
                                           "prefect-dask: pip install 'aiwatch[dask]').", _one_of("default", "dask"))
    dask_workers: int = _setting(2, "Worker processes of the local Dask cluster.", _positive(256))
    dask_address: str = _setting("", "Address of a running dask.distributed scheduler (tcp://host:8786) whose "
                                     "workers build the shards; needs storage.shards. Empty: a local cluster of "
                                     "prefect.dask_workers.", optional=True)
    shard_deployment: str = _setting("", "Deployment (flow/name, e.g. aiwatch-shard/shard from prefect.yaml) whose "
                                         "work-pool workers build the shards, one flow run each; needs storage.shards "
                                         "and a Prefect server. Empty: the task runner builds them.", optional=True)
    shard_timeout: float = _setting(3600.0, "Seconds the writer waits for the shards' flow runs; a shard not built "
                                            "by then is built again by the next run.", _positive(7 * 86400))


@dataclass(frozen=True)
class ScheduleSettings:
    cron: str = _setting("0 7 * * *", "When `aiwatch serve` runs the daily flow (cron, 5 fields).", _cron)
    timezone: str = _setting("UTC", "Time zone of schedule.cron.")


@dataclass(frozen=True)
class WebSettings:
    base_url: str = _setting("", "Address of `aiwatch web` as readers reach it (e.g. https://aiwatch.example.org); "
                                 "when set, every story in the HTML digest and email carries signed relevant / not "
                                 "relevant links to it. Empty: no links.", _http_url, optional=True)
    password_env: str = _setting("", "Name of the environment variable holding the web app's password; needed to "
                                     "serve on any address but 127.0.0.1 (put the app behind your own TLS proxy). "
                                     "Empty: no login, loopback only.", _env_name, optional=True)
    secret_file: str = _setting("aiwatch-web.secret", "File holding the key that signs the digest's links, "
                                                      "sessions and form tokens; created with mode 0600 on first use "
                                                      "(relative to the config file's folder).")


SECTIONS: dict[str, type] = {
    "storage": StorageSettings, "fetch": FetchSettings, "health": HealthSettings, "extract": ExtractSettings,
    "embed": EmbedSettings, "stories": StoriesSettings, "digest": DigestSettings, "prefect": PrefectSettings,
    "schedule": ScheduleSettings, "web": WebSettings,
}


@dataclass(frozen=True)
class Setting:
    key: str  # "section.name" or "section.table.name", as in the TOML
    attr: str  # the dataclass attribute path ("digest.email.sender")
    type: type
    default: Any
    help: str
    check: Check | None = None
    optional: bool = False

    @property
    def table(self) -> str:
        return self.key.rsplit(".", 1)[0]

    @property
    def env_name(self) -> str:
        """The environment variable that overrides it: AIWATCH_FETCH_TIMEOUT for fetch.timeout."""
        return "AIWATCH_" + self.key.replace(".", "_").upper()

    @property
    def name(self) -> str:
        return self.key.rsplit(".", 1)[1]


def _walk(cls: type, key: str, attr: str) -> Iterator[Setting]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("table"):
            yield from _walk(hints[f.name], f"{key}.{f.name}", f"{attr}.{f.name}")
        else:
            name = f.metadata.get("name") or f.name
            yield Setting(f"{key}.{name}", f"{attr}.{f.name}", hints[f.name], f.default, f.metadata["help"],
                          f.metadata["check"], f.metadata["optional"])


SETTINGS: tuple[Setting, ...] = tuple(s for name, cls in SECTIONS.items() for s in _walk(cls, name, name))
SETTINGS_BY_KEY = {s.key: s for s in SETTINGS}
LIST_VALUED = frozenset({"digest.email.to", "digest.formats"})  # comma-separated: a TOML list works too
TABLES = tuple(dict.fromkeys(s.table for s in SETTINGS))


def _build(cls: type, prefix: str, values: Mapping[str, Any]) -> Any:
    """An instance of a settings dataclass from dotted-key values."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("table"):
            kwargs[f.name] = _build(typing.get_type_hints(cls)[f.name], f"{prefix}.{f.name}", values)
        else:
            kwargs[f.name] = values[f"{prefix}.{f.metadata.get('name') or f.name}"]
    return cls(**kwargs)


@dataclass(frozen=True)
class FeedSpec:
    url: str
    name: str | None = None
    category: str | None = None  # a folder path, "Tech/AI" (OPML's nested outlines)
    site_url: str | None = None  # the site's home page (OPML's htmlUrl)


@dataclass(frozen=True)
class Config:
    """The settings of one run (typed sections), the feeds and themes, and where they came from."""

    storage: StorageSettings
    fetch: FetchSettings
    health: HealthSettings
    extract: ExtractSettings
    embed: EmbedSettings
    stories: StoriesSettings
    digest: DigestSettings
    prefect: PrefectSettings
    schedule: ScheduleSettings
    web: WebSettings
    feeds: tuple[FeedSpec, ...]
    themes: tuple[Theme, ...]
    path: Path | None = None  # the file read, if any
    base_dir: Path = field(default_factory=Path.cwd)

    @classmethod
    def from_values(cls, values: Mapping[str, Any], feeds: tuple[FeedSpec, ...], themes: tuple[Theme, ...],
                    path: Path | None = None, base_dir: Path | None = None) -> "Config":
        for key in ("prefect.dask_address", "prefect.shard_deployment"):  # workers that may be on other machines
            if values[key] and not values["storage.shards"]:
                raise ConfigError(key, "needs storage.shards, a folder its workers share: they never open the database")
        sections = {name: _build(sec, name, values) for name, sec in SECTIONS.items()}
        return cls(**sections, feeds=feeds, themes=themes, path=path, base_dir=base_dir or Path.cwd())

    @property
    def values(self) -> dict[str, Any]:
        """Every setting by its dotted key ("fetch.timeout")."""
        out = {}
        for s in SETTINGS:
            obj: Any = self
            for part in s.attr.split("."):
                obj = getattr(obj, part)
            out[s.key] = obj
        return out

    @property
    def database(self) -> Path:
        return self.resolve(self.storage.database)

    @property
    def digest_dir(self) -> Path:
        return self.resolve(self.digest.dir)

    @property
    def web_secret_file(self) -> Path:
        return self.resolve(self.web.secret_file)

    def theme(self, name: str) -> Theme:
        """The theme called ``name``; a ConfigError listing the known ones otherwise."""
        for t in self.themes:
            if t.name == name:
                return t
        raise ConfigError("--theme", f"no theme named {name!r} (known: {', '.join(t.name for t in self.themes)})")

    def resolve(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def replace(self, **values: Any) -> "Config":
        """A copy with some settings changed (dotted keys as in :data:`SETTINGS`)."""
        merged = self.values
        for key, value in values.items():
            merged[key] = _coerce(key, value)
        return Config.from_values(merged, self.feeds, self.themes, self.path, self.base_dir)

    def check_writable(self) -> None:
        """Refuse to start a run whose database or digest folder cannot be written (one line
        naming the setting), rather than fail after the data is stored."""
        for key, folder in (("storage.database", self.database.parent), ("digest.dir", self.digest_dir)):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(key, f"{folder} cannot be created ({exc.strerror or exc})") from None
            if not os.access(folder, os.W_OK | os.X_OK):
                raise ConfigError(key, f"{folder} is not writable")
        if self.database.exists() and not os.access(self.database, os.W_OK):
            raise ConfigError("storage.database", f"{self.database} is not writable")

    def with_feeds(self, feeds: tuple[FeedSpec, ...]) -> "Config":
        return dataclasses.replace(self, feeds=feeds)


def _coerce(key: str, value: Any) -> Any:
    setting = SETTINGS_BY_KEY.get(key)
    if setting is None:
        raise ConfigError(key, "unknown setting" + did_you_mean(key, SETTINGS_BY_KEY))
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
        if isinstance(value, list) and key in LIST_VALUED and all(isinstance(v, str) for v in value):
            value = ", ".join(v.strip() for v in value if v.strip())  # a TOML list for a comma-separated value
        if not isinstance(value, str) or (not value.strip() and not setting.optional):
            raise ConfigError(key, f"expected a non-empty string, got {value!r}")
        if not value.strip():
            return ""
    if setting.check:
        problem = setting.check(value)
        if problem:
            raise ConfigError(key, f"{problem} (got {value!r})")
    return value


def defaults_document() -> dict[str, Any]:
    text = resources.files("aiwatch").joinpath("defaults.toml").read_text("utf-8")
    return tomllib.loads(text)


def default_feeds() -> tuple[FeedSpec, ...]:
    return tuple(parse_feeds(defaults_document()["feeds"]))


def default_themes() -> tuple[Theme, ...]:
    return tuple(_parse_themes(defaults_document()["themes"]))


def parse_feeds(items: Any) -> list[FeedSpec]:
    """``[[feeds]]`` tables as FeedSpecs; a ConfigError names the first bad entry."""
    if not isinstance(items, list):
        raise ConfigError("feeds", "must be an array of tables ([[feeds]])")
    out, seen = [], set()
    for i, item in enumerate(items):
        where = f"feeds[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(where, "must be a table with url and name")
        unknown = set(item) - {"url", "name", "category", "site_url"}
        if unknown:
            raise ConfigError(f"{where}.{sorted(unknown)[0]}", "unknown key (known: url, name, category, site_url)")
        url = item.get("url")
        if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url.strip()):
            raise ConfigError(f"{where}.url", f"expected an http:// or https:// URL, got {url!r}")
        url = url.strip()
        try:
            urlsplit(url).port  # a port of 808080 or an unclosed IPv6 bracket is not a URL
        except ValueError as exc:
            raise ConfigError(f"{where}.url", f"not a valid URL ({exc}): {url!r}") from None
        name = item.get("name")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ConfigError(f"{where}.name", f"expected a non-empty string, got {name!r}")
        category, site = item.get("category"), item.get("site_url")
        if category is not None and (not isinstance(category, str) or not category.strip("/ ")):
            raise ConfigError(f"{where}.category", f"expected a folder name such as \"Tech/AI\", got {category!r}")
        if site is not None and (not isinstance(site, str) or not re.match(r"^https?://[^\s/]+", site.strip())):
            raise ConfigError(f"{where}.site_url", f"expected an http:// or https:// URL, got {site!r}")
        if url in seen:
            raise ConfigError(f"{where}.url", f"{url} is listed twice")
        seen.add(url)
        out.append(FeedSpec(url=url, name=name.strip() if name else None,
                            category=category.strip("/ ") if category else None,
                            site_url=site.strip() if site else None))
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


def read_document(file: Path) -> dict[str, Any]:
    """The parsed TOML of a config file; a ConfigError when it cannot be read or parsed."""
    try:
        return tomllib.loads(file.read_text("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(file), f"not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(file), f"cannot be read: {exc}") from None


def load_config(path: str | os.PathLike | None = None, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the configuration; see :data:`SETTINGS` for the keys."""
    environ = os.environ if environ is None else environ
    file = find_config(path)
    doc = read_document(file) if file is not None else {}
    return config_from_document(doc, path=file, environ=environ)


def build_config(config_path: str | os.PathLike | None = None, settings: Mapping[str, Any] | None = None,
                 feeds: list[Mapping[str, Any]] | None = None) -> Config:
    """A config file (or the defaults), then JSON-able overrides: how flows and the demo get theirs."""
    config = load_config(config_path)
    if settings:
        config = config.replace(**settings)
    if feeds is not None:
        config = config.with_feeds(tuple(parse_feeds([dict(f) for f in feeds])))
    return config


def _read_table(prefix: str, body: dict, values: dict) -> None:
    for name, value in body.items():
        key = f"{prefix}.{name}"
        if isinstance(value, dict):
            if key not in TABLES:
                raise ConfigError(key, "unknown table" + did_you_mean(key, TABLES))
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
            raise ConfigError(section, "unknown section" + (did_you_mean(section, (*SECTIONS, "feeds", "themes"))
                                                            or f" (known: {', '.join((*SECTIONS, 'feeds', 'themes'))})"))
        if not isinstance(body, dict):
            raise ConfigError(section, "must be a table ([section])")
        _read_table(section, body, values)
    for setting in SETTINGS:
        if setting.env_name in environ:
            values[setting.key] = _coerce(setting.key, environ[setting.env_name])
    warn_unknown_environment({s.env_name for s in SETTINGS}, environ, values)
    feeds = tuple(parse_feeds(doc["feeds"])) if "feeds" in doc else default_feeds()
    themes = tuple(_parse_themes(doc["themes"])) if "themes" in doc else default_themes()
    base_dir = path.resolve().parent if path is not None else Path.cwd()
    return Config.from_values(values, feeds, themes, path, base_dir)

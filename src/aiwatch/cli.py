"""The command line: a thin layer over the library, on click.

Each command is one small function over one library call, with an example in its help.
Library errors become one-line messages and a non-zero exit code (2 for an unusable config or
command line, 1 for a failure); a user mistake never prints a traceback. Every command that
reads or writes the database, or the config file, takes ``--config PATH``.
"""

from __future__ import annotations

import csv
import inspect
import json
import logging
import re
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from functools import wraps
from pathlib import Path
from typing import Callable

import click

from . import __version__
from .config import DEFAULT_CONFIG_NAME, Config, config_from_document, load_config
from .errors import AiwatchError, ConfigError

log = logging.getLogger("aiwatch")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
CONFIG_HELP = f"config file (default: ./{DEFAULT_CONFIG_NAME} when present, else built-in defaults)"


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage().replace("\n", " ")
        if record.levelno >= logging.WARNING:
            return f"aiwatch: {record.levelname.lower()}: {msg}"
        return f"aiwatch: {msg}"


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logger = logging.getLogger("aiwatch")
    logger.setLevel(level)
    if not any(getattr(h, "_aiwatch", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler._aiwatch = True  # type: ignore[attr-defined]
        handler.setFormatter(_OneLine())
        logger.addHandler(handler)
    logger.propagate = False
    from .progress import use_bars
    use_bars(sys.stderr.isatty() and not quiet)


def _epilog(example: str) -> str:
    # "\b" keeps click from re-wrapping the example lines
    return "\b\nexample:\n" + textwrap.indent(inspect.cleandoc(example), "  ")


class _Date(click.ParamType):
    name = "DATE"

    def convert(self, value, param, ctx) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            d = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"expected a date like 2026-11-20, got {value!r}", param, ctx)
        return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


class _Age(click.ParamType):
    name = "AGE"

    def convert(self, value, param, ctx) -> timedelta:
        if isinstance(value, timedelta):
            return value
        m = re.fullmatch(r"(\d+)\s*([dwh]?)", value.strip())
        if not m:
            self.fail(f"expected an age like 365d, 12w or 48h, got {value!r}", param, ctx)
        n, unit = int(m.group(1)), m.group(2) or "d"
        return timedelta(hours=n) if unit == "h" else timedelta(days=n * (7 if unit == "w" else 1))


DATE, AGE = _Date(), _Age()


def _command(group: click.Group, name: str, help: str, example: str, *, config: bool = True):
    """A command of ``group``: --config (unless ``config`` is false), -v and -q accepted after
    the command too, logging set up before it runs, and its example in the help."""
    def decorate(fn: Callable) -> click.Command:
        @wraps(fn)
        def run(*args, verbose: int = 0, quiet: bool = False, **kwargs):
            root = click.get_current_context().find_root().params
            _setup_logging(verbose or root.get("verbose", 0), quiet or root.get("quiet", False))
            return fn(*args, **kwargs)

        cmd = click.option("-q", "--quiet", is_flag=True, help="only warnings and errors")(run)
        cmd = click.option("-v", "--verbose", count=True, help="more log output")(cmd)
        if config:
            cmd = click.option("--config", "config_path", metavar="PATH", help=CONFIG_HELP)(cmd)
        return group.command(name, help=help, epilog=_epilog(example), short_help=help.split(". ")[0])(cmd)
    return decorate


def _config(config_path: str | None) -> Config:
    return load_config(config_path)


def _config_for_edit(config_path: str | None) -> Config:
    """The config of a command that writes the config file: a missing file is created later."""
    if config_path and not Path(config_path).exists():
        return config_from_document({}, path=Path(config_path))
    return load_config(config_path)


def _group_config(config_path: str | None) -> str | None:
    """A sub-action's --config, else its group's (``aiwatch feeds --config X add URL``)."""
    return config_path or click.get_current_context().parent.params.get("config_path")


@click.group(invoke_without_command=True, epilog=_epilog("aiwatch demo            # the whole pipeline on the "
                                                         "bundled demo corpus"),
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aiwatch", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", count=True, help="more log output")
@click.option("-q", "--quiet", is_flag=True, help="only warnings and errors")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> int | None:
    """Watch news feeds for themes, explain the matches, and write a daily digest."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        return EXIT_USAGE
    return None


# -- running ------------------------------------------------------------------------------------

def _print_result(result) -> None:
    s = result.stats
    click.echo(f"run {s.run_id}: {result.status}; feeds {s.feeds_total} "
               f"({s.feeds_ok} ok, {s.feeds_not_modified} unchanged, {s.feeds_failed} failed"
               f"{f', {s.feeds_deferred} backing off' if s.feeds_deferred else ''}); "
               f"{s.articles_new} new articles, {s.articles_failed} page failures; {s.flagged} flagged")
    if result.flagged:
        click.echo("flagged:")
        for f in result.flagged:
            click.echo(f"  [{f.theme}] {f.score:.2f}  {f.title}")
    for path in result.digest_files:
        click.echo(f"digest: {path}")


def _run(config_path: str | None, use_prefect: bool, settings: dict | None = None, feeds: list[dict] | None = None):
    """Run the job: the Prefect flow in-process (embedded API), or the same stages directly."""
    if use_prefect:
        from .flow import daily
        return daily(config_path=config_path, settings=settings, feeds=feeds)
    from .config import build_config
    from .pipeline import run_pipeline
    return run_pipeline(build_config(config_path, settings, feeds))


@_command(cli, "init", "Write a commented aiwatch.toml with every setting at its default.",
          "aiwatch init --config aiwatch.toml", config=False)
@click.option("--config", "config_path", metavar="PATH", help=f"file to write (default ./{DEFAULT_CONFIG_NAME})")
@click.option("--force", is_flag=True, help="overwrite an existing file")
def init(config_path: str | None, force: bool) -> int:
    from .configfile import config_template
    path = Path(config_path or DEFAULT_CONFIG_NAME)
    if path.exists() and not force:
        raise ConfigError("--config", f"{path} already exists (use --force to overwrite)")
    path.write_text(config_template(), "utf-8")
    click.echo(f"wrote {path}: edit [[feeds]] and [[themes]], then run `aiwatch run --config {path}`")
    return EXIT_OK


@_command(cli, "run", "Run the daily job once over the configured feeds (Prefect flow, in-process).",
          "aiwatch run --config aiwatch.toml")
@click.option("--no-prefect", is_flag=True, help="run the same stages without Prefect's embedded API (starts faster)")
def run(config_path: str | None, no_prefect: bool) -> int:
    config = _config(config_path)  # validate before starting anything
    result = _run(config_path, not no_prefect)
    _print_result(result)
    click.echo(f"database: {config.database}")
    if result.all_feeds_failed:
        log.error("every feed failed; see `aiwatch digest` or the feed_health view")
        return EXIT_FAILED
    return EXIT_OK


DEMO_PORT = 47239  # the demo serves its corpus here when free, so a second demo sees the same URLs


@_command(cli, "demo", "Run the whole pipeline on the bundled demo corpus, served on 127.0.0.1.",
          "aiwatch demo --out demo-output")
@click.option("--out", metavar="DIR", default=".", help="folder for aiwatch.duckdb and the digest (default .)")
@click.option("--no-prefect", is_flag=True, help="run the stages without Prefect's embedded API")
def demo(config_path: str | None, out: str, no_prefect: bool) -> int:
    from .demo import CorpusServer, demo_feeds, demo_settings, free_port
    folder = Path(out).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(folder)
    _config(config_path).replace(**settings)  # validate before starting anything
    with CorpusServer(port=free_port(DEMO_PORT)) as server:
        log.info("serving the demo corpus at %s", server.base_url)
        result = _run(config_path, not no_prefect, settings, demo_feeds(server.base_url))
    _print_result(result)
    click.echo(f"database: {settings['storage.database']}")
    click.echo("query it: python -c 'import duckdb; duckdb.connect(\"%s\", read_only=True)"
               ".sql(\"SELECT theme, score, title FROM matches ORDER BY theme, score DESC\").show()'"
               % settings["storage.database"])
    return EXIT_OK


@_command(cli, "serve", "Serve the daily flow as a Prefect deployment on the config's cron schedule.",
          "aiwatch serve --config aiwatch.toml   # runs until Ctrl-C")
@click.option("--port", type=int, default=4200, show_default=True,
              help="port of the local Prefect server started when PREFECT_API_URL is not set")
def serve(config_path: str | None, port: int) -> int:
    from .flow import serve as serve_flow
    _config(config_path)  # validate before starting anything
    serve_flow(config_path, port=port)
    return EXIT_OK


# -- reading ------------------------------------------------------------------------------------

@_command(cli, "digest", "Write a digest from the database: by default the stories no earlier digest listed.",
          """aiwatch digest                                   # what is new since the last digest
          aiwatch digest --since 2026-11-20 --theme llm_pricing --format html
          aiwatch digest --send                            # and deliver it by email / webhook""")
@click.option("--run", "run_id", metavar="RUN_ID", help="re-render what one run flagged")
@click.option("--since", type=DATE, help="everything flagged among articles fetched since DATE (ISO 8601), "
                                         "sent before or not")
@click.option("--theme", help="only this theme")
@click.option("--format", "formats", multiple=True, type=click.Choice(["md", "html", "json", "atom"]),
              help="format to write (repeatable; default: [digest] formats)")
@click.option("--send", is_flag=True, help="deliver it by the configured email and webhook")
@click.option("--out", metavar="DIR", help="folder to write to (default: [digest] dir)")
def digest(config_path, run_id, since, theme, formats, send, out) -> int:
    from .ops import writing
    from .report import write_digest
    config = _config(config_path)
    if theme:
        config.theme(theme)
    with writing(config):
        outcome = write_digest(config, run_id, since=since, theme=theme, only_new=not (since or run_id),
                               formats=",".join(formats) or None, folder=Path(out) if out else None, send=send)
    for path in outcome.files:
        click.echo(f"digest: {path}")
    n = outcome.data.flagged_total
    click.echo(f"{n} stor{'ies' if n != 1 else 'y'} ({outcome.data.scope})")
    for channel, ok in outcome.sent.items():
        click.echo(f"{channel}: {'sent' if ok else 'failed (recorded; the next run tries again)'}")
    if send and not outcome.sent:
        log.warning("--send: no delivery configured ([digest.email] host and to, or [digest.webhook] url)")
    return EXIT_OK if all(outcome.sent.values()) else EXIT_FAILED


def _print_rows(cols: list[str], rows: list[tuple], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps([dict(zip(cols, r)) for r in rows], default=str, ensure_ascii=False, indent=1))
    elif fmt == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(cols)
        w.writerows(rows)
    else:
        cells = [[("" if v is None else str(v)).replace("\n", " ") for v in r] for r in rows]
        widths = [min(60, max([len(c)] + [len(r[i]) for r in cells])) for i, c in enumerate(cols)]
        click.echo("  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip())
        click.echo("  ".join("-" * w for w in widths))
        for r in cells:
            click.echo("  ".join((v if len(v) <= w else v[:w - 1] + "…").ljust(w) for v, w in zip(r, widths)).rstrip())
        click.echo(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


FORMAT = click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
                      show_default=True)


@_command(cli, "query", "Run SQL on a read-only connection to the database.",
          """aiwatch query "SELECT theme, title, score FROM matches ORDER BY score DESC" --format csv
          aiwatch query @flagged_this_week             # a named query from sql/queries/""")
@click.argument("sql")
@FORMAT
def query(config_path, sql, fmt) -> int:
    from .ops import reading
    from .store import named_query
    config = _config(config_path)
    if sql.startswith("@"):  # a named query: @flagged_this_week, or a file path
        text = named_query(sql[1:])
        if text is None:
            try:
                text = Path(sql[1:]).read_text("utf-8")
            except OSError:
                raise AiwatchError(f"no named query or file {sql[1:]!r}") from None
        sql = text
    with reading(config) as store:
        cols, rows = store.query(sql)
    _print_rows(cols, rows, fmt)
    return EXIT_OK


@_command(cli, "search", "Semantic search over the stored articles (cosine in DuckDB).",
          'aiwatch search "memory chips barred from China" --theme chip_sanctions -k 5')
@click.argument("text")
@click.option("--theme", help="only articles flagged for this theme")
@click.option("-k", "k", type=int, default=10, show_default=True, help="how many articles")
@click.option("--since", type=DATE, help="only articles published since DATE")
@FORMAT
def search(config_path, text, theme, k, since, fmt) -> int:
    from .ops import reading
    from .relevance.embed import embedder_for, model_id
    config = _config(config_path)
    with reading(config) as store:
        store.check_model(model_id(config.embed.backend))
        embedder = embedder_for(config)
        hits = store.search(embedder.embed([text])[0], embedder.model_id, k=k, theme=theme, since=since)
    if fmt == "table":
        for h in hits:
            click.echo(f"{h.score:.3f}  {h.date}  {h.title}  ({h.outlet})\n       {h.url}")
        if not hits:
            click.echo("no matching articles")
    else:
        _print_rows(["score", "title", "date", "outlet", "url", "passage"],
                    [(h.score, h.title, h.date, h.outlet, h.url, h.passage) for h in hits], fmt)
    return EXIT_OK


@_command(cli, "export", "Export the public views to Parquet, partitioned by month.",
          "aiwatch export --parquet export/   # then e.g. polars.read_parquet('export/articles/**/*.parquet')")
@click.option("--parquet", metavar="DIR", required=True, help="folder to write to")
def export(config_path, parquet) -> int:
    from .ops import reading
    with reading(_config(config_path)) as store:
        written = store.export_parquet(Path(parquet))
    for path in written:
        click.echo(f"wrote {path}")
    return EXIT_OK


# -- maintenance --------------------------------------------------------------------------------

@_command(cli, "prune", "Delete what was fetched before a given age, and compact the file.",
          "aiwatch prune --older-than 365d")
@click.option("--older-than", type=AGE, required=True, help="e.g. 365d, 12w or 48h (days when no unit)")
def prune(config_path, older_than) -> int:
    from .ops import prune as prune_old
    cutoff, counts, freed = prune_old(_config(config_path), older_than)
    removed = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items())
    click.echo(f"pruned everything fetched before {cutoff:%Y-%m-%d %H:%M} UTC: {removed}; "
               f"freed {max(freed, 0) / 1e6:.1f} MB")
    return EXIT_OK


@_command(cli, "rescore", "Re-score stored articles against the current themes (no fetching, no embedding).",
          "aiwatch rescore --since 30d --theme llm_pricing")
@click.option("--since", type=AGE, help="only articles fetched in the last AGE")
@click.option("--theme", help="only this theme")
def rescore(config_path, since, theme) -> int:
    from .ops import rescore as rescore_stored
    cleared, result = rescore_stored(_config(config_path), theme, since)
    click.echo(f"re-scored {result.scored} article-theme pairs ({cleared} cleared first); {result.flagged} flagged")
    return EXIT_OK


@_command(cli, "reextract", "Extract the stored raw pages again, without fetching them.",
          "aiwatch reextract --since 30d     # after an upgrade or a change of extraction settings")
@click.option("--since", type=AGE, help="only pages fetched in the last AGE")
def reextract(config_path, since) -> int:
    from .ops import reextract as reextract_pages
    checked, changed = reextract_pages(_config(config_path), datetime.now(timezone.utc) - since if since else None)
    click.echo(f"re-extracted {checked} stored pages: {changed} articles changed (re-embedded and re-scored)")
    return EXIT_OK


@_command(cli, "reembed", "Embed the stored articles again with the configured embed.backend, drop the other "
                          "backends' vectors and re-score.", "aiwatch reembed    # after changing [embed] backend")
def reembed(config_path) -> int:
    from .ops import reembed as reembed_all
    config = _config(config_path)
    r = reembed_all(config)
    click.echo(f"embedded {r.embedded} passages with {config.embed.backend}, dropped {r.dropped} vectors of other "
               f"backends, re-scored {r.scored} article-theme pairs")
    return EXIT_OK


@_command(cli, "feedback", "Record whether a stored article is relevant for a theme.",
          "aiwatch feedback https://example.com/story llm_pricing --no")
@click.argument("url")
@click.argument("theme")
@click.option("--yes/--no", "relevant", required=True, default=None,
              help="the article is (--yes) or is not (--no) on the theme")
def feedback(config_path, url, theme, relevant) -> int:
    from .ops import record_feedback
    found = record_feedback(_config(config_path), url, theme, relevant)
    click.echo(f"recorded: {found.title!r} is {'relevant' if relevant else 'not relevant'} for {theme}; "
               "it is used as an example from the next run on")
    return EXIT_OK


# -- feeds ----------------------------------------------------------------------------------------

@cli.group("feeds", invoke_without_command=True, epilog=_epilog(
    """aiwatch feeds                                   # health of every feed
    aiwatch feeds add https://example.com/news      # a feed, or a site that links to one
    aiwatch feeds import-opml subscriptions.opml
    aiwatch feeds export-opml --out feeds.opml"""),
           short_help="List the feeds with their health; add, import or export feeds.")
@click.option("--config", "config_path", metavar="PATH", help=CONFIG_HELP)
@click.pass_context
def feeds(ctx: click.Context, config_path: str | None) -> int | None:
    """List the feeds with their health; add, import or export feeds."""
    if ctx.invoked_subcommand is None:
        return ctx.invoke(feeds_list, config_path=config_path)
    return None


def _when(value) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else "-"


@_command(feeds, "list", "Every feed with its health (the default).", "aiwatch feeds list")
def feeds_list(config_path) -> int:
    from .ops import feed_rows
    rows = feed_rows(_config(_group_config(config_path)))
    click.echo(f"{'status':<14} {'fails':>5}  {'last ok':<16}  {'entries':>7}  {'overlap':>7}  {'next try':<16}  feed")
    for r in rows:
        overlap = r.get("last_overlap")
        click.echo(f"{r.get('last_status') or '-':<14} {r.get('consecutive_failures') or 0:>5}  "
                   f"{_when(r.get('last_ok_at')):<16}  {r.get('entries_last_fetch') or '-':>7}  "
                   f"{'-' if overlap is None else f'{overlap:.0%}':>7}  {_when(r.get('next_fetch_at')):<16}  "
                   f"{(r['name'] + ' ') if r['name'] else ''}{r['feed_url']}")
        for note in (r.get("last_error"), r.get("last_warning"), r.get("dropped_detail")):
            if note:
                click.echo(f"{'':<14} {'':>5}  {note}")
    failing = sum(1 for r in rows if r.get("last_status") == "failed")
    dropping = sum(1 for r in rows if r.get("entries_dropped"))
    click.echo(f"{len(rows)} feeds, {failing} failing" + (f", {dropping} dropping entries" if dropping else ""))
    return EXIT_OK


@_command(feeds, "add", "Add a feed by its URL, or a site URL whose page links to its feed.",
          "aiwatch feeds add https://example.com/news --name 'Example News'")
@click.argument("url")
@click.option("--name", help="outlet name shown in the digest (default: the feed's title)")
def feeds_add(config_path, url, name) -> int:
    from .ops import add_feed
    found, path, added = add_feed(_config_for_edit(_group_config(config_path)), url, name)
    if added:
        click.echo(f"added {found.url} ({found.title or 'untitled'}, {found.entries} entries) to {path}")
    else:
        click.echo(f"{found.url} is already in {path}")
    return EXIT_OK


@_command(feeds, "import-opml", "Add the feeds of an OPML file.", "aiwatch feeds import-opml subscriptions.opml")
@click.argument("file")
def feeds_import_opml(config_path, file) -> int:
    from .ops import import_opml
    listed, added, path = import_opml(_config_for_edit(_group_config(config_path)), file)
    click.echo(f"imported {len(added)} new feeds of {len(listed)} in {file} into {path}")
    return EXIT_OK


@_command(feeds, "export-opml", "Write the configured feeds as OPML (stdout, or --out FILE).",
          "aiwatch feeds export-opml --out feeds.opml")
@click.option("--out", metavar="FILE")
def feeds_export_opml(config_path, out) -> int:
    from .ingest.subscriptions import render_opml
    config = _config(_group_config(config_path))
    text = render_opml(config.feeds)
    if out:
        Path(out).write_text(text, "utf-8")
        click.echo(f"wrote {len(config.feeds)} feeds to {out}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


# -- themes ---------------------------------------------------------------------------------------

@cli.group("themes", invoke_without_command=True, epilog=_epilog(
    """aiwatch themes                                      # each theme's version, threshold, flags
    aiwatch themes eval --labels ../shared/data/relevance-dev
    aiwatch themes calibrate --labels my-labels/ --precision chip_sanctions=0.9
    aiwatch themes add hbm_supply --from-file example-article.html"""),
           short_help="List, evaluate, calibrate and add themes.")
@click.option("--config", "config_path", metavar="PATH", help=CONFIG_HELP)
@click.pass_context
def themes(ctx: click.Context, config_path: str | None) -> int | None:
    """List, evaluate, calibrate and add themes."""
    if ctx.invoked_subcommand is None:
        return ctx.invoke(themes_list, config_path=config_path)
    return None


@_command(themes, "list", "Each theme with its version, threshold and flagged count (the default).",
          "aiwatch themes list")
def themes_list(config_path) -> int:
    from .ops import reading
    config = _config(_group_config(config_path))
    counts: dict[str, int] = {}
    if config.database.exists():
        with reading(config) as store:
            counts = store.flagged_counts()
    for t in config.themes:
        click.echo(f"{t.name:20} version {t.version}  threshold {t.threshold:<5}  flagged {counts.get(t.name, 0):>5}  "
                   f"examples +{len(t.positive_examples)}/-{len(t.negative_examples)}  terms {len(t.must_have)}"
                   f"/{len(t.key_terms)}")
    return EXIT_OK


LABELS = click.option("--labels", metavar="DIR", multiple=True, required=True,
                      help="folder with items.jsonl and labels.jsonl (repeatable)")


@_command(themes, "eval", "Precision, recall and F1 per theme against keyword and description baselines.",
          "aiwatch themes eval --labels ../shared/data/relevance-dev")
@LABELS
def themes_eval(config_path, labels) -> int:
    from .ops import item_scorer, labelled_items
    from .relevance.evaluate import evaluate, format_report
    config = _config(_group_config(config_path))
    items = labelled_items(config, labels)
    click.echo(format_report(evaluate(item_scorer(config, items), config.themes),
                             f"{len(items)} labelled items from {', '.join(labels)}"))
    return EXIT_OK


@_command(themes, "calibrate", "Choose each theme's threshold on labelled items (and your feedback) and write "
                               "it to the config.",
          "aiwatch themes calibrate --labels my-labels/ --precision chip_sanctions=0.9")
@LABELS
@click.option("--precision", metavar="THEME=P", multiple=True,
              help="a precision target for a theme instead of the best F1 (repeatable)")
@click.option("--dry-run", is_flag=True, help="print the thresholds, write nothing")
def themes_calibrate(config_path, labels, precision, dry_run) -> int:
    from .ops import calibrate_thresholds
    config = _config_for_edit(_group_config(config_path))
    targets = {}
    for spec in precision:
        theme, _, value = spec.partition("=")
        try:
            targets[theme] = float(value)
        except ValueError:
            raise ConfigError("--precision", f"expected THEME=0.9, got {spec!r}") from None
    thresholds, path = calibrate_thresholds(config, labels, targets, write=not dry_run)
    for t in config.themes:
        if t.name in thresholds:
            goal = f"precision >= {targets[t.name]}" if t.name in targets else "best F1"
            click.echo(f"{t.name:20} {t.threshold} -> {thresholds[t.name]}  ({goal})")
        else:
            click.echo(f"{t.name:20} {t.threshold} (no positive and negative labels: unchanged)")
    if path is not None:
        click.echo(f"wrote the thresholds to {path}; `aiwatch rescore` applies them to stored articles")
    return EXIT_OK


@_command(themes, "add", "Propose a theme from an example article and add it to the config for you to edit.",
          "aiwatch themes add hbm_supply --from-file example-article.html")
@click.argument("name")
@click.option("--from-file", metavar="FILE", help="an article as text (title on the first line) or HTML")
@click.option("--from-url", metavar="URL")
def themes_add(config_path, name, from_file, from_url) -> int:
    from .configfile import theme_toml
    from .ops import add_theme
    theme, path = add_theme(_config_for_edit(_group_config(config_path)), name, from_file=from_file,
                            from_url=from_url)
    click.echo(theme_toml(theme).strip())
    click.echo(f"\nadded theme {name!r} to {path}; the next run scores every stored article against it")
    return EXIT_OK


# -- entry point ------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    try:
        rv = cli.main(args=argv, prog_name="aiwatch", standalone_mode=False)
        return rv if isinstance(rv, int) else EXIT_OK
    except click.ClickException as exc:  # a usage error: unknown option, bad value, missing argument
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        click.echo(f"aiwatch: error: {exc.format_message()}{hint}", err=True)
        return exc.exit_code
    except ConfigError as exc:
        click.echo(f"aiwatch: error: {exc}", err=True)
        return EXIT_USAGE
    except AiwatchError as exc:
        click.echo(f"aiwatch: error: {exc}", err=True)
        return EXIT_FAILED
    except (click.Abort, KeyboardInterrupt):
        click.echo("aiwatch: interrupted", err=True)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return EXIT_OK

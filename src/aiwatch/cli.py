"""The command line: a thin layer over the library.

Library errors become one-line messages and a non-zero exit code; a user mistake never prints
a traceback. Every command that reads or writes the database takes ``--config PATH``.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from . import __version__
from .config import DEFAULT_CONFIG_NAME, FeedSpec, build_config, config_template, load_config
from .errors import AiwatchError, ConfigError

log = logging.getLogger("aiwatch")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


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


def _example(text: str) -> str:
    return "example:\n" + textwrap.indent(textwrap.dedent(text).strip(), "  ")


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH",
                   help=f"config file (default: ./{DEFAULT_CONFIG_NAME} when present, else built-in defaults)")


def _parse_since(value: str) -> datetime:
    try:
        d = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date like 2026-11-20, got {value!r}") from None
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def _print_result(result, out: Callable[[str], None] = print) -> None:
    s = result.stats
    out(f"run {s.run_id}: {result.status}; feeds {s.feeds_total} "
        f"({s.feeds_ok} ok, {s.feeds_not_modified} unchanged, {s.feeds_failed} failed"
        f"{f', {s.feeds_deferred} backing off' if s.feeds_deferred else ''}); "
        f"{s.articles_new} new articles, {s.articles_failed} page failures; {s.flagged} flagged")
    if result.flagged:
        out("flagged:")
        for theme, title, score in result.flagged:
            out(f"  [{theme}] {score:.2f}  {title}")
    for path in result.digest_files:
        out(f"digest: {path}")


def _run(config_path: str | None, use_prefect: bool, settings: dict | None = None,
         feeds: list[dict] | None = None):
    """Run the job: the Prefect flow in-process (embedded API), or the same stages directly."""
    if use_prefect:
        from .flow import daily
        return daily(config_path=config_path, settings=settings, feeds=feeds)
    from .pipeline import run_pipeline
    return run_pipeline(build_config(config_path, settings, feeds))


# -- commands -----------------------------------------------------------------------------

def cmd_init(args) -> int:
    path = Path(args.config or DEFAULT_CONFIG_NAME)
    if path.exists() and not args.force:
        raise ConfigError("--config", f"{path} already exists (use --force to overwrite)")
    path.write_text(config_template(), "utf-8")
    print(f"wrote {path}: edit [[feeds]] and [[themes]], then run `aiwatch run --config {path}`")
    return EXIT_OK


def cmd_run(args) -> int:
    config = load_config(args.config)  # validate before starting anything
    result = _run(args.config, not args.no_prefect)
    _print_result(result)
    print(f"database: {config.database}")
    if result.all_feeds_failed:
        log.error("every feed failed; see `aiwatch digest` or the feed_health view")
        return EXIT_FAILED
    return EXIT_OK


DEMO_PORT = 47239  # the demo serves its corpus here when free, so a second demo sees the same URLs


def _free_port(preferred: int) -> int:
    import socket
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            return 0  # taken: any free port
    return preferred


def cmd_demo(args) -> int:
    from .demo import CorpusServer, demo_feeds, demo_settings
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(out)
    load_config(args.config).replace(**settings)  # validate before starting anything
    with CorpusServer(port=_free_port(DEMO_PORT)) as server:
        log.info("serving the demo corpus at %s", server.base_url)
        result = _run(args.config, not args.no_prefect, settings, demo_feeds(server.base_url))
    _print_result(result)
    print(f"database: {settings['storage.database']}")
    print("query it: python -c 'import duckdb; duckdb.connect(\"%s\", read_only=True)"
          ".sql(\"SELECT theme, score, title FROM matches ORDER BY theme, score DESC\").show()'"
          % settings["storage.database"])
    return EXIT_OK


def cmd_digest(args) -> int:
    from .delivery import deliver
    from .digest import collect_digest, record_digest, write_digest_files
    from .store import Store, write_lock
    config = load_config(args.config)
    if args.theme and args.theme not in {t.name for t in config.themes}:
        raise ConfigError("--theme", f"no theme named {args.theme!r} (known: {', '.join(t.name for t in config.themes)})")
    if not config.database.exists():
        raise AiwatchError(f"{config.database}: no such database; run `aiwatch run` or `aiwatch demo` first")
    now = datetime.now(timezone.utc)
    only_new = not (args.since or args.run)
    formats = ",".join(args.format) if args.format else config["digest.formats"]
    with write_lock(config.database, config["storage.lock_timeout"]):
        with Store.open(config.database, lock_timeout=60) as store:
            data = collect_digest(store, config, now, run_id=args.run, since=args.since, theme=args.theme,
                                  only_new=only_new)
            folder = Path(args.out) if args.out else config.digest_dir
            files = write_digest_files(data, folder, formats, store, config)
            if only_new or args.send:
                record_digest(store, data, files)
            sent = deliver(store, config, data, now) if args.send else {}
    for path in files:
        print(f"digest: {path}")
    print(f"{data.flagged_total} stor{'ies' if data.flagged_total != 1 else 'y'} ({data.scope})")
    for channel, ok in sent.items():
        print(f"{channel}: {'sent' if ok else 'failed (recorded; the next run tries again)'}")
    if args.send and not sent:
        log.warning("--send: no delivery configured ([digest.email] host and to, or [digest.webhook] url)")
    return EXIT_OK if all(sent.values()) else EXIT_FAILED


def _feed_rows(config) -> list[dict]:
    from .store import Store
    state: dict[str, tuple] = {}
    if config.database.exists():
        with Store.open(config.database, read_only=True) as store:
            cols, rows = store.query("SELECT * FROM feed_health")
            state = {r[0]: dict(zip(cols, r)) for r in rows}
    out = []
    for f in config.feeds:
        row = dict(state.get(f.url) or {"feed_url": f.url, "last_status": "never fetched"})
        row["name"] = f.name or row.get("title") or ""
        out.append(row)
    return out


def _when(value) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else "-"


def cmd_feeds(args) -> int:
    from .http import HttpClient
    from .subscriptions import add_feeds_to_config, discover_feed, parse_opml, render_opml
    action = args.feeds_command or "list"
    config = _load_for_edit(args.config) if action in ("add", "import-opml") else load_config(args.config)
    if action == "list":
        rows = _feed_rows(config)
        print(f"{'status':<14} {'fails':>5}  {'last ok':<16}  {'entries':>7}  {'overlap':>7}  "
              f"{'next try':<16}  feed")
        for r in rows:
            overlap = r.get("last_overlap")
            print(f"{r.get('last_status') or '-':<14} {r.get('consecutive_failures') or 0:>5}  "
                  f"{_when(r.get('last_ok_at')):<16}  {r.get('entries_last_fetch') or '-':>7}  "
                  f"{'-' if overlap is None else f'{overlap:.0%}':>7}  {_when(r.get('next_fetch_at')):<16}  "
                  f"{(r['name'] + ' ') if r['name'] else ''}{r['feed_url']}")
            for note in (r.get("last_error"), r.get("last_warning")):
                if note:
                    print(f"{'':<14} {'':>5}  {note}")
        failing = sum(1 for r in rows if r.get("last_status") == "failed")
        print(f"{len(rows)} feeds, {failing} failing")
        return EXIT_OK
    if action == "add":
        with HttpClient.from_config(config) as client:
            found = discover_feed(client, args.url)
        spec = FeedSpec(found.url, args.name or found.title)
        path, added = add_feeds_to_config(config.path, [spec])
        if added:
            print(f"added {found.url} ({found.title or 'untitled'}, {found.entries} entries) to {path}")
        else:
            print(f"{found.url} is already in {path}")
        return EXIT_OK
    if action == "import-opml":
        try:
            data = Path(args.file).read_bytes()
        except OSError as exc:
            raise AiwatchError(f"{args.file}: cannot be read: {exc.strerror}") from None
        feeds = parse_opml(data, args.file)
        path, added = add_feeds_to_config(config.path, feeds)
        print(f"imported {len(added)} new feeds of {len(feeds)} in {args.file} into {path}")
        return EXIT_OK
    if action == "export-opml":
        text = render_opml(config.feeds)
        if args.out:
            Path(args.out).write_text(text, "utf-8")
            print(f"wrote {len(config.feeds)} feeds to {args.out}")
        else:
            sys.stdout.write(text)
        return EXIT_OK
    raise AssertionError(action)


def _read_store(config):
    """A read-only connection; a database made by an older aiwatch is migrated first."""
    import duckdb

    from .store import Store
    if config.database.exists():
        try:
            pending = Store.pending_migrations(config.database)
        except duckdb.Error:
            pending = False  # in use by a writer: the read-only open below waits and explains
        if pending:
            Store.open(config.database, lock_timeout=10).close()
    return Store.open(config.database, read_only=True, lock_timeout=10)


def _print_rows(cols: list[str], rows: list[tuple], fmt: str) -> None:
    if fmt == "json":
        import json
        print(json.dumps([dict(zip(cols, r)) for r in rows], default=str, ensure_ascii=False, indent=1))
    elif fmt == "csv":
        import csv
        w = csv.writer(sys.stdout)
        w.writerow(cols)
        w.writerows(rows)
    else:
        cells = [[("" if v is None else str(v)).replace("\n", " ") for v in r] for r in rows]
        widths = [min(60, max([len(c)] + [len(r[i]) for r in cells])) for i, c in enumerate(cols)]
        print("  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip())
        print("  ".join("-" * w for w in widths))
        for r in cells:
            print("  ".join((v if len(v) <= w else v[:w - 1] + "…").ljust(w) for v, w in zip(r, widths)).rstrip())
        print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


def cmd_query(args) -> int:
    import duckdb
    config = load_config(args.config)
    sql = args.sql
    if sql.startswith("@"):  # a named query: @flagged_this_week, or a file path
        from .store import migrations_dir
        named = migrations_dir() / "queries" / f"{sql[1:]}.sql"
        path = named if named.exists() else Path(sql[1:])
        try:
            sql = path.read_text("utf-8")
        except OSError:
            raise AiwatchError(f"no named query or file {sql[1:]!r}") from None
    with _read_store(config) as store:
        try:
            cols, rows = store.query(sql)
        except duckdb.Error as exc:
            raise AiwatchError(f"query failed: {str(exc).splitlines()[0]}") from None
    _print_rows(cols, rows, args.format)
    return EXIT_OK


def cmd_search(args) -> int:
    from .embed import embedder_for, model_id
    config = load_config(args.config)
    with _read_store(config) as store:
        store.check_model(model_id(config["embed.backend"]))
        embedder = embedder_for(config)
        vector = embedder.embed([args.text])[0]
        cols, rows = store.search(vector, embedder.model_id, k=args.k, theme=args.theme, since=args.since)
    if args.format == "table":
        for score, title, date, outlet, url, passage in rows:
            print(f"{score:.3f}  {date}  {title}  ({outlet})\n       {url}")
        if not rows:
            print("no matching articles")
    else:
        _print_rows(cols, rows, args.format)
    return EXIT_OK


def cmd_export(args) -> int:
    config = load_config(args.config)
    out = Path(args.parquet)
    with _read_store(config) as store:
        written = store.export_parquet(out)
    for path in written:
        print(f"wrote {path}")
    return EXIT_OK


def _parse_age(value: str):
    from datetime import timedelta
    m = re.fullmatch(r"(\d+)\s*([dwh]?)", value.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected an age like 365d, 12w or 48h, got {value!r}")
    n, unit = int(m.group(1)), m.group(2) or "d"
    return timedelta(hours=n) if unit == "h" else timedelta(days=n * (7 if unit == "w" else 1))


def cmd_prune(args) -> int:
    from .store import Store, compact, write_lock
    config = load_config(args.config)
    if not config.database.exists():
        raise AiwatchError(f"{config.database}: no such database")
    cutoff = datetime.now(timezone.utc) - args.older_than
    with write_lock(config.database, config["storage.lock_timeout"]):
        with Store.open(config.database, lock_timeout=60) as store:
            counts = store.prune(cutoff)
        freed = compact(config.database)
    removed = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items())
    print(f"pruned everything fetched before {cutoff:%Y-%m-%d %H:%M} UTC: {removed}; "
          f"freed {max(freed, 0) / 1e6:.1f} MB")
    return EXIT_OK


def _labelled(args, config):
    from .evaluate import load_labels
    items = []
    for folder in args.labels:
        items += load_labels(Path(folder))
    return items


def _load_for_edit(path: str | None):
    """The config of a command that writes the config file: a missing file is created later."""
    from .config import config_from_document
    if path and not Path(path).exists():
        return config_from_document({}, path=Path(path))
    return load_config(path)


def cmd_themes(args) -> int:
    action = args.themes_command or "list"
    config = _load_for_edit(args.config) if action in ("add", "calibrate") else load_config(args.config)
    if action == "list":
        counts: dict[str, int] = {}
        if config.database.exists():
            with _read_store(config) as store:
                counts = dict(store.query("SELECT theme, count(*) FROM matches GROUP BY theme")[1])
        for t in config.themes:
            print(f"{t.name:20} version {t.version}  threshold {t.threshold:<5}  flagged {counts.get(t.name, 0):>5}  "
                  f"examples +{len(t.positive_examples)}/-{len(t.negative_examples)}  terms {len(t.must_have)}"
                  f"/{len(t.key_terms)}")
        return EXIT_OK
    if action == "add":
        return _themes_add(args, config)
    from .embed import embedder_for
    from .evaluate import ItemScorer, calibrate, evaluate, format_report
    items = _labelled(args, config)
    if action == "calibrate" and config.database.exists():
        items += _feedback_items(config)
    scorer = ItemScorer(items, embedder_for(config), config)
    if action == "eval":
        print(format_report(evaluate(scorer, config.themes),
                            f"{len(items)} labelled items from {', '.join(args.labels)}"))
        return EXIT_OK
    targets = {}
    for spec in args.precision or []:
        theme, _, value = spec.partition("=")
        try:
            targets[theme] = float(value)
        except ValueError:
            raise ConfigError("--precision", f"expected THEME=0.9, got {spec!r}") from None
    thresholds = calibrate(scorer, config.themes, targets)
    for t in config.themes:
        if t.name in thresholds:
            goal = f"precision >= {targets[t.name]}" if t.name in targets else "best F1"
            print(f"{t.name:20} {t.threshold} -> {thresholds[t.name]}  ({goal})")
        else:
            print(f"{t.name:20} {t.threshold} (no positive and negative labels: unchanged)")
    if args.dry_run:
        return EXIT_OK
    from .config import set_theme_thresholds
    path = config.path or Path(DEFAULT_CONFIG_NAME)
    set_theme_thresholds(path, config.themes, thresholds)
    print(f"wrote the thresholds to {path}; `aiwatch rescore` applies them to stored articles")
    return EXIT_OK


def _feedback_items(config):
    """The user's feedback as labelled items for calibration."""
    from .evaluate import LabelledItem
    with _read_store(config) as store:
        rows = store.query("""SELECT a.article_id, a.title, a.text, a.feed_url, f.theme, f.relevant
                              FROM core.feedback f JOIN core.articles a USING (article_id)""")[1]
    return [LabelledItem(aid, title or "", text or "", feed, {theme: 2 if ok else 0})
            for aid, title, text, feed, theme, ok in rows]


def _themes_add(args, config) -> int:
    from .config import theme_toml, write_out_themes
    from .propose import propose_theme
    if bool(args.from_file) == bool(args.from_url):
        raise ConfigError("themes add", "give exactly one of --from-file FILE or --from-url URL")
    if any(t.name == args.name for t in config.themes):
        raise ConfigError("themes add", f"a theme named {args.name!r} exists already")
    if args.from_url:
        from .extract import extract_article
        from .http import HttpClient
        with HttpClient.from_config(config) as client:
            fetched = client.fetch(args.from_url)
        got = extract_article(fetched)
        if got is None:
            raise AiwatchError(f"{args.from_url}: no article text could be extracted")
        title, text = got.title or "", got.text
    else:
        try:
            raw = Path(args.from_file).read_bytes()
        except OSError as exc:
            raise AiwatchError(f"{args.from_file}: cannot be read: {exc.strerror}") from None
        if raw.lstrip()[:1] == b"<":
            from .extract import extract_article
            from .http import Fetched
            got = extract_article(Fetched(args.from_file, args.from_file, 200, {}, raw))
            if got is None:
                raise AiwatchError(f"{args.from_file}: no article text could be extracted")
            title, text = got.title or "", got.text
        else:
            body = raw.decode("utf-8", errors="replace").strip()
            title, _, text = body.partition("\n")
    theme = propose_theme(args.name, title, text or title)
    block = "\n".join(["", f"# Proposed by `aiwatch themes add` from {args.from_file or args.from_url}:",
                        "# edit the description, examples and terms, then calibrate the threshold."]
                       + theme_toml(theme))
    path = config.path or Path(DEFAULT_CONFIG_NAME)
    if not path.exists():
        path.write_text(config_template(), "utf-8")
    else:
        write_out_themes(path, config.themes, "The themes in use, written out when a theme was added.")
    path.write_text(path.read_text("utf-8").rstrip("\n") + "\n" + block + "\n", "utf-8")
    print(block.strip())
    print(f"\nadded theme {args.name!r} to {path}; the next run scores every stored article against it")
    return EXIT_OK


def cmd_rescore(args) -> int:
    from .pipeline import score_articles, utcnow
    from .store import Store, write_lock
    config = load_config(args.config)
    themes = [t for t in config.themes if not args.theme or t.name == args.theme]
    if not themes:
        raise ConfigError("--theme", f"no theme named {args.theme!r} (known: {', '.join(t.name for t in config.themes)})")
    if not config.database.exists():
        raise AiwatchError(f"{config.database}: no such database")
    since = datetime.now(timezone.utc) - args.since if args.since else None
    with write_lock(config.database, config["storage.lock_timeout"]):
        with Store.open(config.database, lock_timeout=60) as store:
            cleared = sum(store.clear_scores(t, since) for t in themes)
        result = score_articles(config, "rescore-" + utcnow().strftime("%Y%m%dT%H%M%SZ"),
                                only=[t.name for t in themes])
    print(f"re-scored {result.scored} article-theme pairs ({cleared} cleared first); {result.flagged} flagged")
    return EXIT_OK


def cmd_reembed(args) -> int:
    from .pipeline import reembed
    from .store import write_lock
    config = load_config(args.config)
    if not config.database.exists():
        raise AiwatchError(f"{config.database}: no such database")
    with write_lock(config.database, config["storage.lock_timeout"]):
        embedded, dropped, scored = reembed(config)
    print(f"embedded {embedded} passages with {config['embed.backend']}, dropped {dropped} vectors of other "
          f"backends, re-scored {scored} article-theme pairs")
    return EXIT_OK


def cmd_reextract(args) -> int:
    from .pipeline import reextract
    from .store import write_lock
    config = load_config(args.config)
    if not config.database.exists():
        raise AiwatchError(f"{config.database}: no such database")
    since = datetime.now(timezone.utc) - args.since if args.since else None
    with write_lock(config.database, config["storage.lock_timeout"]):
        checked, changed = reextract(config, since)
    print(f"re-extracted {checked} stored pages: {changed} articles changed (re-embedded and re-scored)")
    return EXIT_OK


def cmd_feedback(args) -> int:
    from .pipeline import utcnow
    from .store import Store, write_lock
    config = load_config(args.config)
    if args.theme not in {t.name for t in config.themes}:
        raise ConfigError("THEME", f"no theme named {args.theme!r} (known: {', '.join(t.name for t in config.themes)})")
    if not config.database.exists():
        raise AiwatchError(f"{config.database}: no such database")
    with write_lock(config.database, config["storage.lock_timeout"]):
        with Store.open(config.database, lock_timeout=60) as store:
            found = store.article_for_url(args.url)
            if found is None:
                raise AiwatchError(f"{args.url}: no stored article has this URL")
            store.record_feedback(found[0], args.theme, args.yes, utcnow())
    verdict = "relevant" if args.yes else "not relevant"
    print(f"recorded: {found[1]!r} is {verdict} for {args.theme}; it is used as an example from the next run on")
    return EXIT_OK


def cmd_serve(args) -> int:
    from .flow import serve
    load_config(args.config)  # validate before starting anything
    serve(args.config, port=args.port)
    return EXIT_OK


# -- parser -------------------------------------------------------------------------------

def _actions(parser: argparse.ArgumentParser, dest: str):
    """Sub-actions of a command (`aiwatch feeds add ...`); each takes --config too."""
    sub = parser.add_subparsers(dest=dest, metavar="ACTION")

    def add_action(name: str, help: str) -> argparse.ArgumentParser:
        action = sub.add_parser(name, help=help, description=help)
        action.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                            help="config file (default: ./aiwatch.toml when present)")
        return action
    return add_action


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiwatch",
        description="Watch news feeds for themes, explain the matches, and write a daily digest.",
        epilog=_example("aiwatch demo            # the whole pipeline on the bundled demo corpus"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"aiwatch {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, func, help: str, example: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, epilog=_example(example),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        # accepted after the command too: `aiwatch run -q`
        p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output")
        p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="only warnings and errors")
        return p

    p = add("init", cmd_init, "Write a commented aiwatch.toml with every setting at its default.",
            "aiwatch init --config aiwatch.toml")
    p.add_argument("--config", metavar="PATH", help=f"file to write (default ./{DEFAULT_CONFIG_NAME})")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")

    p = add("run", cmd_run, "Run the daily job once over the configured feeds (Prefect flow, in-process).",
            "aiwatch run --config aiwatch.toml")
    _add_config(p)
    p.add_argument("--no-prefect", action="store_true",
                   help="run the same stages without Prefect's embedded API (starts faster)")

    p = add("demo", cmd_demo, "Run the whole pipeline on the bundled demo corpus, served on 127.0.0.1.",
            "aiwatch demo --out demo-output")
    _add_config(p)
    p.add_argument("--out", metavar="DIR", default=".", help="folder for aiwatch.duckdb and the digest (default .)")
    p.add_argument("--no-prefect", action="store_true", help="run the stages without Prefect's embedded API")

    p = add("digest", cmd_digest, "Write a digest from the database: by default the stories no earlier "
                                  "digest listed.",
            """aiwatch digest                                   # what is new since the last digest
            aiwatch digest --since 2026-11-20 --theme llm_pricing --format html
            aiwatch digest --send                            # and deliver it by email / webhook""")
    _add_config(p)
    p.add_argument("--run", metavar="RUN_ID", help="re-render what one run flagged")
    p.add_argument("--since", metavar="DATE", type=_parse_since,
                   help="everything flagged among articles fetched since DATE (ISO 8601), sent before or not")
    p.add_argument("--theme", help="only this theme")
    p.add_argument("--format", action="append", choices=("md", "html", "json", "atom"),
                   help="format to write (repeatable; default: [digest] formats)")
    p.add_argument("--send", action="store_true", help="deliver it by the configured email and webhook")
    p.add_argument("--out", metavar="DIR", help="folder to write to (default: [digest] dir)")

    p = add("feeds", cmd_feeds, "List the feeds with their health; add, import or export feeds.",
            """aiwatch feeds                                   # health of every feed
            aiwatch feeds add https://example.com/news      # a feed, or a site that links to one
            aiwatch feeds import-opml subscriptions.opml
            aiwatch feeds export-opml --out feeds.opml""")
    _add_config(p)
    fadd = _actions(p, "feeds_command")

    fadd("list", "every feed with its health (the default)")
    fp = fadd("add", "add a feed by its URL, or a site URL whose page links to its feed")
    fp.add_argument("url")
    fp.add_argument("--name", help="outlet name shown in the digest (default: the feed's title)")
    fp = fadd("import-opml", "add the feeds of an OPML file")
    fp.add_argument("file")
    fp = fadd("export-opml", "write the configured feeds as OPML (stdout, or --out FILE)")
    fp.add_argument("--out", metavar="FILE")

    p = add("query", cmd_query, "Run SQL on a read-only connection to the database.",
            """aiwatch query "SELECT theme, title, score FROM matches ORDER BY score DESC" --format csv
            aiwatch query @flagged_this_week             # a named query from sql/queries/""")
    _add_config(p)
    p.add_argument("sql", help="SQL text, or @NAME for a named query in sql/queries/ (or @path/to/file.sql)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")

    p = add("search", cmd_search, "Semantic search over the stored articles (cosine in DuckDB).",
            'aiwatch search "memory chips barred from China" --theme chip_sanctions -k 5')
    _add_config(p)
    p.add_argument("text")
    p.add_argument("--theme", help="only articles flagged for this theme")
    p.add_argument("-k", type=int, default=10, help="how many articles (default 10)")
    p.add_argument("--since", type=_parse_since, metavar="DATE", help="only articles published since DATE")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")

    p = add("export", cmd_export, "Export the public views to Parquet, partitioned by month.",
            "aiwatch export --parquet export/   # then e.g. polars.read_parquet('export/articles/**/*.parquet')")
    _add_config(p)
    p.add_argument("--parquet", metavar="DIR", required=True, help="folder to write to")

    p = add("prune", cmd_prune, "Delete what was fetched before a given age, and compact the file.",
            "aiwatch prune --older-than 365d")
    _add_config(p)
    p.add_argument("--older-than", metavar="AGE", type=_parse_age, required=True,
                   help="e.g. 365d, 12w or 48h (days when no unit)")

    p = add("themes", cmd_themes, "List, evaluate, calibrate and add themes.",
            """aiwatch themes                                      # each theme's version, threshold, flags
            aiwatch themes eval --labels ../shared/data/relevance-dev
            aiwatch themes calibrate --labels my-labels/ --precision chip_sanctions=0.9
            aiwatch themes add hbm_supply --from-file example-article.html""")
    _add_config(p)
    tadd = _actions(p, "themes_command")

    tadd("list", "each theme with its version, threshold and flagged count (the default)")
    tp = tadd("eval", "precision, recall and F1 per theme against keyword and description baselines")
    tp.add_argument("--labels", metavar="DIR", action="append", required=True,
                    help="folder with items.jsonl and labels.jsonl (repeatable)")
    tp = tadd("calibrate", "choose each theme's threshold on labelled items (and your feedback) "
                           "and write it to the config")
    tp.add_argument("--labels", metavar="DIR", action="append", required=True)
    tp.add_argument("--precision", metavar="THEME=P", action="append",
                    help="a precision target for a theme instead of the best F1 (repeatable)")
    tp.add_argument("--dry-run", action="store_true", help="print the thresholds, write nothing")
    tp = tadd("add", "propose a theme from an example article and add it to the config for you to edit")
    tp.add_argument("name")
    tp.add_argument("--from-file", metavar="FILE", help="an article as text (title on the first line) or HTML")
    tp.add_argument("--from-url", metavar="URL")

    p = add("rescore", cmd_rescore, "Re-score stored articles against the current themes (no fetching, "
                                    "no embedding).", "aiwatch rescore --since 30d --theme llm_pricing")
    _add_config(p)
    p.add_argument("--since", type=_parse_age, metavar="AGE", help="only articles fetched in the last AGE")
    p.add_argument("--theme", help="only this theme")

    p = add("reextract", cmd_reextract, "Extract the stored raw pages again, without fetching them.",
            "aiwatch reextract --since 30d     # after an upgrade or a change of extraction settings")
    _add_config(p)
    p.add_argument("--since", type=_parse_age, metavar="AGE", help="only pages fetched in the last AGE")

    p = add("reembed", cmd_reembed, "Embed the stored articles again with the configured embed.backend, "
                                    "drop the other backends' vectors and re-score.",
            "aiwatch reembed    # after changing [embed] backend")
    _add_config(p)

    p = add("feedback", cmd_feedback, "Record whether a stored article is relevant for a theme.",
            "aiwatch feedback https://example.com/story llm_pricing --no")
    _add_config(p)
    p.add_argument("url")
    p.add_argument("theme")
    verdict = p.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--yes", dest="yes", action="store_true", help="the article is on the theme")
    verdict.add_argument("--no", dest="yes", action="store_false", help="the article is not on the theme")

    p = add("serve", cmd_serve, "Serve the daily flow as a Prefect deployment on the config's cron schedule.",
            "aiwatch serve --config aiwatch.toml   # runs until Ctrl-C")
    _add_config(p)
    p.add_argument("--port", type=int, default=4200,
                   help="port of the local Prefect server started when PREFECT_API_URL is not set")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    _setup_logging(args.verbose, args.quiet)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"aiwatch: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AiwatchError as exc:
        print(f"aiwatch: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("aiwatch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return EXIT_OK

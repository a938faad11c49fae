"""Commands that read the database: digest, query, search, export."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import click

from ..errors import AiwatchError
from . import (DATE, EXIT_FAILED, EXIT_OK, _command, _config, cli, log, shown)


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
    from ..ops import writing
    from ..report import write_digest
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
        cells = [[shown("" if v is None else str(v).replace("\n", " ")) for v in r] for r in rows]
        widths = [min(60, max([len(c)] + [len(r[i]) for r in cells])) for i, c in enumerate(cols)]
        click.echo("  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip())
        click.echo("  ".join("-" * w for w in widths))
        for r in cells:
            click.echo("  ".join((v if len(v) <= w else v[:w - 1] + "…").ljust(w) for v, w in zip(r, widths)).rstrip())
        click.echo(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


FORMAT = click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
                      show_default=True)


@_command(cli, "query", "Run SQL on a read-only connection to the database. The SQL can read this database "
                        "only: no other file is read or written (COPY ... TO, read_csv, ATTACH, EXPORT) and no "
                        "extension is installed or loaded; to export, use `aiwatch export`.",
          """aiwatch query "SELECT theme, title, score FROM matches ORDER BY score DESC" --format csv
          aiwatch query @flagged_this_week             # a named query from sql/queries/""")
@click.argument("sql")
@FORMAT
def query(config_path, sql, fmt) -> int:
    from ..ops import reading
    from ..store import named_query
    config = _config(config_path)
    if sql.startswith("@"):  # a named query: @flagged_this_week, or a file path
        text = named_query(sql[1:])
        if text is None:
            try:
                text = Path(sql[1:]).read_text("utf-8")
            except OSError:
                raise AiwatchError(f"no named query or file {sql[1:]!r}") from None
        sql = text
    with reading(config, sandbox=True) as store:
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
    from ..ops import reading
    from ..relevance.embed import embedder_for, model_id
    config = _config(config_path)
    if theme:
        config.theme(theme)  # an unknown theme is an error, as in `aiwatch digest`
    with reading(config) as store:
        store.check_model(model_id(config.embed.backend))
        embedder = embedder_for(config)
        hits = store.search(embedder.embed([text])[0], embedder.model_id, k=k, theme=theme, since=since)
    if fmt == "table":
        for h in hits:
            click.echo(f"{h.score:.3f}  {h.date}  {shown(h.title)}  ({shown(h.outlet)})\n       {shown(h.url)}")
        if not hits:
            click.echo("no matching articles")
    else:
        _print_rows(["score", "title", "date", "outlet", "url", "passage"],
                    [(h.score, h.title, h.date, h.outlet, h.url, h.passage) for h in hits], fmt)
    return EXIT_OK


@_command(cli, "export", "Export the public views, the digests and the passages with their vectors to Parquet "
          "(articles and matches in year/month folders).",
          "aiwatch export --parquet export/   # then e.g. polars.read_parquet('export/articles/**/*.parquet')")
@click.option("--parquet", metavar="DIR", required=True, help="folder to write to")
def export(config_path, parquet) -> int:
    from ..ops import reading
    with reading(_config(config_path)) as store:
        written = store.export_parquet(Path(parquet))
    for path in written:
        click.echo(f"wrote {path}")
    return EXIT_OK

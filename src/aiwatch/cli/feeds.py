"""`aiwatch feeds`: health, add, import and export."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import (CONFIG_HELP, EXIT_OK, _command, _config, _config_for_edit, _epilog,
               _group_config, cli, shown)


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
    from ..ops import feed_rows
    rows = feed_rows(_config(_group_config(config_path)))
    click.echo(f"{'status':<14} {'fails':>5}  {'last ok':<16}  {'entries':>7}  {'overlap':>7}  {'next try':<16}  feed")
    for r in rows:
        overlap = r.get("last_overlap")
        click.echo(f"{r.get('last_status') or '-':<14} {r.get('consecutive_failures') or 0:>5}  "
                   f"{_when(r.get('last_ok_at')):<16}  {r.get('entries_last_fetch') or '-':>7}  "
                   f"{'-' if overlap is None else f'{overlap:.0%}':>7}  {_when(r.get('next_fetch_at')):<16}  "
                   f"{shown(r['name']) + ' ' if r['name'] else ''}{shown(r['feed_url'])}")
        for note in (r.get("last_error"), r.get("last_warning"), r.get("dropped_detail")):
            if note:
                click.echo(f"{'':<14} {'':>5}  {shown(note)}")
    failing = sum(1 for r in rows if r.get("last_status") == "failed")
    dropping = sum(1 for r in rows if r.get("entries_dropped"))
    click.echo(f"{len(rows)} feeds, {failing} failing" + (f", {dropping} dropping entries" if dropping else ""))
    return EXIT_OK


@_command(feeds, "add", "Add a feed by its URL, or a site URL whose page links to its feed.",
          "aiwatch feeds add https://example.com/news --name 'Example News'")
@click.argument("url")
@click.option("--name", help="outlet name shown in the digest (default: the feed's title)")
def feeds_add(config_path, url, name) -> int:
    from ..ops import add_feed
    found, path, added = add_feed(_config_for_edit(_group_config(config_path)), url, name)
    if added:
        click.echo(f"added {shown(found.url)} ({shown(found.title or 'untitled')}, {found.entries} entries) to {path}")
    else:
        click.echo(f"{found.url} is already in {path}")
    return EXIT_OK


@_command(feeds, "import-opml", "Add the feeds of an OPML file.", "aiwatch feeds import-opml subscriptions.opml")
@click.argument("file")
def feeds_import_opml(config_path, file) -> int:
    from ..ops import import_opml
    listed, added, path = import_opml(_config_for_edit(_group_config(config_path)), file)
    click.echo(f"imported {len(added)} new feeds of {len(listed)} in {file} into {path}")
    return EXIT_OK


@_command(feeds, "export-opml", "Write the configured feeds as OPML (stdout, or --out FILE).",
          "aiwatch feeds export-opml --out feeds.opml")
@click.option("--out", metavar="FILE")
def feeds_export_opml(config_path, out) -> int:
    from ..ingest.subscriptions import render_opml
    config = _config(_group_config(config_path))
    text = render_opml(config.feeds)
    if out:
        Path(out).write_text(text, "utf-8")
        click.echo(f"wrote {len(config.feeds)} feeds to {out}")
    else:
        sys.stdout.write(text)
    return EXIT_OK

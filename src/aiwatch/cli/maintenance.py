"""Maintenance commands: prune, rescore, reextract, reembed, feedback."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone

import click

from . import (AGE, EXIT_OK, _command, _config, cli, shown)


# -- maintenance --------------------------------------------------------------------------------

@_command(cli, "prune", "Delete what was fetched before a given age, and compact the file.",
          """aiwatch prune --older-than 365d
          aiwatch prune --older-than 0d --yes     # everything: asks first unless --yes""")
@click.option("--older-than", type=AGE, required=True, help="e.g. 365d, 12w or 48h (days when no unit)")
@click.option("--yes", is_flag=True, help="do not ask before deleting everything fetched in the last day too")
def prune(config_path, older_than, yes) -> int:
    from ..ops import prune as prune_old
    config = _config(config_path)
    if older_than < timedelta(days=1) and not yes:
        hours = older_than.total_seconds() / 3600
        what = "every stored article" if not hours else f"every article fetched more than {hours:g} hours ago"
        if not sys.stdin.isatty():
            raise click.UsageError(f"this would delete {what}; add --yes to do that")
        click.confirm(f"This deletes {what} in {config.database}. Continue?", abort=True)
    cutoff, counts, freed = prune_old(config, older_than)
    removed = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items())
    click.echo(f"pruned everything fetched before {cutoff:%Y-%m-%d %H:%M} UTC: {removed}; "
               f"freed {max(freed, 0) / 1e6:.1f} MB")
    return EXIT_OK


@_command(cli, "compact", "Rewrite the database file without its free space, in the format DuckDB 1.1 and later read "
                          "(a file made by aiwatch before 0.2 is in DuckDB 2's own format until then).",
          "aiwatch compact --config aiwatch.toml")
def compact(config_path) -> int:
    from ..ops import compact_database
    freed = compact_database(_config(config_path))
    click.echo(f"compacted: freed {max(freed, 0) / 1e6:.1f} MB")
    return EXIT_OK


@_command(cli, "rescore", "Re-score stored articles against the current themes (no fetching, no embedding).",
          "aiwatch rescore --since 30d --theme llm_pricing")
@click.option("--since", type=AGE, help="only articles fetched in the last AGE")
@click.option("--theme", help="only this theme")
def rescore(config_path, since, theme) -> int:
    from ..ops import rescore as rescore_stored
    cleared, result = rescore_stored(_config(config_path), theme, since)
    click.echo(f"re-scored {result.scored} article-theme pairs ({cleared} cleared first); {result.flagged} flagged")
    return EXIT_OK


@_command(cli, "reextract", "Extract the stored raw pages again, without fetching them.",
          "aiwatch reextract --since 30d     # after an upgrade or a change of extraction settings")
@click.option("--since", type=AGE, help="only pages fetched in the last AGE")
def reextract(config_path, since) -> int:
    from ..ops import reextract as reextract_pages
    checked, changed = reextract_pages(_config(config_path), datetime.now(timezone.utc) - since if since else None)
    click.echo(f"re-extracted {checked} stored pages: {changed} articles changed (re-embedded and re-scored)")
    return EXIT_OK


@_command(cli, "reembed", "Embed the stored articles again with the configured embed.backend, drop the other "
                          "backends' vectors and re-score.", "aiwatch reembed    # after changing [embed] backend")
def reembed(config_path) -> int:
    from ..ops import reembed as reembed_all
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
    from ..ops import record_feedback
    found = record_feedback(_config(config_path), url, theme, relevant)
    click.echo(f"recorded: {shown(repr(found.title))} is {'relevant' if relevant else 'not relevant'} for {theme}; "
               "it is used as an example from the next run on")
    return EXIT_OK

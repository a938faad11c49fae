"""`aiwatch themes`: list, eval, calibrate, add."""

from __future__ import annotations


import click

from ..errors import ConfigError
from . import (CONFIG_HELP, EXIT_OK, _command, _config, _config_for_edit, _epilog,
               _group_config, cli)


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
    from ..ops import reading
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
    from ..ops import item_scorer, labelled_items
    from ..relevance.evaluate import evaluate, format_report
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
    from ..ops import calibrate_thresholds
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
    from ..configfile import theme_toml
    from ..ops import add_theme
    theme, path = add_theme(_config_for_edit(_group_config(config_path)), name, from_file=from_file,
                            from_url=from_url)
    click.echo(theme_toml(theme).strip())
    click.echo(f"\nadded theme {name!r} to {path}; the next run scores every stored article against it")
    return EXIT_OK

"""`aiwatch themes`: list, eval, calibrate, add."""

from __future__ import annotations

from pathlib import Path

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


LABELS = click.option("--labels", "labels", metavar="DIR[=ITEMS]", multiple=True, required=True,
                      help="a folder with labels.jsonl and its items (items.jsonl, or items.path naming them), or "
                           "DIR=FILE naming the items (repeatable)")


@_command(themes, "eval", "Precision, recall and F1 per theme and macro, on a feed-grouped, a time and a source "
                          "split, against the prototype, keyword and description baselines.",
          """aiwatch themes eval --labels ../shared/data/relevance-dev
          aiwatch themes eval --labels labels/relevance-pool --labels labels/rld-2024-25=rld-2024-25-items.jsonl
          aiwatch themes eval --labels ../shared/data/relevance-dev --learning-curve""")
@LABELS
@click.option("--split", "splits", multiple=True, type=click.Choice(["grouped", "time", "source"]),
              help="which splits (repeatable; default: all three)")
@click.option("--time-cutoff", default="2024-01-01", show_default=True, metavar="DATE",
              help="the time split trains on items published before DATE and tests on the rest")
@click.option("--learning-curve", is_flag=True,
              help="also show F1 after 0, 10, 25 and 50 of your judgements, for a theme without a shipped model")
@click.option("--train-with", metavar="DIR", multiple=True,
              help="labels used in every training part and never tested (e.g. labels/own-words; repeatable)")
def themes_eval(config_path, labels, splits, time_cutoff, learning_curve, train_with) -> int:
    from dataclasses import replace
    from ..ops import item_scorer, labelled_items
    from ..relevance.protocols import SPLITS, evaluate_split, format_learning_curve, format_reports, learning_curve as curve
    config = _config(_group_config(config_path))
    found = labelled_items(config, labels)
    found += [replace(it, train_only=True) for it in labelled_items(config, train_with)]
    scorer = item_scorer(config, found)
    reports = [evaluate_split(scorer, s, cutoff=time_cutoff) for s in (splits or SPLITS)]
    click.echo(format_reports(reports, f"{len(found)} labelled items from {', '.join(labels)}; the default "
                                       "threshold of each theme; a system that learns is fitted on each training part"))
    if learning_curve:
        click.echo("\n" + format_learning_curve(curve(scorer)))
    return EXIT_OK


@_command(themes, "train", "Fit the learned scorer of each configured theme on labelled items and write its "
                           "parameters (numbers only) to a file.",
          """aiwatch themes train --labels labels/relevance-pool --labels ../shared/data/relevance-dev \\
              --labels labels/own-words --out my-models.json""")
@LABELS
@click.option("--out", metavar="FILE", required=True, help="where to write the parameters")
def themes_train(config_path, labels, out) -> int:
    from ..ops import item_scorer, labelled_items
    from ..relevance.protocols import train
    config = _config(_group_config(config_path))
    found = labelled_items(config, labels)
    doc = train(item_scorer(config, found), Path(out), f"{len(found)} labelled items")
    click.echo(f"wrote the models of {', '.join(doc['themes'])} ({len(found)} labelled items) to {out}")
    return EXIT_OK


@_command(themes, "calibrate", "Choose each theme's probability threshold on labelled items (and your feedback), "
                               "show how reliable the probabilities are, and write the thresholds to the config.",
          "aiwatch themes calibrate --labels my-labels/ --precision chip_sanctions=0.9")
@LABELS
@click.option("--precision", metavar="THEME=P", multiple=True,
              help="a precision target for a theme instead of the best F1 (repeatable)")
@click.option("--dry-run", is_flag=True, help="print the thresholds, write nothing")
def themes_calibrate(config_path, labels, precision, dry_run) -> int:
    from ..ops import calibrate_thresholds
    from ..relevance.protocols import format_reliability
    config = _config_for_edit(_group_config(config_path))
    targets = {}
    for spec in precision:
        theme, _, value = spec.partition("=")
        try:
            targets[theme] = float(value)
        except ValueError:
            raise ConfigError("--precision", f"expected THEME=0.9, got {spec!r}") from None
    thresholds, curves, path = calibrate_thresholds(config, labels, targets, write=not dry_run)
    for t in config.themes:
        if t.name in thresholds:
            goal = f"precision >= {targets[t.name]}" if t.name in targets else "best F1"
            click.echo(f"{t.name:20} {t.threshold} -> {thresholds[t.name]}  ({goal})")
        else:
            click.echo(f"{t.name:20} {t.threshold} (no positive and negative labels: unchanged)")
    click.echo(format_reliability(curves))
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

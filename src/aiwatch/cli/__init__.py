"""The command line: a thin layer over the library, on click.

Each command is one small function over one library call, with an example in its help.
Library errors become one-line messages and a non-zero exit code (2 for an unusable config or
command line, 1 for a failure); a user mistake never prints a traceback. Every command that
reads or writes the database, or the config file, takes ``--config PATH``.
"""

from __future__ import annotations

import faulthandler
import inspect
import logging
import re
import sys
import textwrap
from contextlib import suppress
from datetime import datetime, timedelta, timezone
from functools import wraps
from pathlib import Path
from typing import Callable

import click

from .. import __version__
from ..config import DEFAULT_CONFIG_NAME, Config, config_from_document, load_config
from ..errors import AiwatchError, ConfigError

log = logging.getLogger("aiwatch")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
CONFIG_HELP = f"config file (default: ./{DEFAULT_CONFIG_NAME} when present, else built-in defaults)"


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = shown(record.getMessage().replace("\n", " "))
        if record.levelno >= logging.WARNING:
            return f"aiwatch: {record.levelname.lower()}: {msg}"
        return f"aiwatch: {msg}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record, not the stream current
    when the first command ran (commands run in-process, by a notebook or a test, swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logger = logging.getLogger("aiwatch")
    logger.setLevel(level)
    if not any(getattr(h, "_aiwatch", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler._aiwatch = True  # type: ignore[attr-defined]
        handler.setFormatter(_OneLine())
        logger.addHandler(handler)
    logger.propagate = False
    from ..progress import use_bars
    use_bars(sys.stderr.isatty() and not quiet)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def shown(value) -> str:
    """Text from feeds and pages as the terminal may print it: control characters (an escape
    sequence that clears the screen or sets the window title, a bidi override) are written
    escaped, as ``\\x1b``, never sent to the terminal."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(value))


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


# The commands, one module per group of them; importing them registers them on `cli`.
from . import feeds, maintenance, reading, running, themes, web  # noqa: E402,F401

# -- entry point ------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    if not faulthandler.is_enabled():
        # a native crash in a C library (lxml, onnxruntime, DuckDB) then prints every thread's
        # Python stack to stderr, so its report names the call instead of only "double free"
        with suppress(Exception):
            faulthandler.enable()
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

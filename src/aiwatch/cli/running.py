"""Commands that run the job: init, run, demo, serve."""

from __future__ import annotations

import re
from pathlib import Path

import click

from ..config import DEFAULT_CONFIG_NAME
from ..errors import ConfigError
from . import (EXIT_FAILED, EXIT_OK, _command, _config, cli, log, shown)


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
            click.echo(f"  [{f.theme}] {f.score:.2f}  {shown(f.title)}")
    for path in result.digest_files:
        click.echo(f"digest: {path}")


def _run(config_path: str | None, use_prefect: bool, settings: dict | None = None, feeds: list[dict] | None = None):
    """Run the job: the Prefect flow in-process (embedded API), or the same stages directly."""
    if use_prefect:
        from ..flow import daily
        return daily(config_path=config_path, settings=settings, feeds=feeds)
    from ..config import build_config
    from ..pipeline import run_pipeline
    return run_pipeline(build_config(config_path, settings, feeds))


@_command(cli, "init", "Write a commented aiwatch.toml with every setting at its default.",
          "aiwatch init --config aiwatch.toml", config=False)
@click.option("--config", "config_path", metavar="PATH", help=f"file to write (default ./{DEFAULT_CONFIG_NAME})")
@click.option("--force", is_flag=True, help="overwrite an existing file")
def init(config_path: str | None, force: bool) -> int:
    from ..configfile import config_template
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
    config.check_writable()
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
    from ..demo import CorpusServer, demo_feeds, demo_settings
    folder = Path(out).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(folder)
    _config(config_path).replace(**settings).check_writable()  # validate before starting anything
    with CorpusServer(port=_demo_port(Path(settings["storage.database"]))) as server:
        log.info("serving the demo corpus at %s", server.base_url)
        result = _run(config_path, not no_prefect, settings, demo_feeds(server.base_url))
    _print_result(result)
    click.echo(f"database: {settings['storage.database']}")
    click.echo("query it: python -c 'import duckdb; duckdb.connect(\"%s\", read_only=True)"
               ".sql(\"SELECT theme, score, title FROM matches ORDER BY theme, score DESC\").show()'"
               % settings["storage.database"])
    return EXIT_OK


def _demo_port(database: Path) -> int:
    """The port to serve the corpus on. Its URLs include the port, so a demo database made
    before is served on the port it was made with: on another one, every article would be new
    under its new URL and stored again as a copy."""
    from ..demo import free_port
    port = DEMO_PORT
    if database.exists():
        from ..store import Store
        with Store.open(database, read_only=True, lock_timeout=10) as store:
            urls = list(store.feed_titles())
        ports = {m.group(1) for m in map(re.compile(r"^http://127\.0\.0\.1:(\d+)/").match, urls) if m}
        if len(ports) == 1:
            port = int(ports.pop())
    if free_port(port) == port:
        return port
    if database.exists():
        raise click.UsageError(f"port {port} on 127.0.0.1, where {database} was made, is in use (another "
                               "aiwatch demo?); the demo's URLs include the port, so stop what holds it, "
                               "or use a new --out folder")
    return 0


@_command(cli, "serve", "Serve the daily flow as a Prefect deployment on the config's cron schedule.",
          "aiwatch serve --config aiwatch.toml   # runs until Ctrl-C")
@click.option("--port", type=int, default=4200, show_default=True,
              help="port of the local Prefect server started when PREFECT_API_URL is not set")
def serve(config_path: str | None, port: int) -> int:
    from ..flow import serve as serve_flow
    _config(config_path)  # validate before starting anything
    serve_flow(config_path, port=port)
    return EXIT_OK

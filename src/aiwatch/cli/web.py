"""`aiwatch web`: the local web app."""

from __future__ import annotations

import click

from . import EXIT_OK, _command, cli


@_command(cli, "web", "Serve the web app: read and judge the flagged stories, search, tune the themes, watch the "
                      "feeds and runs. It listens on 127.0.0.1 unless told otherwise; any other address needs "
                      "web.password_env.",
          """aiwatch web --config aiwatch.toml                  # then open http://127.0.0.1:8765/
          AIWATCH_PASS=... aiwatch web --host 0.0.0.0      # with [web] password_env = "AIWATCH_PASS\"""")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True, help="port to listen on")
def web(config_path: str | None, host: str, port: int) -> int:
    from ..web.app import create_app, check_port, serve_app
    app = create_app(config_path, host=host)  # refuses, in one line, what may not be served
    check_port(host, port)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"aiwatch web: http://{shown}:{port}/ (database {app.state.web.config().database}); Ctrl-C stops it")
    serve_app(app, host, port)
    return EXIT_OK

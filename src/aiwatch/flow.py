"""The Prefect flow: the daily job, with each stage as a task.

It lives inside the package (not only in ``flows/``) so that an installed, non-editable
aiwatch can run it; ``flows/daily.py`` re-exports it as the deployment entrypoint. This is
the one place in the library that imports Prefect (STYLE.md keeps Prefect in flows/; an
installed package has no flows/ folder, so the flow must live here for `aiwatch run`).
"""

from __future__ import annotations

from .prefect_env import configure_prefect_env

configure_prefect_env()

import atexit  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from contextlib import contextmanager, suppress  # noqa: E402
from typing import Any, Callable, Iterator  # noqa: E402

import httpx  # noqa: E402

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from .config import build_config, load_config  # noqa: E402
from .errors import AiwatchError  # noqa: E402
from .pipeline import RunResult, run_pipeline  # noqa: E402

log = logging.getLogger(__name__)


def _as_task(fn: Callable) -> Callable:
    # No caching: idempotency lives in DuckDB, and a stage must re-check the database each run.
    return task(fn, name=fn.__name__.replace("_", "-"), cache_policy=NO_CACHE, persist_result=False)


@flow(name="aiwatch-daily", description="Fetch feeds and articles, embed, score against themes, write the digest.")
def daily(config_path: str | None = None, settings: dict[str, Any] | None = None,
          feeds: list[dict[str, str]] | None = None) -> RunResult:
    """The daily job. Parameters are JSON-able so a deployment can carry them: a config file,
    setting overrides ({"fetch.timeout": 5}) and an optional feed list replacing the config's."""
    return run_pipeline(build_config(config_path, settings, feeds), stage=_as_task)


@contextmanager
def prefect_api(port: int = 4200, timeout: float = 90.0) -> Iterator[str]:
    """The Prefect API to serve against: the configured one, or a local server we start.

    Prefect's temporary in-process server refuses schedules, so serving a cron deployment
    needs a real one. When no PREFECT_API_URL is configured, start `prefect server start` on
    127.0.0.1, wait until it is healthy, and stop it on exit.
    """
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    configured = get_current_settings().api.url
    if configured:
        yield str(configured)
        return
    url = f"http://127.0.0.1:{port}/api"
    log.info("no PREFECT_API_URL configured: starting a local Prefect server at %s", url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy(), start_new_session=True)

    def stop_server() -> None:
        # the server runs in its own process group (it may start workers): stop all of it
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)

    atexit.register(stop_server)  # also when Prefect's runner exits the process on SIGTERM
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                err = (proc.stderr.read() or b"").decode("utf-8", "replace").strip().splitlines()
                raise AiwatchError(f"prefect server exited early: {err[-1] if err else proc.returncode}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AiwatchError(f"prefect server did not become healthy within {timeout:g}s at {url}")
            time.sleep(0.5)
        log.info("Prefect server ready; UI at http://127.0.0.1:%d", port)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        stop_server()


def serve(config_path: str | None, port: int = 4200) -> None:
    """Serve ``daily`` as a deployment on the config's cron schedule until interrupted."""
    from prefect.schedules import Cron

    config = load_config(config_path)
    path = str(config.path.resolve()) if config.path else None
    with prefect_api(port):
        log.info("serving deployment aiwatch-daily/daily on schedule %r (%s)",
                 config["schedule.cron"], config["schedule.timezone"])
        daily.serve(
            name="daily",
            schedules=[Cron(config["schedule.cron"], timezone=config["schedule.timezone"])],
            parameters={"config_path": path},
            description="aiwatch daily job: feeds, articles, embeddings, theme scores, digest",
        )

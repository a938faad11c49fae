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
from dataclasses import replace  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Iterator  # noqa: E402

from prefect import flow, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.client.orchestration import get_client  # noqa: E402
from prefect.deployments import run_deployment  # noqa: E402
from prefect.exceptions import ObjectNotFound  # noqa: E402

from .config import Config, build_config, load_config  # noqa: E402
from .errors import AiwatchError, ConfigError, StoreError  # noqa: E402
from .http import probe  # noqa: E402
from .localserver import free_port  # noqa: E402
from .articles.shards import changed_settings  # noqa: E402
from .articles.stage import fetch_articles  # noqa: E402
from .pipeline import RunResult, run_digest, run_pipeline  # noqa: E402
from .relevance.embedding import embed_passages  # noqa: E402
from .store import Store  # noqa: E402

log = logging.getLogger(__name__)


def retry_transient(task, task_run, state) -> bool:
    """Retry a stage only for what may pass: the database busy, or the file system failing.

    Bad outside input never reaches here (stages record it as failures and go on), and a
    programming error or an unusable config will fail the same way again.
    """
    try:
        state.result()
    except StoreError as exc:
        return exc.transient
    except OSError:
        return True
    except BaseException:
        return False
    return False


@contextmanager
def route_logs_to_prefect() -> Iterator[None]:
    """aiwatch's own records in the flow run's logs, INFO included, wherever the flow runs
    (in-process, `aiwatch serve`'s subprocesses, a worker): Prefect gives the loggers named in
    PREFECT_LOGGING_EXTRA_LOGGERS its API handler, but only when the variable was set before
    Prefect started, and leaves their level at the root's WARNING. The handler is attached for
    the flow's body only (outside a flow run it has no run to send to, and warns), and what it
    queued is sent before the flow returns."""
    from prefect.logging.handlers import APILogHandler

    logger = logging.getLogger("aiwatch")
    set_level = logger.level == logging.NOTSET
    if set_level:
        logger.setLevel(logging.INFO)
    added = None
    if not any(isinstance(h, APILogHandler) for h in logger.handlers):
        added = APILogHandler()
        logger.addHandler(added)
    try:
        yield
    finally:
        if added is not None:
            logger.removeHandler(added)
            with suppress(Exception):  # best effort: a log the API did not take is not a failed run
                added.flush()
        if set_level:
            logger.setLevel(logging.NOTSET)


def _as_task(fn: Callable) -> Callable:
    # No caching: idempotency lives in DuckDB, and a stage must re-check the database each run.
    # One task per stage, each working on whole batches: Prefect's per-task cost is paid a
    # handful of times per run, never once per article.
    return task(fn, name=fn.__name__.replace("_", "-"), cache_policy=NO_CACHE, persist_result=False,
                retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_transient)


def run_summary_markdown(config: Config, result: RunResult) -> str:
    """The run summary left as a Prefect artifact: counts, flagged articles, failures."""
    s = result.stats
    lines = [f"# aiwatch run {s.run_id}: {result.status}", "",
             "| feeds | ok | unchanged | failed | backing off | new articles | page failures | "
             "passages embedded | flagged |",
             "|---|---|---|---|---|---|---|---|---|",
             f"| {s.feeds_total} | {s.feeds_ok} | {s.feeds_not_modified} | {s.feeds_failed} | {s.feeds_deferred} | "
             f"{s.articles_new} | {s.articles_failed} | {s.passages_embedded} | {s.flagged} |", ""]
    if result.flagged:
        lines += ["## Flagged", "", "| theme | score | title |", "|---|---|---|"]
        lines += [f"| {f.theme} | {f.score:.2f} | {f.title.replace('|', '/')} |" for f in result.flagged]
        lines.append("")
    with Store.open(config.database, read_only=True, lock_timeout=30) as store:
        failures = store.run_failures(s.run_id)
    if failures:
        lines += ["## Failures", "", "| stage | url | error |", "|---|---|---|"]
        lines += [f"| {f.stage} | {f.url} | {f.error.replace('|', '/')} |" for f in failures]
    if result.digest_files:
        lines += ["", "Digest: " + ", ".join(str(p) for p in result.digest_files)]
    return "\n".join(lines)


@flow(name="aiwatch-digest", description="Render and write the digest of one run.")
def digest(config_path: str | None = None, settings: dict[str, Any] | None = None,
           feeds: list[dict[str, str]] | None = None, run_id: str | None = None) -> list[str]:
    """The digest of ``run_id`` (default: the latest finished run); chained after ``daily``."""
    with route_logs_to_prefect():
        config = build_config(config_path, settings, feeds)
        if run_id is None:
            from .report.digest import latest_run_id
            with Store.open(config.database, read_only=True, lock_timeout=30) as store:
                run_id = latest_run_id(store)
            if run_id is None:
                raise AiwatchError(f"{config.database}: no finished run to write a digest for")
        return [str(p) for p in _as_task(run_digest)(config, run_id)]


def _submitted(fn: Callable) -> Callable:
    """A stage as a task submitted to the flow's task runner (a Dask worker), awaited."""
    if fn is embed_passages:  # stays in the flow, and spreads its chunks over the workers
        return partial(fn, fan_out=_fan_out_tasks)
    as_task = _as_task(fn)
    return lambda *args: as_task.submit(*args).result()


def _fan_out_settled(fn: Callable, arglists: list[tuple]) -> Iterator:
    """Each call as a task submitted to the task runner, all at once; yields each result in
    order, or the exception of a call that failed (even on a worker that died each time Dask
    tried it) instead of ending the stage."""
    as_task = _as_task(fn)
    futures = [as_task.submit(*args) for args in arglists]
    for future in futures:
        try:
            yield future.result()
        except Exception as exc:  # noqa: BLE001 - the stage records it and the next run tries again
            yield exc


def _fan_out_tasks(fn: Callable, arglists: list[tuple]) -> Iterator:
    """Like :func:`_fan_out_settled`, but the first failed call ends the stage."""
    for outcome in _fan_out_settled(fn, arglists):
        if isinstance(outcome, Exception):
            raise outcome
        yield outcome


def _in_shards(fn: Callable) -> Callable:
    """With ``storage.shards`` only the shard builds leave the flow (they never open the
    database); every stage that reads or writes it runs here, in the one writing process."""
    if fn is fetch_articles:
        return partial(fn, fan_out=_fan_out_settled)
    return _as_task(fn)


@flow(name="aiwatch-ingest", description="The ingest stages on a Dask task runner.")
def ingest(config_path: str | None = None, settings: dict[str, Any] | None = None,
           feeds: list[dict[str, str]] | None = None) -> RunResult:
    with route_logs_to_prefect():
        config = build_config(config_path, settings, feeds)
        return run_pipeline(config, stage=_in_shards if config.storage.shards else _submitted, with_digest=False)


def _ingest_on_dask(config: Config):
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise ConfigError("prefect.task_runner", "'dask' needs prefect-dask: pip install 'aiwatch[dask]'") from None
    if config.prefect.dask_address:  # the config has checked that storage.shards is set
        return ingest.with_options(task_runner=DaskTaskRunner(address=config.prefect.dask_address))
    n = config.prefect.dask_workers
    # One thread per worker process: torch and trafilatura then use the cores without
    # oversubscribing them.
    runner = DaskTaskRunner(cluster_kwargs={"n_workers": n, "threads_per_worker": 1, "processes": True,
                                            "dashboard_address": None})
    return ingest.with_options(task_runner=runner)


def pool_fan_out(config: Config) -> Callable:
    """A ``fan_out`` that hands each shard to the workers of a Prefect work pool: one flow run of
    the deployment ``prefect.shard_deployment`` per shard (``prefect.yaml``'s ``shard``, run by
    ``prefect worker start --pool aiwatch-shards`` on any machine that reaches the shared folder),
    waited for until it ends or ``prefect.shard_timeout`` passes."""
    name, timeout = config.prefect.shard_deployment, config.prefect.shard_timeout
    settings = changed_settings(config)  # the writer's, carried with each shard

    def fan_out(fn: Callable, arglists: list[tuple]) -> Iterator:
        with get_client(sync_client=True) as client:
            try:
                client.read_deployment_by_name(name)
            except ObjectNotFound:
                raise ConfigError("prefect.shard_deployment", f"{name}: no such deployment at "
                                  f"{client.api_url}; deploy it from aiwatch's folder: "
                                  f"prefect deploy --name shard") from None
            runs = []
            for _, plan, now in arglists:
                try:
                    runs.append(run_deployment(name, parameters={"plan": plan, "now": now.isoformat(),
                                                                 "settings": settings}, timeout=0))
                except Exception as exc:  # noqa: BLE001 - that shard fails; the others go on
                    runs.append(exc)
            deadline = time.monotonic() + timeout
            for run in runs:
                if isinstance(run, BaseException):
                    yield run
                    continue
                while not ((state := client.read_flow_run(run.id).state) and state.is_final()):
                    if time.monotonic() > deadline:
                        break
                    time.sleep(1.0)
                if state is not None and state.is_completed():
                    yield {"plan": run.parameters.get("plan")}
                elif state is not None and state.is_final():
                    yield AiwatchError(f"flow run {run.name} of {name} ended {state.name}: {state.message or ''}")
                else:
                    yield AiwatchError(f"flow run {run.name} of {name} did not end within {timeout:g}s "
                                       f"(prefect.shard_timeout); is a worker polling its work pool?")

    return fan_out


@flow(name="aiwatch-shard", description="Fetch, extract and embed one planned shard; never opens the database.")
def shard(plan: str, now: str, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """One shard, built by a work pool's worker (prefect.yaml's ``shard`` deployment) on any
    machine that reaches the shared folder. ``settings`` are the writer's (those differing from
    the defaults), so the shard is built as the writer would; no config file is read here."""
    from datetime import datetime

    from .articles.shards import build_shard
    from .config import config_from_document

    with route_logs_to_prefect():
        config = config_from_document({})
        if settings:
            config = config.replace(**settings)
        return build_shard(config, plan, datetime.fromisoformat(now))


@flow(name="aiwatch-daily", description="Fetch feeds and articles, embed, score against themes, write the digest.")
def daily(config_path: str | None = None, settings: dict[str, Any] | None = None,
          feeds: list[dict[str, str]] | None = None) -> RunResult:
    """The daily job. Parameters are JSON-able so a deployment can carry them: a config file,
    setting overrides ({"fetch.timeout": 5}) and an optional feed list replacing the config's.
    The digest is a chained subflow, so it shows as its own flow run."""
    with route_logs_to_prefect():
        config = build_config(config_path, settings, feeds)
        if config.prefect.task_runner == "dask":
            result = _ingest_on_dask(config)(config_path, settings, feeds)
        else:
            result = run_pipeline(config, stage=_as_task, with_digest=False)
        files = digest(config_path, settings, feeds, result.stats.run_id)
        result = replace(result, digest_files=tuple(Path(f) for f in files))
        create_markdown_artifact(key="aiwatch-run-summary", markdown=run_summary_markdown(config, result),
                                 description=f"aiwatch run {result.stats.run_id}")
        return result


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
    if free_port(port) != port:  # something answers there already: never serve against it blindly
        raise AiwatchError(f"port {port} on 127.0.0.1 is already in use; pass --port to start aiwatch's Prefect "
                           f"server on another, or set PREFECT_API_URL to use a Prefect server you run")
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
            if probe(f"{url}/health") == 200:
                break
            if time.monotonic() > deadline:
                raise AiwatchError(f"prefect server did not become healthy within {timeout:g}s at {url}")
            time.sleep(0.5)
        log.info("Prefect server ready; UI at http://127.0.0.1:%d. From another shell, set "
                 "PREFECT_API_URL=%s first (e.g. for `prefect deployment run 'aiwatch-daily/daily'`)", port, url)
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
                 config.schedule.cron, config.schedule.timezone)
        daily.serve(
            name="daily",
            schedules=[Cron(config.schedule.cron, timezone=config.schedule.timezone)],
            parameters={"config_path": path},
            description="aiwatch daily job: feeds, articles, embeddings, theme scores, digest",
        )

"""The Prefect flow: the daily job, with each stage as a task.

It lives inside the package (not only in ``flows/``) so that an installed, non-editable
aiwatch can run it; ``flows/daily.py`` re-exports it as the deployment entrypoint. This is
the one place in the library that imports Prefect (STYLE.md keeps Prefect in flows/; an
installed package has no flows/ folder, so the flow must live here for `aiwatch run`).
"""

from __future__ import annotations

from .prefect_env import configure_prefect_env

configure_prefect_env()

from typing import Any, Callable  # noqa: E402

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from .config import build_config, load_config  # noqa: E402
from .pipeline import RunResult, run_pipeline  # noqa: E402


def _as_task(fn: Callable) -> Callable:
    # No caching: idempotency lives in DuckDB, and a stage must re-check the database each run.
    return task(fn, name=fn.__name__.replace("_", "-"), cache_policy=NO_CACHE, persist_result=False)


@flow(name="aiwatch-daily", description="Fetch feeds and articles, embed, score against themes, write the digest.")
def daily(config_path: str | None = None, settings: dict[str, Any] | None = None,
          feeds: list[dict[str, str]] | None = None) -> RunResult:
    """The daily job. Parameters are JSON-able so a deployment can carry them: a config file,
    setting overrides ({"fetch.timeout": 5}) and an optional feed list replacing the config's."""
    return run_pipeline(build_config(config_path, settings, feeds), stage=_as_task)


def serve(config_path: str | None) -> None:
    """Serve ``daily`` as a deployment on the config's cron schedule (needs a Prefect server)."""
    from prefect.schedules import Cron

    config = load_config(config_path)
    path = str(config.path.resolve()) if config.path else None
    daily.serve(
        name="daily",
        schedules=[Cron(config["schedule.cron"], timezone=config["schedule.timezone"])],
        parameters={"config_path": path},
        description="aiwatch daily ingest + digest",
    )

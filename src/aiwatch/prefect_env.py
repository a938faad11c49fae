"""Environment Prefect needs before it is imported: our own home folder, no telemetry,
and the ``aiwatch`` logger in its run logs. A user's own settings win where they exist."""

from __future__ import annotations

import os
from pathlib import Path


def configure_prefect_env() -> None:
    home = Path(os.environ.setdefault("PREFECT_HOME", str(Path.home() / ".aiwatch" / "prefect")))
    # Prefect creates its home folder without parents; make the whole path ourselves.
    home.expanduser().mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    # aiwatch logs outside flow runs too (server start-up, CLI); don't warn about those.
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    extra = [x for x in os.environ.get("PREFECT_LOGGING_EXTRA_LOGGERS", "").split(",") if x]
    if "aiwatch" not in extra:
        os.environ["PREFECT_LOGGING_EXTRA_LOGGERS"] = ",".join(extra + ["aiwatch"])

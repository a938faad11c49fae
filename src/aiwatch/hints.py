"""Hints for a user's typos: the nearest known name, and ``AIWATCH_*`` variables that name no setting."""

from __future__ import annotations

import difflib
import logging
from typing import Any, Iterable, Mapping

log = logging.getLogger("aiwatch.config")


def did_you_mean(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


_warned_env: set[str] = set()
OTHER_ENVIRONMENT = frozenset({
    "AIWATCH_PROJECT_DIR",  # prefect.yaml: the folder a worker runs the flow in
    "AIWATCH_UPDATE_DOCS_SCREENSHOT",  # tests: rewrite the README's screenshot
})


def warn_unknown_environment(settings: set[str], environ: Mapping[str, str], values: Mapping[str, Any]) -> None:
    """An ``AIWATCH_*`` variable that names no setting is most likely a typo that would
    otherwise be ignored in silence (the variables a ``*_env`` setting names are secrets, not typos)."""
    secrets = {v for k, v in values.items() if k.endswith("_env") and isinstance(v, str)}
    known = settings | OTHER_ENVIRONMENT
    for name in sorted(environ):
        if name.startswith("AIWATCH_") and name not in known and name not in secrets and name not in _warned_env:
            _warned_env.add(name)
            log.warning("environment variable %s is not an aiwatch setting%s; ignored",
                        name, did_you_mean(name, known))

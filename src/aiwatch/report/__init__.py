"""Reports: the digest (collected, rendered, recorded) and its delivery by email and webhook."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..clock import utcnow
from ..config import Config
from ..errors import ConfigError
from ..store import open_store
from .delivery import deliver, retry_failed
from .digest import DigestData, collect_digest, record_digest, write_digest_files


@dataclass(frozen=True)
class DigestOutcome:
    data: DigestData
    files: tuple[Path, ...]
    sent: dict[str, bool] = field(default_factory=dict)  # channel -> delivered


def write_digest(config: Config, run_id: str | None = None, now: datetime | None = None, *,
                 since: datetime | None = None, theme: str | None = None, only_new: bool = True,
                 formats: str | None = None, folder: Path | None = None, send: bool = True) -> DigestOutcome:
    """Write a digest and, with ``send``, deliver it (earlier failed deliveries first).

    By default (``only_new``) it lists the stories no earlier digest listed and records what it
    listed, so the next one does not repeat them: that is each run's digest. Without
    ``only_new`` it is a report of ``run_id``'s flags or of everything since ``since``, recorded
    only when it is sent. The files are always written before anything is sent, so a failed
    delivery loses nothing.
    """
    now = now or utcnow()
    with open_store(config) as store:
        if run_id and store.run_row(run_id) is None:
            latest = store.recent_run_ids(3)
            raise ConfigError("--run", f"no run {run_id!r} in {config.database}"
                                       + (f" (latest: {', '.join(latest)})" if latest else " (it has no runs yet)"))
        data = collect_digest(store, config, now, run_id=run_id, since=since, theme=theme, only_new=only_new)
        files = write_digest_files(data, folder or config.digest_dir, formats or config.digest.formats, store, config)
        if only_new or send:
            record_digest(store, data, files)
        sent: dict[str, bool] = {}
        if send:
            retry_failed(store, config, now)
            sent = deliver(store, config, data, now)
    return DigestOutcome(data, tuple(files), sent)

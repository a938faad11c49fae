"""The daily job: the stages in order, with the run's status and timings.

feeds (:mod:`aiwatch.ingest`) -> articles (:mod:`aiwatch.articles`) -> embed, stories, score
(:mod:`aiwatch.relevance`) -> digest (:mod:`aiwatch.report`). Each stage takes the config and
records, opens the database by path, does its work in committed batches and returns a small
record. The state of the work lives in DuckDB (which entries were seen, which passages lack an
embedding, which articles lack a score for a theme version), so a run repeated, or resumed after
a crash, does exactly the missing work.

The Prefect flow (:mod:`aiwatch.flow`) runs :func:`run_pipeline` with each stage wrapped as a
task, so there is one definition of the job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Callable

from .articles.stage import fetch_articles
from .clock import StageClock, new_run_id, peak_rss_mb, utcnow
from .config import Config
from .errors import AiwatchError
from .ingest.stage import fetch_feeds, keep_validators
from .records import Flagged, RunStats
from .relevance.embed import model_id
from .relevance.embedding import embed_passages
from .relevance.scoring import score_articles
from .relevance.stories import group_stories
from .report import write_digest
from .store import open_store, write_lock

log = logging.getLogger(__name__)

Stage = Callable[[Callable], Callable]


@dataclass(frozen=True)
class RunResult:
    stats: RunStats
    status: str
    digest_files: tuple[Path, ...] = ()
    flagged: tuple[Flagged, ...] = field(default_factory=tuple)

    @property
    def all_feeds_failed(self) -> bool:
        s = self.stats
        return s.feeds_failed > 0 and s.feeds_failed == s.feeds_total - s.feeds_deferred


def start_run(config: Config, now: datetime | None = None) -> str:
    """Record a new run (after checking the database's vectors fit the configured backend)."""
    now = now or utcnow()
    run_id = new_run_id(now)
    with open_store(config) as store:
        store.check_model(model_id(config.embed.backend))
        store.start_run(run_id, now)
        store.sync_themes(config.themes, now)
    log.info("run %s started: %d feeds, %d themes, database %s",
             run_id, len(config.feeds), len(config.themes), config.database)
    return run_id


def finish_run(config: Config, stats: RunStats, status: str, now: datetime | None = None,
               error: str | None = None) -> None:
    with open_store(config) as store:
        store.finish_run(stats, status, now or utcnow(), error)


def run_digest(config: Config, run_id: str, now: datetime | None = None) -> tuple[Path, ...]:
    """The run's digest (what no earlier digest listed), written and delivered."""
    return write_digest(config, run_id, now).files


def _identity(fn: Callable) -> Callable:
    return fn


def run_pipeline(config: Config, *, now: datetime | None = None, stage: Stage = _identity,
                 with_digest: bool = True) -> RunResult:
    """Run the whole job once: feeds, articles, embed, stories, score, digest.

    ``stage`` wraps each stage function before it is called; the Prefect flow passes a wrapper
    that turns each into a task. Library callers use the plain functions.
    """
    config.check_writable()
    with write_lock(config.database, config.storage.lock_timeout):
        return _run_locked(config, now, stage, with_digest)


def _status(stats: RunStats) -> str:
    if stats.feeds_failed and stats.feeds_failed == stats.feeds_total - stats.feeds_deferred:
        return "failed"
    return "partial" if stats.feeds_failed or stats.articles_failed else "ok"


def _run_locked(config: Config, now: datetime | None, stage: Stage, with_digest: bool) -> RunResult:
    clock = (lambda: now) if now else utcnow
    timer = StageClock()

    def timed(name: str, fn: Callable) -> Callable:
        def call(*args, **kwargs):
            with timer.timed(name):
                return stage(fn)(*args, **kwargs)
        return call

    run_id = stage(start_run)(config, clock())
    stats = RunStats(run_id=run_id, feeds_total=len(config.feeds))
    try:
        feeds = timed("feeds", fetch_feeds)(config, run_id, clock())
        stats = replace(stats, feeds_ok=feeds.count("ok"), feeds_not_modified=feeds.count("not_modified"),
                        feeds_failed=feeds.count("failed"), feeds_deferred=feeds.count("deferred"),
                        entries_seen=feeds.entries_seen)
        arts = timed("articles", fetch_articles)(config, run_id, feeds.new_entries, clock())
        stage(keep_validators)(config, feeds.validators)  # only now: a run dead before this refetches in full
        for key, seconds in arts.seconds.items():
            timer.add(key, seconds)
        timer.add("embed_overlapped", arts.embedded)
        stats = replace(stats, articles_new=arts.stored, articles_failed=len(arts.failures))
        embedded = timed("embed", embed_passages)(config, clock())
        stats = replace(stats, passages_embedded=embedded + arts.embedded)
        timed("stories", group_stories)(config, clock())
        scores = timed("score", score_articles)(config, run_id, clock())
        stats = replace(stats, articles_scored=scores.scored, flagged=scores.flagged)
    except KeyboardInterrupt:
        # recorded without a Prefect task: the flow is being torn down
        finish_run(config, replace(stats, stage_seconds=timer.rounded()), "interrupted", clock(),
                   "interrupted by the user (Ctrl-C); the next run completes the work")
        raise
    except Exception as exc:
        stage(finish_run)(config, replace(stats, stage_seconds=timer.rounded()), "failed", clock(),
                          str(exc) if isinstance(exc, AiwatchError) else f"{type(exc).__name__}: {exc}")
        raise
    status = _status(stats)
    stage(finish_run)(config, replace(stats, stage_seconds=timer.rounded()), status, clock())
    # After the run is recorded, so the digest shows its final statistics; a digest that
    # fails to render can be made again with `aiwatch digest --run RUN_ID`.
    files = timed("digest", run_digest)(config, run_id, clock()) if with_digest else ()
    stats = replace(stats, stage_seconds=timer.rounded())
    with open_store(config) as store:
        store.record_run_timings(run_id, stats.stage_seconds, peak_rss_mb())
        flagged = store.flagged_in_run(run_id)
    log.info("run %s finished (%s): %d new articles, %d flagged", run_id, status, stats.articles_new,
             stats.flagged)
    return RunResult(stats, status, tuple(files), tuple(flagged))

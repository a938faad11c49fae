"""Runs: their status, counts and stage timings, and the failures each recorded."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Iterable

from ..records import Failure, RunStats
from .base import bulk_insert


class RunsMixin:
    def start_run(self, run_id: str, now: datetime) -> None:
        with self.transaction() as con:
            con.execute("INSERT INTO core.runs (run_id, started_at, status) VALUES (?, ?, 'running') "
                        "ON CONFLICT DO NOTHING", [run_id, now])

    def record_failures(self, run_id: str, failures: Iterable[Failure], now: datetime) -> None:
        rows = [[run_id, f.stage, f.url, f.feed_url, f.error, now] for f in failures]
        if rows:
            with self.transaction() as con:
                unique = {(r[0], r[1], r[2]): r for r in rows}  # DO UPDATE refuses a key twice in one statement
                bulk_insert(con, "INSERT INTO core.failures {rows} "
                                 "ON CONFLICT DO UPDATE SET error = excluded.error, failed_at = excluded.failed_at",
                            list(unique.values()), ["VARCHAR"] * 5 + ["TIMESTAMPTZ"])

    def finish_run(self, stats: RunStats, status: str, now: datetime, error: str | None = None) -> None:
        with self.transaction() as con:
            con.execute("""
                UPDATE core.runs SET finished_at = ?, status = ?, feeds_total = ?, feeds_ok = ?,
                    feeds_not_modified = ?, feeds_failed = ?, feeds_deferred = ?, entries_seen = ?,
                    articles_new = ?, articles_failed = ?, passages_embedded = ?, articles_scored = ?,
                    flagged = ?, error = ?, stage_seconds = ?
                WHERE run_id = ?""", [
                now, status, stats.feeds_total, stats.feeds_ok, stats.feeds_not_modified, stats.feeds_failed,
                stats.feeds_deferred, stats.entries_seen, stats.articles_new, stats.articles_failed,
                stats.passages_embedded, stats.articles_scored, stats.flagged, error,
                json.dumps(stats.stage_seconds), stats.run_id])

    def record_run_timings(self, run_id: str, stage_seconds: dict[str, float], peak_rss_mb: float) -> None:
        with self.transaction() as con:
            con.execute("UPDATE core.runs SET stage_seconds = ?, peak_rss_mb = ? WHERE run_id = ?",
                        [json.dumps(stage_seconds), round(peak_rss_mb, 1), run_id])

    def run_failures(self, run_id: str) -> list[Failure]:
        """Every failure a run recorded, feeds first."""
        return [Failure(stage=r[0], url=r[1], error=r[2], feed_url=r[3]) for r in self.con.execute(
            "SELECT stage, url, error, feed_url FROM core.failures WHERE run_id = ? ORDER BY stage, url",
            [run_id]).fetchall()]

    def latest_run_id(self) -> str | None:
        """The latest finished run."""
        row = self.con.execute(
            "SELECT run_id FROM runs WHERE status <> 'running' ORDER BY started_at DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def recent_run_ids(self, n: int = 3) -> list[str]:
        """The ``n`` latest runs, finished or not, newest first."""
        return [r[0] for r in self.con.execute("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT ?",
                                               [n]).fetchall()]

    def run_row(self, run_id: str) -> dict | None:
        """The ``runs`` view's row of one run, as a dict."""
        cur = self.con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row)) if row else None

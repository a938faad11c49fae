"""Feeds: their health, conditional-GET validators and backoff, and what the digest reports of them."""

from __future__ import annotations

from datetime import datetime
from typing import Iterable, Sequence

from ..records import FeedHealthRow, FeedOutcome, FeedState, describe_drops


class FeedsMixin:
    def feed_states(self, urls: Sequence[str]) -> dict[str, FeedState]:
        if not urls:
            return {}
        rows = self.con.execute(
            "SELECT feed_url, etag, last_modified, consecutive_failures, next_fetch_at, last_entry_ids "
            "FROM core.feeds WHERE feed_url IN (SELECT unnest(?::VARCHAR[]))", [list(urls)]).fetchall()
        return {r[0]: FeedState(feed_url=r[0], etag=r[1], last_modified=r[2], consecutive_failures=r[3],
                                next_fetch_at=r[4], last_entry_ids=tuple(r[5] or ())) for r in rows}

    def save_feed_validators(self, validators: Iterable[tuple[str, str | None, str | None]]) -> None:
        """Each feed's (url, ETag, Last-Modified) from its last full fetch, for the next conditional GET."""
        with self.transaction() as con:
            for url, etag, last_modified in validators:
                con.execute("UPDATE core.feeds SET etag = $etag, last_modified = $lm WHERE feed_url = $url",
                            {"url": url, "etag": etag, "lm": last_modified})

    def record_feed_outcomes(self, outcomes: Iterable[FeedOutcome], names: dict[str, str | None],
                             now: datetime, backoff_hours: float = 12.0) -> None:
        """Record each fetch: health counters, conditional-GET validators, backoff, overlap, and
        the entries a full fetch dropped (how many, and why).

        A failing feed is never dropped: after k failures in a row it waits
        ``backoff_hours * 2**(k-1)`` (at most a week) before the next try.
        """
        with self.transaction() as con:
            for o in outcomes:
                if o.status == "deferred":
                    continue
                ok = o.status in ("ok", "not_modified")
                con.execute("""
                    INSERT INTO core.feeds AS f (feed_url, name, title, etag, last_modified, last_status,
                        last_http_status, last_attempt_at, last_ok_at, consecutive_failures, last_error,
                        last_warning, entries_last_fetch, first_seen_at, next_fetch_at, last_entry_ids,
                        last_overlap, last_new_at, entries_dropped, dropped_detail)
                    VALUES ($url, $name, $title, $etag, $lm, $status, $http, $now,
                            CASE WHEN $ok THEN $now END, CASE WHEN $ok THEN 0 ELSE 1 END, $error,
                            $warning, $entries, $now,
                            CASE WHEN $ok THEN NULL ELSE $now + to_seconds(CAST(round($backoff * 3600) AS BIGINT)) END,
                            $ids, $overlap, CASE WHEN $new > 0 THEN $now END, $dropped, $dropped_detail)
                    ON CONFLICT (feed_url) DO UPDATE SET
                        name = excluded.name,
                        title = coalesce(excluded.title, f.title),
                        etag = CASE WHEN $status = 'ok' THEN excluded.etag ELSE f.etag END,
                        last_modified = CASE WHEN $status = 'ok' THEN excluded.last_modified
                                             ELSE f.last_modified END,
                        last_status = excluded.last_status,
                        last_http_status = excluded.last_http_status,
                        last_attempt_at = excluded.last_attempt_at,
                        last_ok_at = CASE WHEN $ok THEN excluded.last_ok_at ELSE f.last_ok_at END,
                        recovered_at = CASE WHEN $ok AND f.consecutive_failures > 0 THEN $now
                                            ELSE f.recovered_at END,
                        consecutive_failures = CASE WHEN $ok THEN 0 ELSE f.consecutive_failures + 1 END,
                        next_fetch_at = CASE WHEN $ok THEN NULL
                            ELSE $now + to_seconds(CAST(round(least($backoff * pow(2, f.consecutive_failures), 168.0) * 3600)
                                                           AS BIGINT)) END,
                        last_error = CASE WHEN $ok THEN NULL ELSE excluded.last_error END,
                        last_warning = excluded.last_warning,
                        entries_last_fetch = CASE WHEN $status = 'ok' THEN excluded.entries_last_fetch
                                                  ELSE f.entries_last_fetch END,
                        last_entry_ids = CASE WHEN $status = 'ok' THEN excluded.last_entry_ids
                                              ELSE f.last_entry_ids END,
                        last_overlap = CASE WHEN $status = 'ok' THEN excluded.last_overlap
                                            ELSE f.last_overlap END,
                        last_new_at = CASE WHEN $new > 0 THEN $now ELSE f.last_new_at END,
                        entries_dropped = CASE WHEN $status = 'ok' THEN excluded.entries_dropped
                                               ELSE f.entries_dropped END,
                        dropped_detail = CASE WHEN $status = 'ok' THEN excluded.dropped_detail
                                              ELSE f.dropped_detail END
                    """, {
                    "url": o.feed_url, "name": names.get(o.feed_url), "title": o.title, "etag": o.etag,
                    "lm": o.last_modified, "status": o.status, "http": o.http_status, "now": now,
                    "ok": ok, "error": o.error, "warning": o.warning,
                    "entries": len(o.entries) if o.status == "ok" else None,
                    "backoff": float(backoff_hours),
                    "ids": [e.entry_id for e in o.entries] if o.status == "ok" else None,
                    "overlap": o.overlap, "new": o.new_entries,
                    "dropped": o.dropped_count if o.status == "ok" else None,
                    "dropped_detail": describe_drops(o.dropped) if o.status == "ok" else None,
                })

    # -- articles ----------------------------------------------------------------------

    def feed_titles(self) -> dict[str, str | None]:
        """Each known feed's own title (the outlet name when the config gives none)."""
        return dict(self.con.execute("SELECT feed_url, title FROM core.feeds").fetchall())

    def feed_health(self) -> dict[str, dict]:
        """The ``feed_health`` view, one dict per feed URL."""
        cur = self.con.execute("SELECT * FROM feed_health")
        cols = [d[0] for d in cur.description]
        return {r[0]: dict(zip(cols, r)) for r in cur.fetchall()}

    def feed_health_rows(self, urls: Sequence[str], attempted_since: datetime | None = None) -> list[FeedHealthRow]:
        """What the digest's feed-health section needs of the given feeds and of every feed a
        run tried since ``attempted_since`` (a run's feeds may have come from its parameters)."""
        rows = self.con.execute("""
            SELECT feed_url, name, last_status, consecutive_failures, last_error, last_new_at, first_seen_at,
                   recovered_at, next_fetch_at, entries_dropped, dropped_detail
            FROM core.feeds
            WHERE feed_url IN (SELECT unnest(?::VARCHAR[])) OR (?::TIMESTAMPTZ IS NOT NULL AND last_attempt_at >= ?)
            ORDER BY feed_url""", [list(urls), attempted_since, attempted_since]).fetchall()
        return [FeedHealthRow(feed_url=r[0], name=r[1], last_status=r[2], consecutive_failures=r[3] or 0,
                              last_error=r[4], last_new_at=r[5], first_seen_at=r[6], recovered_at=r[7],
                              next_fetch_at=r[8], entries_dropped=r[9] or 0, dropped_detail=r[10])
                for r in rows]

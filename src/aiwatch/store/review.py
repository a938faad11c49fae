"""What the web app reads and writes: flagged stories for review, judgements and their undoing,
signed links followed, runs, outlets, and the stored articles a theme preview scores."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Sequence

from ..records import ArticleCard, Failure, ReviewMatch, RunRow

_RUN_COUNTS = ("feeds_total", "feeds_ok", "feeds_not_modified", "feeds_failed", "feeds_deferred", "entries_seen",
               "articles_new", "articles_failed", "passages_embedded", "articles_scored", "flagged")

# The flag a score has without a judgement: its probability against its theme version's threshold.
_FLAG_FROM_SCORE = """
    UPDATE core.scores SET flagged = core.scores.score >= t.threshold
    FROM core.themes t
    WHERE t.name = core.scores.theme AND t.version = core.scores.theme_version
      AND core.scores.article_id = ? AND core.scores.theme = ?"""


class ReviewMixin:
    # -- flagged stories ----------------------------------------------------------------

    def review_matches(self, since: datetime | None = None, *, theme: str | None = None,
                       article_id: str | None = None, limit: int = 1000) -> list[ReviewMatch]:
        """Scores of the active theme versions that are flagged or judged (a story judged not
        relevant stays on the page, so the judgement can be seen and undone), for articles
        fetched since ``since``, newest first."""
        where, params = ["(s.flagged OR f.relevant IS NOT NULL)"], []
        if since is not None:
            where.append("a.fetched_at >= ?")
            params.append(since)
        if theme is not None:
            where.append("s.theme = ?")
            params.append(theme)
        if article_id is not None:
            where.append("s.article_id = ?")
            params.append(article_id)
        rows = self.con.execute(f"""
            SELECT s.article_id, s.theme, s.score, s.flagged, a.title, a.url, a.outlet, a.published_at,
                   a.fetched_at, s.passage, s.nearest_example, s.matched_terms, f.relevant, f.given_at
            FROM core.scores s
            JOIN core.themes t ON t.name = s.theme AND t.version = s.theme_version AND t.active
            JOIN core.articles a ON a.article_id = s.article_id
            LEFT JOIN core.feedback f ON f.article_id = s.article_id AND f.theme = s.theme
            WHERE {" AND ".join(where)}
            ORDER BY coalesce(a.published_at, a.fetched_at) DESC, s.score DESC, s.article_id
            LIMIT {int(limit)}""", params).fetchall()
        return [ReviewMatch(article_id=r[0], theme=r[1], score=float(r[2]), flagged=r[3], title=r[4], url=r[5],
                            outlet=r[6], published_at=r[7], fetched_at=r[8], passage=r[9], nearest_example=r[10],
                            terms=tuple(r[11] or ()), judgement=r[12], judged_at=r[13]) for r in rows]

    def judgement_counts(self) -> dict[str, tuple[int, int]]:
        """Per theme: (judged relevant, judged not relevant)."""
        return {r[0]: (r[1], r[2]) for r in self.con.execute(
            "SELECT theme, count(*) FILTER (WHERE relevant), count(*) FILTER (WHERE NOT relevant) "
            "FROM core.feedback GROUP BY theme").fetchall()}

    # -- judgements -------------------------------------------------------------------------

    def undo_feedback(self, article_id: str, theme: str) -> bool:
        """Forget a judgement and give the article's scores for that theme back the flag their
        probability earns. Returns whether there was a judgement."""
        with self.transaction() as con:
            n = con.execute("DELETE FROM core.feedback WHERE article_id = ? AND theme = ?",
                            [article_id, theme]).fetchone()[0]
            if n:
                con.execute(_FLAG_FROM_SCORE, [article_id, theme])
        return bool(n)

    def use_link(self, link_hash: str, article_id: str, theme: str, relevant: bool, now: datetime) -> bool:
        """Apply the judgement of a signed link, once: False (and nothing changed) when the link
        was followed before."""
        with self.transaction() as con:
            if con.execute("SELECT 1 FROM core.used_links WHERE link_hash = ?", [link_hash]).fetchone():
                return False
            con.execute("INSERT INTO core.used_links VALUES (?, ?, ?, ?, ?)",
                        [link_hash, article_id, theme, relevant, now])
            con.execute("""INSERT INTO core.feedback VALUES (?, ?, ?, ?)
                           ON CONFLICT DO UPDATE SET relevant = excluded.relevant, given_at = excluded.given_at""",
                        [article_id, theme, relevant, now])
            con.execute("UPDATE core.scores SET flagged = ? WHERE article_id = ? AND theme = ?",
                        [relevant, article_id, theme])
        return True

    def link_used(self, link_hash: str) -> bool:
        return self.con.execute("SELECT 1 FROM core.used_links WHERE link_hash = ?", [link_hash]).fetchone() is not None

    # -- articles --------------------------------------------------------------------------

    def article_cards(self, article_ids: Sequence[str]) -> dict[str, ArticleCard]:
        if not article_ids:
            return {}
        rows = self.con.execute("SELECT article_id, title, url, outlet, published_at FROM core.articles "
                                "WHERE article_id IN (SELECT unnest(?::VARCHAR[]))", [list(article_ids)]).fetchall()
        return {r[0]: ArticleCard(article_id=r[0], title=r[1], url=r[2], outlet=r[3], published_at=r[4])
                for r in rows}

    def recent_originals(self, limit: int) -> list[str]:
        """The most recently fetched originals that have passages (what a theme preview scores)."""
        return [r[0] for r in self.con.execute(f"""
            SELECT a.article_id FROM core.articles a
            WHERE a.duplicate_of IS NULL
              AND EXISTS (SELECT 1 FROM core.passages p WHERE p.article_id = a.article_id)
            ORDER BY a.fetched_at DESC, a.article_id LIMIT {int(limit)}""").fetchall()]

    def theme_scores(self, theme: str, version: str) -> dict[str, tuple[float, bool]]:
        """The stored (probability, flag) of one theme version, by article."""
        return {r[0]: (float(r[1]), r[2]) for r in self.con.execute(
            "SELECT article_id, score, flagged FROM core.scores WHERE theme = ? AND theme_version = ?",
            [theme, version]).fetchall()}

    def outlets(self) -> list[str]:
        return [r[0] for r in self.con.execute(
            "SELECT DISTINCT outlet FROM core.articles WHERE outlet IS NOT NULL AND outlet <> '' ORDER BY outlet"
        ).fetchall()]

    # -- runs ------------------------------------------------------------------------------

    def last_run(self) -> RunRow | None:
        """The latest run, finished or not."""
        runs = self.recent_runs(1, with_failures=False)
        return runs[0] if runs else None

    def recent_runs(self, limit: int = 20, with_failures: bool = True) -> list[RunRow]:
        """The latest runs, newest first, with the failures each recorded."""
        cur = self.con.execute(f"SELECT * FROM runs ORDER BY started_at DESC LIMIT {int(limit)}")
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, r)) for r in cur.fetchall()]
        failures: dict[str, list[Failure]] = {}
        if rows and with_failures:
            for run_id, stage, url, error, feed_url in self.con.execute(
                    "SELECT run_id, stage, url, error, feed_url FROM core.failures "
                    "WHERE run_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY stage, url",
                    [[r["run_id"] for r in rows]]).fetchall():
                failures.setdefault(run_id, []).append(Failure(stage=stage, url=url, error=error, feed_url=feed_url))
        out = []
        for r in rows:
            try:
                seconds = json.loads(r.get("stage_seconds") or "{}")
            except ValueError:
                seconds = {}
            out.append(RunRow(run_id=r["run_id"], started_at=r["started_at"], finished_at=r["finished_at"],
                              status=r["status"], counts={k: r.get(k) for k in _RUN_COUNTS},
                              stage_seconds=seconds, error=r.get("error"), peak_rss_mb=r.get("peak_rss_mb"),
                              failures=tuple(failures.get(r["run_id"], ()))))
        return out

"""What the digests read and record: flagged stories, what was sent, deliveries, trends, exports."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Sequence

from ..records import AtomEntry, FlaggedMatch, PendingDelivery, StoryMember
from .base import sql_literal


class ReportsMixin:
    def digest_candidates(self, theme: str, version: str, since: datetime,
                          run_id: str | None = None) -> list[FlaggedMatch]:
        """Articles flagged for a theme version among those fetched since ``since`` (and
        flagged by ``run_id``, when given)."""
        run_filter = " AND m.run_id = ?" if run_id else ""
        rows = self.con.execute(f"""
            SELECT m.article_id, m.title, m.url, m.outlet, m.published_at, m.score, m.passage, m.matched_terms,
                   m.nearest_example
            FROM matches m JOIN core.articles a USING (article_id)
            WHERE m.theme = ? AND m.theme_version = ? AND a.fetched_at >= ?{run_filter}""",
                                [theme, version, since] + ([run_id] if run_id else [])).fetchall()
        return [FlaggedMatch(article_id=r[0], title=r[1], url=r[2], outlet=r[3], published_at=r[4],
                             score=float(r[5]), passage=r[6], terms=tuple(r[7] or ()), example=r[8]) for r in rows]

    def term_rarity(self, theme: str, version: str) -> dict[str, float]:
        """The share of the articles scored for a theme version in which each of its terms was
        found: "AI" in most of them says little, "entity list" in a few says a lot."""
        total = self.con.execute("SELECT count(*) FROM core.scores WHERE theme = ? AND theme_version = ?",
                                 [theme, version]).fetchone()[0]
        if not total:
            return {}
        return {t: n / total for t, n in self.con.execute("""
            SELECT u.term, count(*) FROM core.scores s, unnest(s.matched_terms) AS u(term)
            WHERE s.theme = ? AND s.theme_version = ? GROUP BY u.term""", [theme, version]).fetchall()}

    def install_id(self) -> str:
        """This database's identity, made once (the Atom feed's id)."""
        row = self.con.execute("SELECT value FROM core.meta WHERE key = 'install_id'").fetchone()
        return row[0] if row else ""


    def stories_of(self, article_ids: Sequence[str]) -> dict[str, str]:
        """The story each of ``article_ids`` belongs to (articles in none are left out)."""
        if not article_ids:
            return {}
        return dict(self.con.execute("SELECT article_id, story_id FROM core.story_members WHERE article_id IN "
                                     "(SELECT unnest(?::VARCHAR[]))", [list(article_ids)]).fetchall())

    def story_members(self, story_ids: Sequence[str]) -> list[StoryMember]:
        """Every article of the stories (copies of their members included), by outlet."""
        if not story_ids:
            return []
        rows = self.con.execute("""
            SELECT coalesce(m.story_id, coalesce(a.duplicate_of, a.article_id)), a.article_id, a.outlet, a.url
            FROM core.articles a
            LEFT JOIN core.story_members m ON m.article_id = coalesce(a.duplicate_of, a.article_id)
            WHERE coalesce(m.story_id, coalesce(a.duplicate_of, a.article_id)) IN (SELECT unnest(?::VARCHAR[]))
            ORDER BY a.outlet, a.url""", [list(story_ids)]).fetchall()
        return [StoryMember(story_id=r[0], article_id=r[1], outlet=r[2] or "", url=r[3]) for r in rows]

    def sent_stories(self) -> dict[tuple[str, str], tuple[float, int]]:
        """(story, theme) -> (highest score, most outlets) as earlier digests listed them."""
        return {(r[0], r[1]): (r[2], r[3]) for r in self.con.execute(
            "SELECT story_id, theme, max(score), max(n_outlets) FROM core.digest_items GROUP BY ALL").fetchall()}

    def record_digest(self, digest_id: str, created_at: datetime, run_id: str | None, scope: str,
                      items: Sequence[tuple[str, str, float, int, bool]], files: Sequence[str]) -> None:
        """Remember a digest and its (story, theme, score, outlets, updated) items."""
        with self.transaction() as con:
            con.execute("INSERT INTO core.digests VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        [digest_id, created_at, run_id, scope, len(items), list(files)])
            if items:
                con.executemany("INSERT INTO core.digest_items VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                [[digest_id, *item] for item in items])

    def window_stats(self, since: datetime) -> dict:
        """Runs, new articles and flags of the runs started since ``since``."""
        cur = self.con.execute("""SELECT count(*) AS runs, sum(articles_new) AS articles_new,
                                         sum(flagged) AS flagged FROM runs WHERE started_at >= ?""", [since])
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row)) if row else {}

    def article_failures(self, *, run_id: str | None = None, since: datetime | None = None) -> list[tuple[str, str]]:
        """(url, error) of the page failures of one run, or of the runs since ``since``."""
        if run_id is not None:
            return self.con.execute("SELECT url, error FROM core.failures WHERE run_id = ? AND stage <> 'feed' "
                                    "ORDER BY url", [run_id]).fetchall()
        return self.con.execute("""SELECT f.url, any_value(f.error) FROM core.failures f JOIN core.runs r USING (run_id)
                                   WHERE r.started_at >= ? AND f.stage <> 'feed' GROUP BY f.url ORDER BY f.url""",
                                [since]).fetchall()

    def theme_daily(self, start: date) -> dict[tuple[str, date], int]:
        """(theme, day) -> flagged stories, from ``start`` on."""
        return {(t, d): n for t, d, n in self.con.execute(
            "SELECT theme, day, flagged FROM theme_daily WHERE day >= ?", [start]).fetchall()}

    def atom_entries(self, since: datetime, limit: int) -> list[AtomEntry]:
        """The articles flagged since ``since``, newest first."""
        rows = self.con.execute("""
            SELECT m.article_id, m.theme, m.title, m.url, m.outlet, m.score, m.passage, m.flagged_at, m.published_at,
                   m.matched_terms, m.nearest_example
            FROM matches m JOIN core.articles a USING (article_id)
            WHERE m.flagged_at >= ? ORDER BY m.flagged_at DESC, m.score DESC LIMIT ?""", [since, limit]).fetchall()
        return [AtomEntry(article_id=r[0], theme=r[1], title=r[2], url=r[3], outlet=r[4], score=r[5], passage=r[6],
                          flagged_at=r[7], published_at=r[8], terms=tuple(r[9] or ()), example=r[10]) for r in rows]

    def record_delivery(self, digest_id: str, channel: str, status: str, now: datetime, error: str | None) -> None:
        with self.transaction() as con:
            con.execute("""INSERT INTO core.deliveries VALUES (?, ?, ?, 1, ?, ?)
                           ON CONFLICT DO UPDATE SET status = excluded.status,
                               attempts = core.deliveries.attempts + 1,
                               last_attempt_at = excluded.last_attempt_at, error = excluded.error""",
                        [digest_id, channel, status, now, error])

    def pending_deliveries(self, max_attempts: int) -> list[PendingDelivery]:
        """Failed deliveries tried fewer than ``max_attempts`` times, oldest digest first."""
        rows = self.con.execute("""SELECT v.digest_id, v.channel, d.files FROM core.deliveries v JOIN core.digests d
                                   USING (digest_id) WHERE v.status = 'failed' AND v.attempts < ?
                                   ORDER BY d.created_at""", [max_attempts]).fetchall()
        return [PendingDelivery(digest_id=r[0], channel=r[1], files=tuple(r[2] or ())) for r in rows]

    def export_parquet(self, folder: Path) -> list[Path]:
        """Write the public views to Parquet: ``articles`` partitioned by the year and month
        they were fetched, ``matches`` by the year and month they were flagged (hive folders,
        ``year=2026/month=11``); the other views, the digests, and the passages with their
        vectors (one row per passage and model) as single files."""
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for view, when in (("articles", "fetched_at"), ("matches", "flagged_at")):
            target = folder / view
            self.con.execute(f"""
                COPY (SELECT *, year({when}) AS year, month({when}) AS month FROM {view})
                TO '{sql_literal(target)}' (FORMAT parquet, PARTITION_BY (year, month), OVERWRITE_OR_IGNORE)""")
            written.append(target)
        for view in ("runs", "feed_health", "stories", "theme_daily", "digests"):
            target = folder / f"{view}.parquet"
            self.con.execute(f"COPY (SELECT * FROM {view}) TO '{sql_literal(target)}' (FORMAT parquet)")
            written.append(target)
        target = folder / "passages.parquet"
        self.con.execute(f"""
            COPY (SELECT p.article_id, p.passage_no, p.text, e.model, e.vector
                  FROM core.passages p JOIN core.embeddings e USING (text_hash)
                  ORDER BY p.article_id, p.passage_no, e.model)
            TO '{sql_literal(target)}' (FORMAT parquet)""")
        written.append(target)
        return written

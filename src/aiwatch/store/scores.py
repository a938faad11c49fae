"""Themes, scores, the user's judgements and stories."""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

import numpy as np

from ..records import Flagged, JudgedArticle, Judgement, Match, Passage, Placement, StoryCandidate
from ..relevance.themes import Theme
from .base import bulk_insert


def _candidates(rows) -> list[StoryCandidate]:
    return [StoryCandidate(r[0], r[1] or "", r[2], np.asarray(r[3], dtype=np.float32)) for r in rows]


class ScoresMixin:
    # -- themes and scores -------------------------------------------------------------

    def sync_themes(self, themes: Sequence[Theme], now: datetime) -> None:
        """Record the configured theme versions and make exactly them active."""
        with self.transaction() as con:
            con.execute("UPDATE core.themes SET active = false WHERE active")
            for t in themes:
                con.execute("""
                    INSERT INTO core.themes (name, version, description, threshold, definition, active,
                        first_seen_at) VALUES (?, ?, ?, ?, ?, true, ?)
                    ON CONFLICT (name, version) DO UPDATE SET active = true""",
                            [t.name, t.version, t.description, t.threshold, t.to_json(), now])

    def articles_to_score(self, theme: Theme) -> list[str]:
        """Originals with passages and no score for ``theme``'s current version."""
        return [r[0] for r in self.con.execute("""
            SELECT a.article_id FROM core.articles a
            WHERE a.duplicate_of IS NULL
              AND EXISTS (SELECT 1 FROM core.passages p WHERE p.article_id = a.article_id)
              AND NOT EXISTS (SELECT 1 FROM core.scores s WHERE s.article_id = a.article_id
                              AND s.theme = ? AND s.theme_version = ?)
            ORDER BY a.article_id""", [theme.name, theme.version]).fetchall()]

    def passages_for(self, article_ids: Sequence[str]) -> dict[str, list[Passage]]:
        """Each article's passages, in order."""
        if not article_ids:
            return {}
        out: dict[str, list[Passage]] = {}
        for aid, no, text, h in self.con.execute(
                "SELECT article_id, passage_no, text, text_hash FROM core.passages "
                "WHERE article_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY article_id, passage_no",
                [list(article_ids)]).fetchall():
            out.setdefault(aid, []).append(Passage(aid, no, text, h))
        return out

    def save_scores(self, matches: Sequence[Match], run_id: str, now: datetime) -> None:
        if not matches:
            return
        with self.transaction() as con:
            bulk_insert(con, """
                INSERT INTO core.scores (article_id, theme, theme_version, score, flagged, passage_no, passage,
                    nearest_example, matched_terms, run_id, scored_at) {rows}
                ON CONFLICT (article_id, theme, theme_version) DO NOTHING""",
                [(m.article_id, m.theme, m.theme_version, m.score, m.flagged, m.passage_no,
                  m.passage, m.nearest_example, list(m.terms), run_id, now) for m in matches],
                ["VARCHAR", "VARCHAR", "VARCHAR", "DOUBLE", "BOOLEAN", "INTEGER", "VARCHAR", "VARCHAR",
                 "VARCHAR[]", "VARCHAR", "TIMESTAMPTZ"])

    def clear_scores(self, theme: Theme, since: datetime | None = None) -> int:
        """Forget the scores of ``theme``'s current version (for articles fetched since), so the
        next score stage computes them again from the stored embeddings."""
        sql = "DELETE FROM core.scores WHERE theme = ? AND theme_version = ?"
        params: list = [theme.name, theme.version]
        if since is not None:
            sql += " AND article_id IN (SELECT article_id FROM core.articles WHERE fetched_at >= ?)"
            params.append(since)
        with self.transaction() as con:
            return con.execute(sql, params).fetchone()[0]

    def flagged_in_run(self, run_id: str) -> list[Flagged]:
        return [Flagged(theme=r[0], title=r[1], score=r[2]) for r in self.con.execute(
            "SELECT theme, title, score FROM matches WHERE run_id = ? ORDER BY theme, score DESC",
            [run_id]).fetchall()]

    def flagged_counts(self) -> dict[str, int]:
        """Flagged articles per theme (current theme versions)."""
        return dict(self.con.execute("SELECT theme, count(*) FROM matches GROUP BY theme").fetchall())

    # -- the user's judgements -------------------------------------------------------------

    def record_feedback(self, article_id: str, theme: str, relevant: bool, now: datetime) -> None:
        """Store a judgement and apply it at once to the article's scores for that theme."""
        with self.transaction() as con:
            con.execute("""INSERT INTO core.feedback VALUES (?, ?, ?, ?)
                           ON CONFLICT DO UPDATE SET relevant = excluded.relevant, given_at = excluded.given_at""",
                        [article_id, theme, relevant, now])
            con.execute("UPDATE core.scores SET flagged = ? WHERE article_id = ? AND theme = ?",
                        [relevant, article_id, theme])

    def feedback(self, theme: str | None = None) -> list[Judgement]:
        sql = "SELECT article_id, theme, relevant FROM core.feedback"
        rows = self.con.execute(sql + (" WHERE theme = ?" if theme else ""), [theme] if theme else []).fetchall()
        return [Judgement(article_id=r[0], theme=r[1], relevant=r[2]) for r in rows]

    def judged_articles(self) -> list[JudgedArticle]:
        """The judged articles with their text, as labelled items for calibration."""
        rows = self.con.execute("""SELECT a.article_id, a.title, a.text, a.feed_url, f.theme, f.relevant
                                   FROM core.feedback f JOIN core.articles a USING (article_id)""").fetchall()
        return [JudgedArticle(article_id=r[0], title=r[1] or "", text=r[2] or "", feed_url=r[3], theme=r[4],
                              relevant=r[5]) for r in rows]

    def feedback_examples(self, theme: str, model: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Vectors of the best passages of articles judged relevant and not relevant for ``theme``."""
        rows = self.con.execute("""
            SELECT f.relevant, e.vector
            FROM core.feedback f
            JOIN core.passages p ON p.article_id = f.article_id AND p.passage_no = coalesce(
                (SELECT max_by(s.passage_no, s.scored_at) FROM core.scores s
                 WHERE s.article_id = f.article_id AND s.theme = f.theme), 0)
            JOIN core.embeddings e ON e.text_hash = p.text_hash AND e.model = ?
            WHERE f.theme = ?""", [model, theme]).fetchall()
        pos = [np.asarray(v, dtype=np.float32) for ok, v in rows if ok]
        neg = [np.asarray(v, dtype=np.float32) for ok, v in rows if not ok]
        return pos, neg

    # -- stories --------------------------------------------------------------------------

    def ungrouped_articles(self, model: str) -> list[StoryCandidate]:
        """Originals not yet in a story, with their title + lead vector, oldest first."""
        return _candidates(self.con.execute("""
            SELECT a.article_id, a.title, coalesce(a.published_at, a.fetched_at) AS t, e.vector
            FROM core.articles a
            JOIN core.passages p ON p.article_id = a.article_id AND p.passage_no = 0
            JOIN core.embeddings e ON e.text_hash = p.text_hash AND e.model = ?
            WHERE a.duplicate_of IS NULL
              AND NOT EXISTS (SELECT 1 FROM core.story_members m WHERE m.article_id = a.article_id)
            ORDER BY t, a.article_id""", [model]).fetchall())

    def story_seeds(self, start: datetime, end: datetime, model: str) -> list[StoryCandidate]:
        """The first articles of stories that began between ``start`` and ``end``."""
        return _candidates(self.con.execute("""
            SELECT a.article_id, a.title, coalesce(a.published_at, a.fetched_at) AS t, e.vector
            FROM core.story_members m
            JOIN core.articles a ON a.article_id = m.article_id AND m.story_id = m.article_id
            JOIN core.passages p ON p.article_id = a.article_id AND p.passage_no = 0
            JOIN core.embeddings e ON e.text_hash = p.text_hash AND e.model = ?
            WHERE coalesce(a.published_at, a.fetched_at) BETWEEN ? AND ?""", [model, start, end]).fetchall())

    def save_story_members(self, rows: Sequence[Placement]) -> None:
        if rows:
            with self.transaction() as con:
                unique = {r.article_id: r for r in rows}
                bulk_insert(con, "INSERT INTO core.story_members {rows} ON CONFLICT DO NOTHING",
                            [(r.article_id, r.story_id, r.similarity) for r in unique.values()],
                            ["VARCHAR", "VARCHAR", "DOUBLE"])

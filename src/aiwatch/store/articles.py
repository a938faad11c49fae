"""Articles: entries seen, URL aliases, copies (MinHash buckets), raw pages and passages."""

from __future__ import annotations

import zlib
from datetime import datetime
from typing import Iterator, Sequence

import numpy as np

from ..records import (Article, ArticleRef, ArticleToStore, PageRetry, Passage, SeenEntry, Signature, StoredPage,
                       StoredSignature)
from ..urls import canonical_url
from .base import bulk_insert

_ARTICLE_COLUMNS = ("article_id", "url", "canonical_url", "feed_url", "entry_id", "title", "text", "text_source",
                    "author", "published_at", "fetched_at", "language", "content_hash", "duplicate_of", "outlet",
                    "page_error", "run_id", "date_source", "date_flags", "extractor", "extraction_notes",
                    "site_name", "extraction_agreement")
_ARTICLE_TYPES = (["VARCHAR"] * 9 + ["TIMESTAMPTZ", "TIMESTAMPTZ"] + ["VARCHAR"] * 7
                  + ["VARCHAR[]", "VARCHAR", "VARCHAR[]", "VARCHAR", "DOUBLE"])


class ArticlesMixin:
    def seen_entries(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
        """For each (feed_url, entry_id) already handled, the entry hash it had then."""
        if not keys:
            return {}
        rows = self.con.execute(
            "SELECT feed_url, entry_id, entry_hash FROM core.entries_seen WHERE (feed_url, entry_id) IN "
            "(SELECT (unnest(?::VARCHAR[]), unnest(?::VARCHAR[])))",
            [[k[0] for k in keys], [k[1] for k in keys]]).fetchall()
        return {(r[0], r[1]): r[2] for r in rows}

    def known_urls(self, canonical_urls: Sequence[str]) -> dict[str, str]:
        """Map each already-stored canonical URL (or alias) to its article_id."""
        if not canonical_urls:
            return {}
        rows = self.con.execute(
            "SELECT canonical_url, article_id FROM core.url_aliases "
            "WHERE canonical_url IN (SELECT unnest(?::VARCHAR[]))", [list(set(canonical_urls))]).fetchall()
        return dict(rows)

    def minhash_candidates(self, keys: Sequence[str]) -> dict[str, list[StoredSignature]]:
        """For each LSH bucket key, the stored originals in it. One query for a whole batch of
        articles; the cost is the buckets' size, not the archive's."""
        if not keys:
            return {}
        rows = self.con.execute("""
            SELECT b.bucket, h.article_id, h.signature, coalesce(a.published_at, a.fetched_at) AS t
            FROM core.minhash_bands b JOIN core.minhash h USING (article_id)
            JOIN core.articles a USING (article_id)
            WHERE b.bucket IN (SELECT unnest(?::VARCHAR[])) AND a.duplicate_of IS NULL""", [list(keys)]).fetchall()
        out: dict[str, list[StoredSignature]] = {}
        for bucket, aid, sig, when in rows:
            out.setdefault(bucket, []).append(StoredSignature(aid, np.asarray(sig, dtype=np.int64), when))
        return out

    def save_minhash(self, rows: Sequence[Signature]) -> None:
        if rows:
            with self.transaction() as con:
                bulk_insert(con, "INSERT INTO core.minhash {rows} ON CONFLICT DO NOTHING",
                            [(r.article_id, r.signature.tolist()) for r in rows], ["VARCHAR", "BIGINT[]"])
                bulk_insert(con, "INSERT INTO core.minhash_bands {rows} ON CONFLICT DO NOTHING",
                            sorted({(k, r.article_id) for r in rows for k in r.band_keys}), ["VARCHAR", "VARCHAR"])

    def first_copy_of(self, content_hashes: Sequence[str]) -> dict[str, str]:
        """For each content hash already stored, the article_id of its earliest copy."""
        if not content_hashes:
            return {}
        rows = self.con.execute("""
            SELECT content_hash, arg_min(article_id, coalesce(published_at, fetched_at))
            FROM core.articles
            WHERE duplicate_of IS NULL AND content_hash IN (SELECT unnest(?::VARCHAR[]))
            GROUP BY content_hash""", [list(set(content_hashes))]).fetchall()
        return dict(rows)

    def save_articles(self, articles: Sequence[ArticleToStore], passages: Sequence[Passage], run_id: str,
                      entry_hashes: dict[tuple[str, str], str] | None = None) -> None:
        """Upsert articles (with duplicate_of and alias URLs), their entries and passages, atomically.

        An article stored before whose content changed (the feed edited the entry) gets the new
        text, ``updated_at``, fresh passages, and loses its scores so the next score stage
        re-scores it. An unchanged article is left as it was: repeating a save changes nothing.
        """
        entry_hashes = entry_hashes or {}
        by_article: dict[str, list[Passage]] = {}
        for p in passages:
            by_article.setdefault(p.article_id, []).append(p)
        with self.transaction() as con:
            old = {r[0]: (r[1], r[2]) for r in con.execute(
                "SELECT article_id, content_hash, title FROM core.articles WHERE article_id IN "
                "(SELECT unnest(?::VARCHAR[]))", [[s.article.article_id for s in articles]]).fetchall()}
            new_rows: list[ArticleToStore] = []
            changed: list[Article] = []
            seen: set[str] = set()
            for s in articles:
                art = s.article
                if art.article_id in seen:
                    continue
                seen.add(art.article_id)
                if art.article_id not in old:
                    new_rows.append(s)
                elif old[art.article_id] != (art.content_hash, art.title):
                    changed.append(art)
            bulk_insert(con, f"INSERT INTO core.articles ({', '.join(_ARTICLE_COLUMNS)}) {{rows}}", [
                (a.article_id, a.url, a.canonical_url, a.feed_url, a.entry_id, a.title, a.text, a.text_source,
                 a.author, a.published_at, a.fetched_at, a.language, a.content_hash, s.duplicate_of, a.outlet,
                 a.page_error, run_id, a.date_source, list(a.date_flags), a.extractor, list(a.extraction_notes),
                 a.site_name, a.extraction_agreement)
                for s in new_rows for a in [s.article]], _ARTICLE_TYPES)
            for art in changed:  # the feed edited an entry: rare, one at a time
                con.execute("""
                    UPDATE core.articles SET title = ?, text = ?, text_source = ?, author = ?,
                        published_at = coalesce(published_at, ?), language = ?, content_hash = ?,
                        page_error = ?, updated_at = ?, extractor = ?, extraction_notes = ?,
                        extraction_agreement = ?
                    WHERE article_id = ?""", [
                    art.title, art.text, art.text_source, art.author, art.published_at, art.language,
                    art.content_hash, art.page_error, art.fetched_at, art.extractor,
                    list(art.extraction_notes), art.extraction_agreement, art.article_id])
                con.execute("DELETE FROM core.passages WHERE article_id = ?", [art.article_id])
                con.execute("DELETE FROM core.scores WHERE article_id = ?", [art.article_id])
            written = [s.article for s in new_rows] + changed
            bulk_insert(con, """INSERT INTO core.pages {rows}
                                ON CONFLICT DO UPDATE SET url = excluded.url, content_type = excluded.content_type,
                                    fetched_at = excluded.fetched_at, html_zlib = excluded.html_zlib""",
                        [(a.article_id, a.page.url, a.page.content_type, a.fetched_at, zlib.compress(a.page.html, 3))
                         for a in written if a.page is not None],
                        ["VARCHAR", "VARCHAR", "VARCHAR", "TIMESTAMPTZ", "BLOB"])
            bulk_insert(con, "INSERT INTO core.passages {rows} ON CONFLICT DO NOTHING",
                        [(p.article_id, p.passage_no, p.text, p.text_hash)
                         for a in written for p in by_article.get(a.article_id, [])],
                        ["VARCHAR", "INTEGER", "VARCHAR", "VARCHAR"])
            entries = {(s.article.feed_url, s.article.entry_id): s.article.article_id for s in articles}
            bulk_insert(con, """INSERT INTO core.entries_seen (feed_url, entry_id, article_id, entry_hash) {rows}
                                ON CONFLICT DO UPDATE SET entry_hash = excluded.entry_hash""",
                        [(f, e, aid, entry_hashes.get((f, e))) for (f, e), aid in entries.items()], ["VARCHAR"] * 4)
            aliases_of = {al: s.article.article_id for s in reversed(articles)
                          for al in {s.article.canonical_url, *s.aliases}}
            bulk_insert(con, "INSERT INTO core.url_aliases {rows} ON CONFLICT DO NOTHING",
                        list(aliases_of.items()), ["VARCHAR", "VARCHAR"])

    def mark_entries_seen(self, rows: Sequence[SeenEntry]) -> None:
        """Record entries handled without a new article (another URL of a stored one, say)."""
        if rows:
            with self.transaction() as con:
                unique = {(r.feed_url, r.entry_id): r for r in rows}  # DO UPDATE refuses a key twice
                bulk_insert(con, """INSERT INTO core.entries_seen (feed_url, entry_id, article_id, entry_hash) {rows}
                                    ON CONFLICT DO UPDATE SET entry_hash = excluded.entry_hash""",
                            [(r.feed_url, r.entry_id, r.article_id, r.entry_hash) for r in unique.values()],
                            ["VARCHAR"] * 4)

    def stored_pages(self, since: datetime | None = None) -> Iterator[StoredPage]:
        """The stored raw pages (fetched since ``since``), decompressed."""
        sql = "SELECT article_id, url, content_type, html_zlib FROM core.pages"
        params = []
        if since is not None:
            sql += " WHERE fetched_at >= ?"
            params.append(since)
        for aid, url, ctype, blob in self.con.execute(sql + " ORDER BY article_id", params).fetchall():
            yield StoredPage(url=url, content_type=ctype or "", html=zlib.decompress(blob), article_id=aid)

    def article(self, article_id: str) -> Article | None:
        """The stored article (without its raw page)."""
        row = self.con.execute(f"""SELECT {', '.join(c for c in _ARTICLE_COLUMNS if c not in ('duplicate_of',
                                                                                         'run_id'))}
                                   FROM core.articles WHERE article_id = ?""", [article_id]).fetchone()
        if row is None:
            return None
        values = dict(zip((c for c in _ARTICLE_COLUMNS if c not in ("duplicate_of", "run_id")), row))
        values["date_flags"] = tuple(values["date_flags"] or ())
        values["extraction_notes"] = tuple(values["extraction_notes"] or ())
        return Article(**values)

    def article_for_url(self, url: str) -> ArticleRef | None:
        """The article stored under ``url`` or one of its aliases."""
        row = self.con.execute(
            "SELECT a.article_id, a.title FROM core.url_aliases u JOIN core.articles a USING (article_id) "
            "WHERE u.canonical_url = ?", [canonical_url(url)]).fetchone()
        return ArticleRef(row[0], row[1]) if row else None

    def schedule_page_retries(self, rows: Sequence[PageRetry]) -> None:
        """Record pages to fetch again (a row already there takes the new attempt count)."""
        if rows:
            with self.transaction() as con:
                bulk_insert(con, """INSERT INTO core.page_retries {rows} ON CONFLICT DO UPDATE SET
                                        attempts = excluded.attempts, next_attempt_at = excluded.next_attempt_at,
                                        last_error = excluded.last_error""",
                            [(r.article_id, r.url, r.feed_url, r.attempts, r.next_attempt_at, r.last_error)
                             for r in {r.article_id: r for r in rows}.values()],
                            ["VARCHAR", "VARCHAR", "VARCHAR", "INTEGER", "TIMESTAMPTZ", "VARCHAR"])

    def page_retries(self, article_ids: Sequence[str] | None = None, *, due_by: datetime | None = None,
                     limit: int = 1000) -> list[PageRetry]:
        """Scheduled page retries: of the given articles, or those due by ``due_by`` (soonest first)."""
        sql, params = "SELECT * FROM core.page_retries", []
        if article_ids is not None:
            sql += " WHERE article_id IN (SELECT unnest(?::VARCHAR[]))"
            params.append(list(article_ids))
        elif due_by is not None:
            sql += " WHERE next_attempt_at <= ?"
            params.append(due_by)
        rows = self.con.execute(sql + f" ORDER BY next_attempt_at LIMIT {int(limit)}", params).fetchall()
        return [PageRetry(article_id=r[0], url=r[1], feed_url=r[2], attempts=r[3], next_attempt_at=r[4],
                          last_error=r[5]) for r in rows]

    def drop_page_retries(self, article_ids: Sequence[str]) -> None:
        if article_ids:
            with self.transaction() as con:
                con.execute("DELETE FROM core.page_retries WHERE article_id IN (SELECT unnest(?::VARCHAR[]))",
                            [list(article_ids)])

    def prune(self, cutoff: datetime) -> dict[str, int]:
        """Delete articles fetched before ``cutoff`` with their passages, scores and vectors.

        What was seen (entries_seen, url_aliases) is kept, so pruned items are not fetched again.
        Stored raw HTML goes first, before the articles themselves.
        """
        counts = {}
        old = "(SELECT article_id FROM core.articles WHERE fetched_at < $cutoff)"
        with self.transaction() as con:
            counts["raw_pages"] = con.execute(f"DELETE FROM core.pages WHERE article_id IN {old}",
                                              {"cutoff": cutoff}).fetchone()[0]
            for table in ("minhash", "minhash_bands", "story_members", "page_retries"):
                con.execute(f"DELETE FROM core.{table} WHERE article_id IN {old}", {"cutoff": cutoff})
            counts["scores"] = con.execute(f"DELETE FROM core.scores WHERE article_id IN {old}",
                                           {"cutoff": cutoff}).fetchone()[0]
            counts["passages"] = con.execute(f"DELETE FROM core.passages WHERE article_id IN {old}",
                                             {"cutoff": cutoff}).fetchone()[0]
            counts["articles"] = con.execute("DELETE FROM core.articles WHERE fetched_at < ?",
                                             [cutoff]).fetchone()[0]
            counts["embeddings"] = con.execute(
                "DELETE FROM core.embeddings WHERE created_at < ? AND text_hash NOT IN "
                "(SELECT text_hash FROM core.passages)", [cutoff]).fetchone()[0]
        return counts

"""The only module that talks to DuckDB.

Every write is an idempotent upsert keyed by a deterministic hash, so a run repeated or
resumed after a crash leaves the same rows. The schema comes from the numbered files in
``sql/``, applied in order inside a transaction and recorded in ``core.migrations``; a
migration edited after it was applied is refused.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import re
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import duckdb
import numpy as np

from .errors import AiwatchError, MigrationError, StoreError
from .records import Article, Failure, FeedOutcome, Match, Passage, RunStats
from .themes import Theme

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def migrations_dir() -> Path:
    """sql/ inside an installed package, else the repository's top-level sql/."""
    packaged = resources.files("aiwatch").joinpath("sql")
    if packaged.is_dir():
        return Path(str(packaged))
    repo = Path(__file__).resolve().parents[2] / "sql"
    if repo.is_dir():
        return repo
    raise MigrationError("cannot find aiwatch's sql/ migrations folder")


def list_migrations(folder: Path | None = None) -> list[tuple[int, str, str]]:
    folder = folder or migrations_dir()
    out = []
    for path in sorted(folder.iterdir()):
        m = _MIGRATION_NAME.match(path.name)
        if m:
            out.append((int(m.group(1)), path.name, path.read_text("utf-8")))
    return out


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def compact(path: Path) -> int:
    """Rewrite the database file without its free space (DuckDB does not shrink files on
    DELETE). Returns the bytes saved. Call with the run lock held and no connection open."""
    path = Path(path)
    before = path.stat().st_size
    tmp = path.with_name(path.name + ".compact")
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    try:
        name = con.execute("SELECT current_database()").fetchone()[0]
        con.execute(f"ATTACH '{_sql_path(tmp)}' AS compacted")
        con.execute(f'COPY FROM DATABASE "{name}" TO compacted')
        con.execute("DETACH compacted")
    except duckdb.Error as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"{path}: compacting failed: {exc}") from None
    finally:
        con.close()
    tmp.replace(path)
    path.with_name(path.name + ".wal").unlink(missing_ok=True)
    return before - path.stat().st_size


@dataclass(frozen=True)
class FeedState:
    feed_url: str
    etag: str | None
    last_modified: str | None
    consecutive_failures: int
    next_fetch_at: datetime | None = None
    last_entry_ids: tuple[str, ...] = ()


@contextmanager
def write_lock(path: str | Path, timeout: float) -> Iterator[None]:
    """Hold the run lock of the database at ``path``: one writing run at a time.

    A second run waits up to ``timeout`` seconds, then raises StoreError. The lock is a
    ``flock`` on ``<database>.lock``, which the kernel releases when a process dies, so a
    crashed run never leaves a stale lock behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "a+") as handle:
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreError(f"{path}: another aiwatch run is writing this database "
                                     f"(waited {timeout:g}s; set storage.lock_timeout to wait longer)") from None
                if not announced:
                    log.warning("%s: another aiwatch run is writing; waiting up to %gs", path, timeout)
                    announced = True
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def bulk_insert(con: duckdb.DuckDBPyConnection, sql: str, rows: Sequence[Sequence], types: Sequence[str]) -> None:
    """Run ``sql`` with ``{rows}`` standing for the rows, passed as one list per column and
    unnested in DuckDB: one statement for the lot (``executemany`` costs about 3 ms a row)."""
    if not rows:
        return
    select = "SELECT " + ", ".join(f"unnest(?::{t}[])" for t in types)
    con.execute(sql.format(rows=select), [list(col) for col in zip(*rows)])


class Store:
    """A DuckDB database holding everything aiwatch knows. Use as a context manager."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, read_only: bool):
        self.con = con
        self.path = path
        self.read_only = read_only

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, *, read_only: bool = False, lock_timeout: float = 0.0,
             migrations: Path | None = None) -> "Store":
        path = Path(path)
        if read_only and not path.exists():
            raise StoreError(f"{path}: no such database (run `aiwatch run` or `aiwatch demo` first)")
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + lock_timeout
        while True:
            try:
                con = duckdb.connect(str(path), read_only=read_only)
                break
            except duckdb.IOException as exc:
                if "lock" in str(exc).lower():
                    if time.monotonic() < deadline:
                        time.sleep(0.5)
                        continue
                    raise StoreError(f"{path}: the database is in use by another process "
                                     f"(waited {lock_timeout:g}s; a run writes only between its stages' "
                                     "short transactions, so retry in a moment)") from None
                raise StoreError(f"{path}: cannot open database: {exc}") from None
            except duckdb.Error as exc:
                raise StoreError(f"{path}: cannot open database: {exc}") from None
        store = cls(con, path, read_only)
        if not read_only:
            try:
                store.migrate(migrations)
            except Exception:
                con.close()
                raise
        return store

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.con.begin()
        try:
            yield self.con
        except BaseException:
            self.con.rollback()
            raise
        else:
            self.con.commit()

    def migrate(self, folder: Path | None = None) -> list[str]:
        """Apply pending migrations; refuse edited ones. Returns the names applied."""
        self.con.execute("CREATE SCHEMA IF NOT EXISTS core")
        self.con.execute("""CREATE TABLE IF NOT EXISTS core.migrations (
            version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, checksum VARCHAR NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp)""")
        applied = {v: (n, c) for v, n, c in
                   self.con.execute("SELECT version, name, checksum FROM core.migrations").fetchall()}
        done = []
        for version, name, sql in list_migrations(folder):
            checksum = hashlib.sha256(sql.encode("utf-8")).hexdigest()
            if version in applied:
                if applied[version][1] != checksum:
                    raise MigrationError(
                        f"{self.path}: migration {name} was edited after it was applied; "
                        "schema changes go in a new numbered file")
                continue
            try:
                with self.transaction() as con:
                    con.execute(sql)
                    con.execute("INSERT INTO core.migrations (version, name, checksum) VALUES (?, ?, ?)",
                                [version, name, checksum])
            except duckdb.Error as exc:
                raise MigrationError(f"{self.path}: migration {name} failed: {exc}") from None
            log.info("applied migration %s", name)
            done.append(name)
        return done

    @staticmethod
    def pending_migrations(path: Path) -> bool:
        """Whether the database at ``path`` lacks migrations this aiwatch has (read-only check)."""
        latest = max(v for v, _, _ in list_migrations())
        con = duckdb.connect(str(path), read_only=True)
        try:
            row = con.execute("SELECT max(version) FROM core.migrations").fetchone()
        except duckdb.Error:
            return True
        finally:
            con.close()
        return (row[0] or 0) < latest

    def schema_version(self) -> int:
        row = self.con.execute("SELECT max(version) FROM core.migrations").fetchone()
        return int(row[0] or 0)

    # -- feeds -------------------------------------------------------------------------

    def feed_states(self, urls: Sequence[str]) -> dict[str, FeedState]:
        if not urls:
            return {}
        rows = self.con.execute(
            "SELECT feed_url, etag, last_modified, consecutive_failures, next_fetch_at, last_entry_ids "
            "FROM core.feeds WHERE feed_url IN (SELECT unnest(?::VARCHAR[]))", [list(urls)]).fetchall()
        return {r[0]: FeedState(*r[:5], tuple(r[5] or ())) for r in rows}

    def record_feed_outcomes(self, outcomes: Iterable[FeedOutcome], names: dict[str, str | None],
                             now: datetime, backoff_hours: float = 12.0) -> None:
        """Record each fetch: health counters, conditional-GET validators, backoff, overlap.

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
                        last_overlap, last_new_at)
                    VALUES ($url, $name, $title, $etag, $lm, $status, $http, $now,
                            CASE WHEN $ok THEN $now END, CASE WHEN $ok THEN 0 ELSE 1 END, $error,
                            $warning, $entries, $now,
                            CASE WHEN $ok THEN NULL ELSE $now + to_seconds(CAST(round($backoff * 3600) AS BIGINT)) END,
                            $ids, $overlap, CASE WHEN $new > 0 THEN $now END)
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
                        last_new_at = CASE WHEN $new > 0 THEN $now ELSE f.last_new_at END
                    """, {
                    "url": o.feed_url, "name": names.get(o.feed_url), "title": o.title, "etag": o.etag,
                    "lm": o.last_modified, "status": o.status, "http": o.http_status, "now": now,
                    "ok": ok, "error": o.error, "warning": o.warning,
                    "entries": len(o.entries) if o.status == "ok" else None,
                    "backoff": float(backoff_hours),
                    "ids": [e.entry_id for e in o.entries] if o.status == "ok" else None,
                    "overlap": o.overlap, "new": o.new_entries,
                })

    # -- articles ----------------------------------------------------------------------

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

    def minhash_candidates(self, keys: Sequence[str]) -> dict[str, list[tuple[str, np.ndarray, datetime]]]:
        """For each LSH bucket key, the stored originals in it: (article_id, signature, time).
        One query for a whole batch of articles; the cost is the buckets' size, not the archive's."""
        if not keys:
            return {}
        rows = self.con.execute("""
            SELECT b.bucket, h.article_id, h.signature, coalesce(a.published_at, a.fetched_at) AS t
            FROM core.minhash_bands b JOIN core.minhash h USING (article_id)
            JOIN core.articles a USING (article_id)
            WHERE b.bucket IN (SELECT unnest(?::VARCHAR[])) AND a.duplicate_of IS NULL""", [list(keys)]).fetchall()
        out: dict[str, list] = {}
        for bucket, aid, sig, when in rows:
            out.setdefault(bucket, []).append((aid, np.asarray(sig, dtype=np.int64), when))
        return out

    def missing_embeddings(self, text_hashes: Sequence[str], model: str) -> list[str]:
        """Those of ``text_hashes`` with no vector by ``model`` yet."""
        if not text_hashes:
            return []
        rows = self.con.execute(
            "SELECT h FROM (SELECT unnest(?::VARCHAR[]) AS h) WHERE h NOT IN "
            "(SELECT text_hash FROM core.embeddings WHERE model = ? AND text_hash IN (SELECT unnest(?::VARCHAR[])))",
            [list(text_hashes), model, list(text_hashes)]).fetchall()
        return [r[0] for r in rows]

    def save_minhash(self, rows: Sequence[tuple[str, np.ndarray, list[str]]]) -> None:
        if rows:
            with self.transaction() as con:
                bulk_insert(con, "INSERT INTO core.minhash {rows} ON CONFLICT DO NOTHING",
                            [(aid, sig.tolist()) for aid, sig, _ in rows], ["VARCHAR", "BIGINT[]"])
                bulk_insert(con, "INSERT INTO core.minhash_bands {rows} ON CONFLICT DO NOTHING",
                            sorted({(k, aid) for aid, _, keys in rows for k in keys}), ["VARCHAR", "VARCHAR"])

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

    def save_articles(self, articles: Sequence[tuple[Article, str | None, Sequence[str]]],
                      passages: Sequence[Passage], run_id: str,
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
                "(SELECT unnest(?::VARCHAR[]))", [[a.article_id for a, _, _ in articles]]).fetchall()}
            new_rows, changed, seen = [], [], set()
            for art, duplicate_of, aliases in articles:
                if art.article_id in seen:
                    continue
                seen.add(art.article_id)
                if art.article_id not in old:
                    new_rows.append((art, duplicate_of))
                elif old[art.article_id] != (art.content_hash, art.title):
                    changed.append(art)
            cols = ("article_id", "url", "canonical_url", "feed_url", "entry_id", "title", "text", "text_source",
                    "author", "published_at", "fetched_at", "language", "content_hash", "duplicate_of", "outlet",
                    "page_error", "run_id", "date_source", "date_flags", "extractor", "extraction_notes",
                    "site_name")
            bulk_insert(con, f"INSERT INTO core.articles ({', '.join(cols)}) {{rows}}", [
                (a.article_id, a.url, a.canonical_url, a.feed_url, a.entry_id, a.title, a.text, a.text_source,
                 a.author, a.published_at, a.fetched_at, a.language, a.content_hash, dup, a.outlet, a.page_error,
                 run_id, a.date_source, list(a.date_flags), a.extractor, list(a.extraction_notes), a.site_name)
                for a, dup in new_rows],
                ["VARCHAR"] * 9 + ["TIMESTAMPTZ", "TIMESTAMPTZ"] + ["VARCHAR"] * 7 + ["VARCHAR[]", "VARCHAR",
                                                                                     "VARCHAR[]", "VARCHAR"])
            for art in changed:  # the feed edited an entry: rare, one at a time
                con.execute("""
                    UPDATE core.articles SET title = ?, text = ?, text_source = ?, author = ?,
                        published_at = coalesce(published_at, ?), language = ?, content_hash = ?,
                        page_error = ?, updated_at = ?, extractor = ?, extraction_notes = ?
                    WHERE article_id = ?""", [
                    art.title, art.text, art.text_source, art.author, art.published_at, art.language,
                    art.content_hash, art.page_error, art.fetched_at, art.extractor,
                    list(art.extraction_notes), art.article_id])
                con.execute("DELETE FROM core.passages WHERE article_id = ?", [art.article_id])
                con.execute("DELETE FROM core.scores WHERE article_id = ?", [art.article_id])
            written = [a for a, _ in new_rows] + changed
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
            entries = {(a.feed_url, a.entry_id): a.article_id for a, _, _ in articles}
            bulk_insert(con, """INSERT INTO core.entries_seen (feed_url, entry_id, article_id, entry_hash) {rows}
                                ON CONFLICT DO UPDATE SET entry_hash = excluded.entry_hash""",
                        [(f, e, aid, entry_hashes.get((f, e))) for (f, e), aid in entries.items()], ["VARCHAR"] * 4)
            aliases_of = {al: a.article_id for a, _, aliases in reversed(articles) for al in {a.canonical_url, *aliases}}
            bulk_insert(con, "INSERT INTO core.url_aliases {rows} ON CONFLICT DO NOTHING",
                        list(aliases_of.items()), ["VARCHAR", "VARCHAR"])

    def mark_entries_seen(self, rows: Sequence[tuple[str, str, str, str | None]]) -> None:
        """Record (feed_url, entry_id, article_id, entry_hash) rows without new articles."""
        if rows:
            with self.transaction() as con:
                unique = {(r[0], r[1]): r for r in rows}  # DO UPDATE refuses a key twice in one statement
                bulk_insert(con, """INSERT INTO core.entries_seen (feed_url, entry_id, article_id, entry_hash) {rows}
                                    ON CONFLICT DO UPDATE SET entry_hash = excluded.entry_hash""",
                            list(unique.values()), ["VARCHAR"] * 4)

    # -- embeddings --------------------------------------------------------------------

    def texts_without_embedding(self, model: str, limit: int | None = None) -> list[tuple[str, str]]:
        sql = """SELECT DISTINCT p.text_hash, p.text FROM core.passages p
                 JOIN core.articles a USING (article_id)
                 WHERE a.duplicate_of IS NULL AND NOT EXISTS (
                     SELECT 1 FROM core.embeddings e WHERE e.text_hash = p.text_hash AND e.model = ?)
                 ORDER BY p.text_hash"""
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [(r[0], r[1]) for r in self.con.execute(sql, [model]).fetchall()]

    def save_embeddings(self, hashes: Sequence[str], vectors: np.ndarray, model: str, now: datetime) -> None:
        """Insert vectors keyed by text hash; loads them as one flat array (no huge Python lists)."""
        if not len(hashes):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        # DuckDB scans these local numpy arrays by name (replacement scans); POSITIONAL JOIN
        # against range() keeps their order without building per-row Python lists.
        flat = vectors.ravel()  # noqa: F841
        keys = np.array(list(hashes), dtype=object)  # noqa: F841
        with self.transaction() as con:
            con.execute(f"""
                INSERT INTO core.embeddings (text_hash, model, vector, created_at)
                SELECT k.text_hash, ?, v.vec, ?
                FROM (SELECT pos // {dim} AS row_no, list(x ORDER BY pos)::FLOAT[{dim}] AS vec
                      FROM (SELECT range AS pos, flat.column0 AS x FROM range(?) POSITIONAL JOIN flat)
                      GROUP BY row_no) v
                JOIN (SELECT range AS row_no, keys.column0 AS text_hash FROM range(?) POSITIONAL JOIN keys) k
                  USING (row_no)
                ON CONFLICT DO NOTHING""", [model, now, n * dim, n])

    def embeddings_for(self, text_hashes: Sequence[str], model: str) -> dict[str, np.ndarray]:
        if not text_hashes:
            return {}
        res = self.con.execute(
            "SELECT text_hash, vector FROM core.embeddings WHERE model = ? AND text_hash IN "
            "(SELECT unnest(?::VARCHAR[]))", [model, list(set(text_hashes))]).fetchnumpy()
        return {h: np.asarray(v, dtype=np.float32) for h, v in zip(res["text_hash"], res["vector"])}

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

    def articles_to_score(self, theme: Theme, run_id: str | None = None) -> list[str]:
        sql = """SELECT a.article_id FROM core.articles a
                 WHERE a.duplicate_of IS NULL
                   AND EXISTS (SELECT 1 FROM core.passages p WHERE p.article_id = a.article_id)
                   AND NOT EXISTS (SELECT 1 FROM core.scores s WHERE s.article_id = a.article_id
                                   AND s.theme = ? AND s.theme_version = ?)
                 ORDER BY a.article_id"""
        return [r[0] for r in self.con.execute(sql, [theme.name, theme.version]).fetchall()]

    def passages_for(self, article_ids: Sequence[str]) -> list[tuple[str, int, str, str]]:
        if not article_ids:
            return []
        return self.con.execute(
            "SELECT article_id, passage_no, text, text_hash FROM core.passages "
            "WHERE article_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY article_id, passage_no",
            [list(article_ids)]).fetchall()

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

    # -- feedback and rescoring ----------------------------------------------------------

    def article_for_url(self, url: str) -> tuple[str, str] | None:
        """(article_id, title) of the article stored under ``url`` or one of its aliases."""
        from .urls import canonical_url
        row = self.con.execute(
            "SELECT a.article_id, a.title FROM core.url_aliases u JOIN core.articles a USING (article_id) "
            "WHERE u.canonical_url = ?", [canonical_url(url)]).fetchone()
        return (row[0], row[1]) if row else None

    def record_feedback(self, article_id: str, theme: str, relevant: bool, now: datetime) -> None:
        """Store a judgement and apply it at once to the article's scores for that theme."""
        with self.transaction() as con:
            con.execute("""INSERT INTO core.feedback VALUES (?, ?, ?, ?)
                           ON CONFLICT DO UPDATE SET relevant = excluded.relevant, given_at = excluded.given_at""",
                        [article_id, theme, relevant, now])
            con.execute("UPDATE core.scores SET flagged = ? WHERE article_id = ? AND theme = ?",
                        [relevant, article_id, theme])

    def feedback(self, theme: str | None = None) -> list[tuple[str, str, bool]]:
        sql = "SELECT article_id, theme, relevant FROM core.feedback"
        return self.con.execute(sql + (" WHERE theme = ?" if theme else ""), [theme] if theme else []).fetchall()

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

    def stored_pages(self, since: datetime | None = None) -> Iterator[tuple[str, str, str, bytes]]:
        """(article_id, url, content_type, html) of the stored raw pages, fetched since ``since``."""
        sql = "SELECT article_id, url, content_type, html_zlib FROM core.pages"
        params = []
        if since is not None:
            sql += " WHERE fetched_at >= ?"
            params.append(since)
        for aid, url, ctype, blob in self.con.execute(sql + " ORDER BY article_id", params).fetchall():
            yield aid, url, ctype or "", zlib.decompress(blob)

    def article_for_update(self, article_id: str) -> tuple | None:
        return self.con.execute("""SELECT url, canonical_url, feed_url, entry_id, title, text, text_source, author,
                                          published_at, fetched_at, language, outlet, page_error, date_source,
                                          date_flags FROM core.articles WHERE article_id = ?""",
                                [article_id]).fetchone()

    def ungrouped_articles(self, model: str) -> list[tuple[str, str, datetime, np.ndarray]]:
        """Originals not yet in a story, with their title + lead vector, oldest first."""
        rows = self.con.execute("""
            SELECT a.article_id, a.title, coalesce(a.published_at, a.fetched_at) AS t, e.vector
            FROM core.articles a
            JOIN core.passages p ON p.article_id = a.article_id AND p.passage_no = 0
            JOIN core.embeddings e ON e.text_hash = p.text_hash AND e.model = ?
            WHERE a.duplicate_of IS NULL
              AND NOT EXISTS (SELECT 1 FROM core.story_members m WHERE m.article_id = a.article_id)
            ORDER BY t, a.article_id""", [model]).fetchall()
        return [(r[0], r[1] or "", r[2], np.asarray(r[3], dtype=np.float32)) for r in rows]

    def story_seeds(self, start: datetime, end: datetime, model: str) -> list[tuple[str, str, datetime, np.ndarray]]:
        """The first articles of stories that began between ``start`` and ``end``."""
        rows = self.con.execute("""
            SELECT a.article_id, a.title, coalesce(a.published_at, a.fetched_at) AS t, e.vector
            FROM core.story_members m
            JOIN core.articles a ON a.article_id = m.article_id AND m.story_id = m.article_id
            JOIN core.passages p ON p.article_id = a.article_id AND p.passage_no = 0
            JOIN core.embeddings e ON e.text_hash = p.text_hash AND e.model = ?
            WHERE coalesce(a.published_at, a.fetched_at) BETWEEN ? AND ?""", [model, start, end]).fetchall()
        return [(r[0], r[1] or "", r[2], np.asarray(r[3], dtype=np.float32)) for r in rows]

    def save_story_members(self, rows: Sequence[tuple[str, str, float]]) -> None:
        if rows:
            with self.transaction() as con:
                bulk_insert(con, "INSERT INTO core.story_members {rows} ON CONFLICT DO NOTHING",
                            list({r[0]: r for r in rows}.values()), ["VARCHAR", "VARCHAR", "DOUBLE"])

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

    # -- runs --------------------------------------------------------------------------

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
                stats.feeds_deferred, stats.entries_seen, stats.articles_new, stats.articles_failed, stats.passages_embedded,
                stats.articles_scored, stats.flagged, error, json.dumps(stats.stage_seconds), stats.run_id])

    def record_run_timings(self, run_id: str, stage_seconds: dict[str, float], peak_rss_mb: float) -> None:
        with self.transaction() as con:
            con.execute("UPDATE core.runs SET stage_seconds = ?, peak_rss_mb = ? WHERE run_id = ?",
                        [json.dumps(stage_seconds), round(peak_rss_mb, 1), run_id])

    # -- the SQL surface -----------------------------------------------------------------

    def search(self, vector: np.ndarray, model: str, k: int = 10, theme: str | None = None,
               since: datetime | None = None) -> tuple[list[str], list[tuple]]:
        """Articles whose best passage is most similar to ``vector`` (cosine, in DuckDB).

        The nearest passages are found first by one scan of the vectors (a top-N, no join),
        and only those are joined to their articles and filtered. When the filters leave fewer
        than ``k`` articles, the pool grows tenfold, up to every vector. The result is exact:
        an article with no passage in the pool is no nearer than the pool's farthest passage.
        """
        where, params = ["a.duplicate_of IS NULL"], {"q": [float(x) for x in vector], "model": model, "k": k}
        if theme:
            where.append("a.article_id IN (SELECT article_id FROM matches WHERE theme = $theme)")
            params["theme"] = theme
        if since:
            where.append("coalesce(a.published_at, a.fetched_at) >= $since")
            params["since"] = since
        dim = len(vector)
        total = self.con.execute("SELECT count(*) FROM core.embeddings WHERE model = ?", [model]).fetchone()[0]
        pool = max(50 * k, 1000)
        while True:
            params["pool"] = pool
            cols, rows = self.query(f"""
                WITH near AS (
                    SELECT text_hash, array_cosine_similarity(vector, $q::FLOAT[{dim}]) AS sim
                    FROM core.embeddings WHERE model = $model
                    ORDER BY sim DESC LIMIT $pool),
                sims AS (
                    SELECT p.article_id, p.text, n.sim FROM near n JOIN core.passages p USING (text_hash))
                SELECT round(max(s.sim)::DOUBLE, 4) AS score, a.title,
                       CAST(coalesce(a.published_at, a.fetched_at) AS DATE) AS date, a.outlet, a.url,
                       arg_max(s.text, s.sim) AS passage
                FROM sims s JOIN core.articles a USING (article_id)
                WHERE {" AND ".join(where)}
                GROUP BY a.article_id, a.title, a.published_at, a.fetched_at, a.outlet, a.url
                ORDER BY score DESC, a.url LIMIT $k""", params)
            if len(rows) >= k or pool >= total:
                return cols, rows
            pool *= 10

    def embedding_models(self) -> dict[str, int]:
        """How many stored vectors each model id made."""
        return dict(self.con.execute(
            "SELECT model, count(*) FROM core.embeddings GROUP BY model ORDER BY model").fetchall())

    def check_model(self, model: str) -> None:
        """Refuse to work with ``model`` on a database whose vectors another model id made:
        vectors of two backends are close but not comparable, so they are never mixed."""
        others = {m: n for m, n in self.embedding_models().items() if m != model}
        if others:
            made = ", ".join(f"{n} by {m}" for m, n in others.items())
            backend = model.rsplit("/", 1)[-1]
            raise AiwatchError(
                f"{self.path}: its vectors were made by another embedding backend ({made}); "
                f"embed.backend = {backend!r} would mix {model} vectors with them. Set embed.backend "
                f"back, or run `aiwatch reembed` to embed the stored articles again with {backend}")

    def drop_other_models(self, model: str) -> int:
        """Delete every vector not made by ``model`` (after a re-embed); returns how many."""
        with self.transaction() as con:
            return con.execute("DELETE FROM core.embeddings WHERE model <> ?", [model]).fetchone()[0]

    def export_parquet(self, folder: Path) -> list[Path]:
        """Write the public views to Parquet; articles and matches partitioned by year and month."""
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for view, when in (("articles", "fetched_at"), ("matches", "flagged_at")):
            target = folder / view
            self.con.execute(f"""
                COPY (SELECT *, year({when}) AS year, month({when}) AS month FROM {view})
                TO '{_sql_path(target)}' (FORMAT parquet, PARTITION_BY (year, month), OVERWRITE_OR_IGNORE)""")
            written.append(target)
        for view in ("runs", "feed_health", "stories", "theme_daily"):
            target = folder / f"{view}.parquet"
            self.con.execute(f"COPY (SELECT * FROM {view}) TO '{_sql_path(target)}' (FORMAT parquet)")
            written.append(target)
        return written

    def prune(self, cutoff: datetime) -> dict[str, int]:
        """Delete articles fetched before ``cutoff`` with their passages, scores and vectors.

        What was seen (entries_seen, url_aliases) is kept, so pruned items are not fetched again.
        Stored raw HTML (when there is any) goes first, before the articles themselves.
        """
        counts = {}
        with self.transaction() as con:
            has_pages = con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'core' "
                                    "AND table_name = 'pages'").fetchone()[0]
            if has_pages:
                counts["raw_pages"] = con.execute("DELETE FROM core.pages WHERE article_id IN "
                                                  "(SELECT article_id FROM core.articles WHERE fetched_at < ?)",
                                                  [cutoff]).fetchone()[0]
            old = "(SELECT article_id FROM core.articles WHERE fetched_at < $cutoff)"
            for table in ("minhash", "minhash_bands", "story_members"):
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

    def query(self, sql: str, params: Sequence | dict | None = None) -> tuple[list[str], list[tuple]]:
        cur = self.con.execute(sql, params or [])
        cols = [d[0] for d in cur.description] if cur.description else []
        return cols, cur.fetchall()

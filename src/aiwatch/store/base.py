"""Opening the DuckDB file, transactions, bulk inserts and the numbered schema migrations.

DuckDB errors never leave the store package as such: a file held by another process becomes
:class:`StoreBusy`, an I/O failure a transient :class:`StoreError`, so that the flow and the
command line decide what to retry and what to say without importing duckdb.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Iterator, Sequence

import duckdb

from ..errors import AiwatchError, MigrationError, StoreBusy, StoreError

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def migrations_dir() -> Path:
    """sql/ inside an installed package, else the repository's top-level sql/."""
    packaged = resources.files("aiwatch").joinpath("sql")
    if packaged.is_dir():
        return Path(str(packaged))
    repo = Path(__file__).resolve().parents[3] / "sql"
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


def named_query(name: str) -> str | None:
    """The text of ``sql/queries/<name>.sql``, or None when there is no such named query."""
    path = migrations_dir() / "queries" / f"{name}.sql"
    return path.read_text("utf-8") if path.is_file() else None


def sql_literal(path: Path) -> str:
    return str(path).replace("'", "''")


def bulk_insert(con: duckdb.DuckDBPyConnection, sql: str, rows: Sequence[Sequence], types: Sequence[str]) -> None:
    """Run ``sql`` with ``{rows}`` standing for the rows, passed as one list per column and
    unnested in DuckDB: one statement for the lot (``executemany`` costs about 3 ms a row)."""
    if not rows:
        return
    select = "SELECT " + ", ".join(f"unnest(?::{t}[])" for t in types)
    con.execute(sql.format(rows=select), [list(col) for col in zip(*rows)])


# The file format: what DuckDB 1.1 and later (the CLIs and libraries users open it with) read.
# DuckDB 2 writes its own, newer format unless told otherwise, which no 1.x release can open.
STORAGE_VERSION = "v1.1.0"

# A user's own SQL (`aiwatch query`) reads the database and nothing else: no files read or
# written (COPY ... TO, read_csv, EXPORT, ATTACH), no extensions installed or loaded, and the
# settings cannot be turned back on from SQL.
SANDBOX = {"enable_external_access": False, "autoinstall_known_extensions": False,
           "autoload_known_extensions": False, "lock_configuration": True}


def _connect(path: Path, read_only: bool, lock_timeout: float, sandbox: bool = False) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + lock_timeout
    while True:
        try:
            config = SANDBOX if sandbox else {} if read_only else {"storage_compatibility_version": STORAGE_VERSION}
            return duckdb.connect(str(path), read_only=read_only, config=config)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise StoreError(f"{path}: cannot open database: {exc}") from None
            if time.monotonic() < deadline:
                time.sleep(0.5)
                continue
            m = re.search(r"held in (\S+) \(PID (\d+)\)", str(exc))
            holder = f"{Path(m.group(1)).name}, PID {m.group(2)}" if m else "another process"
            raise StoreBusy(f"{path}: the database is in use by {holder} (waited {lock_timeout:g}s). "
                            + ("A run writes only between short transactions: retry in a moment"
                               if read_only else "A connection left open (a notebook, a duckdb shell) keeps "
                               "runs out: close it, or query a copy of the file")) from None
        except duckdb.Error as exc:
            raise StoreError(f"{path}: cannot open database: {exc}") from None


class StoreBase:
    """A connection to the database file, with transactions and migrations."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, read_only: bool):
        self.con = con
        self.path = path
        self.read_only = read_only

    @classmethod
    def open(cls, path: str | Path, *, read_only: bool = False, lock_timeout: float = 0.0,
             migrations: Path | None = None, sandbox: bool = False):
        """Open the database at ``path`` (created and migrated when writing), waiting up to
        ``lock_timeout`` seconds for another process that holds it; ``sandbox`` (read-only) lets
        SQL read this database and nothing else (see SANDBOX)."""
        path = Path(path)
        if read_only and not path.exists():
            raise StoreError(f"{path}: no such database (run `aiwatch run` or `aiwatch demo` first)")
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        store = cls(_connect(path, read_only, lock_timeout, sandbox and read_only), path, read_only)
        if not read_only:
            try:
                store.migrate(migrations)
            except Exception:
                store.close()
                raise
        return store

    @classmethod
    def open_for_reading(cls, path: str | Path, lock_timeout: float = 10.0, sandbox: bool = False):
        """A read-only connection; a database made by an older aiwatch is migrated first."""
        path = Path(path)
        if path.exists() and _pending_migrations(path):
            cls.open(path, lock_timeout=lock_timeout).close()
        return cls.open(path, read_only=True, lock_timeout=lock_timeout, sandbox=sandbox)

    def close(self) -> None:
        self.con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.con.begin()
        try:
            yield self.con
        except duckdb.IOException as exc:
            self.con.rollback()
            raise StoreError(f"{self.path}: {exc}", transient=True) from None
        except BaseException:
            self.con.rollback()
            raise
        else:
            self.con.commit()

    def cursor(self):
        """Another handle on the same connection, for a worker thread."""
        return type(self)(self.con.cursor(), self.path, self.read_only)

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

    def schema_version(self) -> int:
        row = self.con.execute("SELECT max(version) FROM core.migrations").fetchone()
        return int(row[0] or 0)

    def count(self, table: str) -> int:
        """Rows of a table or view (``core.articles``, ``matches``)."""
        if not re.fullmatch(r"[a-z_]+(\.[a-z_]+)?", table):
            raise ValueError(f"not a table name: {table!r}")
        return self.con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    def query(self, sql: str, params: Sequence | dict | None = None) -> tuple[list[str], list[tuple]]:
        """Run a user's SQL (``aiwatch query``); a failing query is an AiwatchError."""
        try:
            cur = self.con.execute(sql, params or [])
            cols = [d[0] for d in cur.description] if cur.description else []
            return cols, cur.fetchall()
        except duckdb.Error as exc:
            raise AiwatchError(f"query failed: {str(exc).splitlines()[0]}") from None


def _pending_migrations(path: Path) -> bool:
    """Whether the database at ``path`` lacks migrations this aiwatch has (read-only check;
    False when a writer holds the file: the read-only open then waits and explains)."""
    latest = max(v for v, _, _ in list_migrations())
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return False
    try:
        row = con.execute("SELECT max(version) FROM core.migrations").fetchone()
    except duckdb.Error:
        return True
    finally:
        con.close()
    return (row[0] or 0) < latest


def compact(path: Path) -> int:
    """Rewrite the database file without its free space (DuckDB does not shrink files on
    DELETE), in the STORAGE_VERSION format (a file written by an older aiwatch on DuckDB 2's own
    format becomes readable by DuckDB 1.x). Returns the bytes saved. Call with the run lock
    held and no connection open."""
    path = Path(path)
    before = path.stat().st_size
    tmp = path.with_name(path.name + ".compact")
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(path), config={"storage_compatibility_version": STORAGE_VERSION})
    try:
        name = con.execute("SELECT current_database()").fetchone()[0]
        con.execute(f"ATTACH '{sql_literal(tmp)}' AS compacted (STORAGE_VERSION '{STORAGE_VERSION}')")
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

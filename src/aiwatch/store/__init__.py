"""The only package that talks to DuckDB: every query aiwatch runs is a method here.

Every write is an idempotent upsert keyed by a deterministic hash, so a run repeated or
resumed after a crash leaves the same rows. The schema comes from the numbered files in
``sql/``, applied in order inside a transaction and recorded in ``core.migrations``; a
migration edited after it was applied is refused.

:class:`Store` is one connection, its methods grouped by area: feeds, articles, vectors,
scores (themes, judgements, stories), runs, reports (digests, deliveries, exports) and review
(what the web app reads and writes).
"""

from __future__ import annotations

from .articles import ArticlesMixin
from .base import StoreBase, bulk_insert, compact, list_migrations, migrations_dir, named_query
from .feeds import FeedsMixin
from .lock import write_lock
from .reports import ReportsMixin
from .review import ReviewMixin
from .runs import RunsMixin
from .scores import ScoresMixin
from .vectors import VectorsMixin


class Store(FeedsMixin, ArticlesMixin, VectorsMixin, ScoresMixin, RunsMixin, ReportsMixin, ReviewMixin,
            StoreBase):
    """A DuckDB database holding everything aiwatch knows. Use as a context manager."""



STORE_WAIT = 60.0  # a stage waits this long for a reader (e.g. `aiwatch query`) to let go


def open_store(config) -> Store:
    """The database of ``config``, open for writing (waiting up to STORE_WAIT for readers)."""
    return Store.open(config.database, lock_timeout=STORE_WAIT)


__all__ = ["STORE_WAIT", "Store", "bulk_insert", "compact", "list_migrations", "migrations_dir", "named_query",
           "open_store", "write_lock"]

"""One tree of errors, each carrying the context a user needs to act on it."""

from __future__ import annotations


class AiwatchError(Exception):
    """Base class for every error aiwatch raises on purpose.

    ``str(err)`` is a one-line message fit for a user: it names what was wrong
    (a config key, a feed, a URL) and why.
    """


class ConfigError(AiwatchError):
    """The configuration is unusable; names the offending key."""

    def __init__(self, key: str, problem: str):
        self.key = key
        self.problem = problem
        super().__init__(f"config: {key}: {problem}")


class FetchError(AiwatchError):
    """A URL could not be fetched (network, HTTP status, size, timeout, policy).

    ``retry_after`` is the wait in seconds a server asked for (``Retry-After``), if any.
    """

    def __init__(self, url: str, reason: str, *, status: int | None = None, transient: bool = False,
                 retry_after: float | None = None):
        self.url = url
        self.reason = reason
        self.status = status
        self.transient = transient
        self.retry_after = retry_after
        super().__init__(f"{url}: {reason}")


class BlockedURLError(FetchError):
    """The URL is refused by policy (scheme, private address) before any request."""


class FeedError(AiwatchError):
    """A feed was fetched but yields nothing usable."""

    def __init__(self, url: str, reason: str):
        self.url = url
        self.reason = reason
        super().__init__(f"{url}: {reason}")


class StoreError(AiwatchError):
    """The database cannot be opened, migrated, locked or written.

    ``transient``: the same call may succeed later (the file is busy, or an I/O error), so the
    flow retries a stage that failed with it.
    """

    def __init__(self, message: str, *, transient: bool = False):
        self.transient = transient
        super().__init__(message)


class StoreBusy(StoreError):
    """Another process holds the database (a writing run, or a reader a writer waits for)."""

    def __init__(self, message: str):
        super().__init__(message, transient=True)


class MigrationError(StoreError):
    """An applied migration was edited, or a migration failed to apply."""

"""robots.txt for article pages, fetched once per host per run, read by protego (RFC 9309).

protego implements the standard's matching: ``*`` and ``$`` in paths, and the longest matching
rule wins, so ``Allow: /news/public/`` after ``Disallow: /news/`` allows what it says. (The
standard library's parser does neither.)
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import urlsplit

from protego import Protego

from ..errors import BlockedURLError, FetchError
from ..http import HttpClient

log = logging.getLogger(__name__)

AGENT = "aiwatch"


class RobotsPolicy:
    """Answers whether aiwatch may fetch a URL. One instance per run: the cache is per run.

    A robots.txt that is missing or refused with a 4xx allows everything; one that cannot be
    fetched (5xx, network error) disallows everything on that host for this run, as RFC 9309
    asks. The feed's own text is used for pages that are not allowed.
    """

    def __init__(self, client: HttpClient):
        self._client = client
        self._cache: dict[str, Protego | bool | BlockedURLError] = {}
        self._lock = threading.Lock()
        self._host_locks: dict[str, threading.Lock] = {}

    def _rules(self, origin: str) -> Protego | bool | BlockedURLError:
        with self._lock:
            host_lock = self._host_locks.setdefault(origin, threading.Lock())
        with host_lock:  # fetch each host's robots.txt once, even with many threads asking
            if origin in self._cache:
                return self._cache[origin]
            rules: Protego | bool | BlockedURLError
            try:
                fetched = self._client.fetch(origin + "/robots.txt")
                rules = Protego.parse(fetched.content.decode("utf-8", errors="replace"))
            except BlockedURLError as exc:
                rules = exc  # the host itself is refused: that is the page's failure, not robots.txt's
            except FetchError as exc:
                if exc.status is not None and 400 <= exc.status < 500:
                    rules = True  # no robots.txt: everything allowed
                else:
                    log.info("robots.txt of %s unavailable (%s): not fetching its pages this run",
                             origin, exc.reason)
                    rules = False
            self._cache[origin] = rules
            return rules

    def allowed(self, url: str) -> bool:
        """Whether robots.txt lets aiwatch fetch ``url``; BlockedURLError when the host itself is
        refused (a private address, a scheme other than http and https)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise BlockedURLError(url, f"scheme {parts.scheme or '(none)'!r} is not allowed, only http and https")
        rules = self._rules(f"{parts.scheme}://{parts.netloc}")
        if isinstance(rules, BlockedURLError):
            raise BlockedURLError(url, rules.reason)
        if isinstance(rules, bool):
            return rules
        return rules.can_fetch(url, AGENT)

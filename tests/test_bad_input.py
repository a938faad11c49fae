"""Bad and odd responses from a real local server: each is a one-line, recorded failure."""

from __future__ import annotations

import gzip

import pytest
from conftest import local_config
from routes import Response, page, rss

from aiwatch.errors import BlockedURLError, FetchError
from aiwatch.http import HttpClient
from aiwatch.pipeline import run_pipeline
from aiwatch.store import Store


def client(**kw) -> HttpClient:
    opts = dict(timeout=2.0, max_bytes=200_000, allow_private=True, backoff=0.01, retries=2)
    opts.update(kw)
    return HttpClient(**opts)


def test_404_is_permanent_and_not_retried(route_server):
    url = route_server.add("/gone", Response(404, b"no"))
    with client() as c, pytest.raises(FetchError) as err:
        c.fetch(url)
    assert err.value.status == 404 and not err.value.transient
    assert route_server.hits["/gone"] == 1
    assert str(err.value) == f"{url}: HTTP 404"


def test_503_then_200_is_retried(route_server):
    url = route_server.add("/flaky", Response(503, b"busy"), Response(200, b"fine"))
    with client() as c:
        assert c.fetch(url).content == b"fine"
    assert route_server.hits["/flaky"] == 2


def test_429_honours_retry_after(route_server):
    waits = []
    url = route_server.add("/limited", Response(429, b"", {"Retry-After": "3"}), Response(200, b"ok"))
    with client(sleep=waits.append) as c:
        assert c.fetch(url).content == b"ok"
    assert waits and waits[0] >= 3


def test_slow_response_times_out(route_server):
    url = route_server.add("/slow", Response(200, b"x" * 2000, drip=0.2))
    with client(timeout=0.5, retries=0) as c, pytest.raises(FetchError, match="took longer|timed out"):
        c.fetch(url)


def test_oversize_body_is_refused(route_server):
    url = route_server.add("/big", Response(200, b"x" * 300_000))
    with client() as c, pytest.raises(FetchError, match="cap"):
        c.fetch(url)


def test_gzip_bomb_stops_at_the_cap(route_server):
    bomb = gzip.compress(b"\0" * 50_000_000)
    url = route_server.add("/bomb", Response(200, bomb, {"Content-Encoding": "gzip"}))
    assert len(bomb) < 200_000
    with client() as c, pytest.raises(FetchError, match="cap"):
        c.fetch(url)


def test_redirects_followed_and_loops_detected(route_server):
    route_server.add("/a", Response(302, b"", {"Location": "/b"}))
    route_server.add("/b", Response(301, b"", {"Location": route_server.url("/c")}))
    route_server.add("/c", Response(200, b"end"))
    route_server.add("/loop1", Response(302, b"", {"Location": "/loop2"}))
    route_server.add("/loop2", Response(302, b"", {"Location": "/loop1"}))
    with client() as c:
        got = c.fetch(route_server.url("/a"))
        assert got.content == b"end" and got.url.endswith("/c")
        with pytest.raises(FetchError, match="loop"):
            c.fetch(route_server.url("/loop1"))


def test_private_addresses_and_other_schemes_refused(route_server):
    url = route_server.add("/x", Response(200, b"secret"))
    with client(allow_private=False) as c:
        with pytest.raises(BlockedURLError, match="private address"):
            c.fetch(url)
        with pytest.raises(BlockedURLError, match="scheme"):
            c.fetch("file:///etc/passwd")
        with pytest.raises(BlockedURLError):
            c.fetch("http://169.254.169.254/latest/meta-data/")
    assert route_server.hits["/x"] == 0


def test_conditional_get_sends_etag_only(route_server):
    url = route_server.add("/feed", Response(304, b""))
    with client() as c:
        assert c.fetch(url, etag='"abc"', last_modified="Tue, 17 Nov 2026 08:00:00 GMT").not_modified
    sent = route_server.request_headers["/feed"][0]
    assert sent["if-none-match"] == '"abc"' and "if-modified-since" not in sent
    assert sent["user-agent"].startswith("aiwatch/")


LONG = ("Officials said the new licence requirement covers advanced accelerators and memory. " * 12).strip()


def test_pipeline_records_each_bad_input_and_goes_on(route_server, tmp_path, embedder):
    items = [
        {"title": "Good story", "link": route_server.url("/good.html"), "guid": "g",
         "description": "A good story."},
        {"title": "Slow page", "link": route_server.url("/slow.html"), "guid": "s", "description": "Slow one."},
        {"title": "Huge page", "link": route_server.url("/huge.html"), "guid": "h", "description": "Huge one."},
        {"title": "Broken server", "link": route_server.url("/500.html"), "guid": "e",
         "description": "Server error."},
        {"title": "Empty page", "link": route_server.url("/empty.html"), "guid": "m",
         "description": "Nothing in it."},
    ]
    route_server.add("/feed.xml", Response(200, rss(items), {"Content-Type": "application/rss+xml"}))
    route_server.add("/good.html", Response(200, page("Good story", [LONG, LONG])))
    route_server.add("/slow.html", Response(200, page("Slow page", [LONG]), delay=3))
    route_server.add("/huge.html", Response(200, b"<html>" + b"x" * 300_000 + b"</html>"))
    route_server.add("/500.html", Response(500, b"oops"))
    route_server.add("/empty.html", Response(200, b"<html><body></body></html>"))
    feeds = [{"url": route_server.url("/feed.xml"), "name": "Route feed"},
             {"url": "http://127.0.0.1:9/unreachable.xml", "name": "Nowhere"},
             {"url": route_server.url("/missing.xml"), "name": "Missing"}]
    config = local_config(tmp_path / "db.duckdb", feeds, **{"fetch.timeout": 1.0, "fetch.max_bytes": 200_000})
    result = run_pipeline(config)
    assert result.status == "partial"
    assert result.stats.feeds_failed == 2 and result.stats.articles_new == 5
    with Store.open(config.database, read_only=True) as store:
        failures = {url: (stage, err) for stage, url, err in
                    store.query("SELECT stage, url, error FROM core.failures")[1]}
        sources = dict(store.query("SELECT title, text_source FROM articles")[1])
    assert "cannot connect" in failures["http://127.0.0.1:9/unreachable.xml"][1]
    assert failures[route_server.url("/missing.xml")][1] == "HTTP 404"
    assert "took longer" in failures[route_server.url("/slow.html")][1] or \
        "timed out" in failures[route_server.url("/slow.html")][1]
    assert "cap" in failures[route_server.url("/huge.html")][1]
    assert failures[route_server.url("/500.html")][1] == "HTTP 500"
    assert failures[route_server.url("/empty.html")][0] == "extract"
    assert sources["Good story"] == "page"
    assert sources["Slow page"] == "feed"  # nothing is lost: the feed's text is kept
    assert all("\n" not in err for _, err in failures.values())


def test_every_feed_failing_marks_the_run_failed(tmp_path):
    config = local_config(tmp_path / "db.duckdb", [{"url": "http://127.0.0.1:9/a.xml"}])
    result = run_pipeline(config)
    assert result.status == "failed" and result.all_feeds_failed
    with Store.open(config.database, read_only=True) as store:
        assert store.query("SELECT status FROM runs")[1] == [("failed",)]
        assert store.query("SELECT consecutive_failures FROM feed_health")[1] == [(1,)]

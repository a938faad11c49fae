"""Feed operations: backoff, overlap, edits between runs, robots.txt, politeness, adding feeds."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from conftest import local_config
from routes import Response, page, rss

from aiwatch.cli import main
from aiwatch.config import FeedSpec, load_config
from aiwatch.report.digest import feed_health_report
from aiwatch.errors import AiwatchError, BlockedURLError, ConfigError, FetchError
from aiwatch.http import HostGate, HttpClient
from aiwatch.articles.stage import fetch_articles
from aiwatch.ingest.robots import RobotsPolicy
from aiwatch.ingest.stage import fetch_feeds
from aiwatch.pipeline import run_pipeline, start_run
from aiwatch.store import Store
from aiwatch.ingest.subscriptions import parse_opml, render_opml

T0 = datetime(2026, 11, 20, 7, 0, tzinfo=timezone.utc)
TEXT = ("The ministry said the licence requirement for advanced accelerators and memory would apply "
        "from next month, and that exporters must file detailed end-user statements. ") * 6


def _health(config):
    with Store.open(config.database, read_only=True) as store:
        cols, rows = store.query("SELECT * FROM feed_health")
    return {r[0]: dict(zip(cols, r)) for r in rows}


def test_failing_feed_backs_off_but_is_never_dropped(route_server, tmp_path):
    url = route_server.add("/feed.xml", Response(500, b"down"))
    config = local_config(tmp_path / "db.duckdb", [{"url": url}])
    run_id = start_run(config, T0)
    expected_waits = [12, 24, 48, 96, 168, 168]  # hours: doubling, capped at a week
    now = T0
    for k, wait in enumerate(expected_waits, start=1):
        result = fetch_feeds(config, run_id, now)
        assert result.count("failed") == 1
        h = _health(config)[url]
        assert h["consecutive_failures"] == k
        assert h["next_fetch_at"] == now + timedelta(hours=wait)
        # before it is due the feed is skipped, not fetched and not counted as a failure
        hits = route_server.hits["/feed.xml"]
        assert fetch_feeds(config, run_id, now + timedelta(hours=wait - 2)).count("deferred") == 1
        assert route_server.hits["/feed.xml"] == hits
        now = now + timedelta(hours=wait)
    # it comes back and recovers by itself
    route_server.add("/feed.xml", Response(200, rss([{"title": "Back", "link": "http://x.example/1",
                                                      "guid": "1"}])))
    assert fetch_feeds(config, run_id, now).count("ok") == 1
    h = _health(config)[url]
    assert h["consecutive_failures"] == 0 and h["next_fetch_at"] is None and h["recovered_at"] == now
    with Store.open(config.database) as store:
        report = feed_health_report(store, config, now, now)
    assert [f.feed_url for f in report.recovered] == [url] and not report.failing


def test_full_feed_with_no_overlap_warns(route_server, tmp_path):
    first = [{"title": f"Item {i}", "link": f"http://x.example/{i}", "guid": str(i)} for i in range(3)]
    later = [{"title": f"Item {i}", "link": f"http://x.example/{i}", "guid": str(i)} for i in range(10, 13)]
    url = route_server.add("/feed.xml", Response(200, rss(first)), Response(200, rss(later)))
    config = local_config(tmp_path / "db.duckdb", [{"url": url}], **{"fetch.articles": False})
    run_id = start_run(config, T0)
    fetch_feeds(config, run_id, T0)
    assert _health(config)[url]["last_warning"] is None
    result = fetch_feeds(config, run_id, T0 + timedelta(days=1))
    h = _health(config)[url]
    assert h["last_overlap"] == 0.0 and "probably missed" in h["last_warning"]
    assert len(result.new_entries) == 3


def test_feed_changing_between_runs_adds_new_and_updates_edited(route_server, tmp_path, embedder):
    def items(edited: bool, extra: bool):
        out = [{"title": "Licence rule for chip tools", "link": route_server.url("/a.html"), "guid": "a",
                "description": "First version." if not edited else "Second version, with a correction."},
               {"title": "Unrelated sports result", "link": route_server.url("/b.html"), "guid": "b",
                "description": "A match report."}]
        if extra:
            out.append({"title": "Third story", "link": route_server.url("/c.html"), "guid": "c",
                        "description": "A new item."})
        return rss(out)

    url = route_server.add("/feed.xml", Response(200, items(False, False)))
    route_server.add("/a.html", Response(200, page("Licence rule for chip tools", [TEXT])))
    route_server.add("/b.html", Response(200, page("Unrelated sports result", ["The home side won. " * 30])))
    route_server.add("/c.html", Response(200, page("Third story", ["Something else happened. " * 30])))
    config = local_config(tmp_path / "db.duckdb", [{"url": url}])
    first = run_pipeline(config)
    assert first.stats.articles_new == 2
    with Store.open(config.database, read_only=True) as store:
        scores_before = store.query("SELECT count(*) FROM core.scores")[1][0][0]
    route_server.add("/feed.xml", Response(200, items(True, True)))
    route_server.add("/a.html", Response(200, page("Licence rule for chip tools, corrected", [TEXT, TEXT[:200]])))
    second = run_pipeline(config)
    assert second.stats.articles_new == 2  # one new article, one edited article re-processed
    with Store.open(config.database, read_only=True) as store:
        rows = store.query("SELECT title, updated_at FROM articles ORDER BY url")[1]
        assert len(rows) == 3  # nothing duplicated
        assert rows[0][1] is not None and rows[1][1] is None and rows[2][1] is None
        # the edited article was re-scored once per theme, the unchanged one was not touched
        assert store.query("SELECT count(*) FROM core.scores")[1][0][0] == scores_before + 3
        assert store.query("SELECT count(DISTINCT article_id) FROM core.passages")[1][0][0] == 3
    assert run_pipeline(config).stats.articles_new == 0


def test_robots_txt_disallowed_page_keeps_feed_text(route_server, tmp_path, embedder):
    route_server.add("/robots.txt", Response(200, b"User-agent: *\nDisallow: /private/\n"))
    items = [{"title": "Private page", "link": route_server.url("/private/p.html"), "guid": "p",
              "description": "What the feed says about the private page."},
             {"title": "Public page", "link": route_server.url("/public/q.html"), "guid": "q",
              "description": "What the feed says about the public page."}]
    url = route_server.add("/feed.xml", Response(200, rss(items)))
    route_server.add("/private/p.html", Response(200, page("Private page", [TEXT])))
    route_server.add("/public/q.html", Response(200, page("Public page", [TEXT])))
    config = local_config(tmp_path / "db.duckdb", [{"url": url}])
    run_pipeline(config)
    assert route_server.hits["/private/p.html"] == 0 and route_server.hits["/public/q.html"] == 1
    assert route_server.hits["/robots.txt"] == 1  # cached per host per run
    with Store.open(config.database, read_only=True) as store:
        rows = dict((t, (s, e)) for t, s, e in store.query(
            "SELECT a.title, a.text_source, c.page_error FROM articles a JOIN core.articles c USING (article_id)")[1])
    assert rows["Private page"][0] == "feed" and "robots.txt" in rows["Private page"][1]
    assert rows["Public page"][0] == "page"


def test_robots_txt_wildcards_and_longest_match(route_server):
    """RFC 9309: `*` and `$` in paths, and the longest matching rule wins (the standard library's
    parser got both wrong: `/*.pdf$` blocked nothing, and the Allow below was refused)."""
    route_server.add("/robots.txt", Response(200, b"User-agent: *\nDisallow: /*.pdf$\nDisallow: /news/\n"
                                                  b"Allow: /news/public/\n"))
    with HttpClient(allow_private=True) as client:
        robots = RobotsPolicy(client)
        allowed = {path: robots.allowed(route_server.url(path))
                   for path in ("/report.pdf", "/report.pdf?x=1", "/report.pdfs", "/news/a", "/news/public/b", "/c")}
    assert allowed == {"/report.pdf": False, "/report.pdf?x=1": True, "/report.pdfs": True, "/news/a": False,
                       "/news/public/b": True, "/c": True}
    assert route_server.hits["/robots.txt"] == 1


def test_truncated_body_is_a_recorded_failure(route_server):
    url = route_server.add("/cut", Response(200, b"<rss>" + b"x" * 100, declared_length=5000))
    with HttpClient(allow_private=True, retries=0, timeout=3) as c, pytest.raises(FetchError) as err:
        c.fetch(url)
    assert "broke off" in err.value.reason or "timed out" in err.value.reason


def test_redirect_to_a_private_address_is_refused(route_server):
    start = route_server.add("/go", Response(302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"}))
    host = start.split("/")[2]
    with HttpClient(allow_private=False, allowed_hosts=frozenset({host}), retries=0) as c:
        with pytest.raises(BlockedURLError, match="169.254.169.254"):
            c.fetch(start)
    assert route_server.hits["/go"] == 1


def test_per_host_limits_concurrency(route_server):
    urls = [route_server.add(f"/p{i}", Response(200, b"ok", delay=0.2)) for i in range(6)]
    with HttpClient(allow_private=True, per_host=2, host_delay=0) as c:
        threads = [threading.Thread(target=c.fetch, args=(u,)) for u in urls]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert route_server.peak_in_flight == 2 and sum(route_server.hits.values()) == 6


def test_per_host_spacing_with_an_injected_clock():
    now, starts = [100.0], []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    gate = HostGate(limit=2, delay=0.25, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        with gate:
            starts.append(now[0])
    assert [round(b - a, 6) for a, b in zip(starts, starts[1:])] == [0.25] * 4  # requests start delay apart


def test_feeds_add_discovers_a_site_feed(route_server, tmp_path, capsys):
    feed = route_server.add("/news/feed.xml", Response(200, rss([{"title": "One", "link": "http://x.example/1"}],
                                                                title="Example News")))
    site = route_server.add("/news/", Response(200, b'<html><head><link rel="alternate" '
                                                      b'type="application/rss+xml" href="feed.xml"></head>'
                                                      b'<body>Hello</body></html>', {"Content-Type": "text/html"}))
    cfg = tmp_path / "aiwatch.toml"
    cfg.write_text('[fetch]\nallow_private_addresses = true\n\n[[feeds]]\nurl = "https://example.com/a.xml"\n')
    assert main(["feeds", "add", site, "--config", str(cfg)]) == 0
    feeds = load_config(cfg).feeds
    assert feeds == (FeedSpec("https://example.com/a.xml"), FeedSpec(feed, "Example News"))
    assert main(["feeds", "add", feed, "--config", str(cfg)]) == 0  # already there: not added twice
    assert len(load_config(cfg).feeds) == 2
    assert "already" in capsys.readouterr().out


def test_feeds_add_refuses_a_page_without_feeds(route_server, tmp_path, capsys):
    site = route_server.add("/plain", Response(200, b"<html><body>No feeds here</body></html>",
                                               {"Content-Type": "text/html"}))
    cfg = tmp_path / "aiwatch.toml"
    cfg.write_text("[fetch]\nallow_private_addresses = true\n")
    assert main(["feeds", "add", site, "--config", str(cfg)]) == 1
    assert "links to no feed" in capsys.readouterr().err


def test_opml_round_trip_and_import(tmp_path, capsys):
    feeds = [FeedSpec("https://a.example/feed", "A & B News"), FeedSpec("https://b.example/rss", None)]
    text = render_opml(feeds)
    assert parse_opml(text.encode()) == [FeedSpec("https://a.example/feed", "A & B News"),
                                         FeedSpec("https://b.example/rss", "https://b.example/rss")]
    nested = (b'<?xml version="1.0"?><opml version="1.0"><body><outline text="Tech">'
              b'<outline text="C" xmlUrl="https://c.example/f"/><outline text="skip" xmlUrl="ftp://x/y"/>'
              b'</outline></body></opml>')
    path = tmp_path / "subs.opml"
    path.write_bytes(nested)
    cfg = tmp_path / "aiwatch.toml"  # no [[feeds]]: the defaults are written out first
    cfg.write_text("[fetch]\ntimeout = 10\n")
    assert main(["feeds", "import-opml", str(path), "--config", str(cfg)]) == 0
    got = load_config(cfg).feeds
    assert got[-1] == FeedSpec("https://c.example/f", "C", category="Tech") and len(got) > 1
    assert main(["feeds", "export-opml", "--config", str(cfg)]) == 0
    assert "https://c.example/f" in capsys.readouterr().out


MINIFLUX_STYLE = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE opml>
<opml version="2.0">
  <head><title>Miniflux</title></head>
  <body>
    <outline text="AI &amp; chips">
      <outline title="R&D Wire" text="R&D Wire" xmlUrl="https://rd.example/feed" htmlUrl="https://rd.example/"/>
      <outline text="Policy">
        <outline text="Gov Desk" xmlURL="https://gov.example/rss" HTMLURL="https://gov.example"/>
      </outline>
    </outline>
    <outline text="Loose" xmlurl="https://loose.example/atom.xml" category="/Markets/Asia"/>
    <outline text="Scraped page" type="HTML+XPath" xmlUrl="https://page.example/news"
             xmlns:frss="https://freshrss.org/opml" frss:xPathItem="//article"/>
  </body>
</opml>"""


def test_opml_categories_site_urls_and_what_other_readers_write(tmp_path, caplog):
    """Folders and htmlUrl survive import and export; an unescaped '&' (Miniflux writes them), a
    bare DOCTYPE and a miscapitalised xmlURL are read; FreshRSS's page scrapers are skipped."""
    feeds = parse_opml(MINIFLUX_STYLE, "subs.opml")
    assert feeds == [
        FeedSpec("https://rd.example/feed", "R&D Wire", category="AI & chips", site_url="https://rd.example/"),
        FeedSpec("https://gov.example/rss", "Gov Desk", category="AI & chips/Policy", site_url="https://gov.example"),
        FeedSpec("https://loose.example/atom.xml", "Loose", category="Markets/Asia"),
    ]
    assert "skipped 1 outlines that scrape web pages" in caplog.text
    again = parse_opml(render_opml(feeds).encode())
    assert again == feeds
    cfg = tmp_path / "aiwatch.toml"
    cfg.write_text("[[feeds]]\nurl = \"https://first.example/feed\"\n")
    path = tmp_path / "subs.opml"
    path.write_bytes(MINIFLUX_STYLE)
    assert main(["feeds", "import-opml", str(path), "--config", str(cfg)]) == 0
    assert load_config(cfg).feeds[1:] == tuple(feeds)  # category and site_url written to the TOML


def test_opml_without_feeds_says_what_it_held(tmp_path, capsys):
    folders_only = b'<opml version="2.0"><body><outline text="A"><outline text="B" url="https://b.example/"/></outline></body></opml>'
    with pytest.raises(AiwatchError, match=r"no feeds found \(2 outlines, none with an xmlUrl attribute\)"):
        parse_opml(folders_only, "subs.opml")
    path = tmp_path / "subs.opml"
    path.write_bytes(folders_only)
    assert main(["feeds", "import-opml", str(path), "--config", str(tmp_path / "aiwatch.toml")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no feeds found" in err and not (tmp_path / "aiwatch.toml").exists()


def test_feed_category_and_site_url_are_checked_in_the_config(tmp_path):
    cfg = tmp_path / "aiwatch.toml"
    cfg.write_text('[[feeds]]\nurl = "https://a.example/feed"\nsite_url = "javascript:alert(1)"\n')
    with pytest.raises(ConfigError, match=r"feeds\[0\]\.site_url"):
        load_config(cfg)
    cfg.write_text('[[feeds]]\nurl = "https://a.example/feed"\ncategory = 3\n')
    with pytest.raises(ConfigError, match=r"feeds\[0\]\.category"):
        load_config(cfg)


def test_opml_with_entities_is_refused():
    evil = b'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY a "aaaa">]><opml><body/></opml>'
    with pytest.raises(AiwatchError, match="refused"):
        parse_opml(evil)


def test_feeds_lists_health(demo_run, tmp_path, capsys):
    cfg = tmp_path / "aiwatch.toml"
    lines = [f'[storage]\ndatabase = "{demo_run["config"].database}"\n']
    for f in demo_run["config"].feeds:
        lines.append(f'[[feeds]]\nurl = "{f.url}"\nname = "{f.name}"\n')
    cfg.write_text("\n".join(lines))
    assert main(["feeds", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "6 feeds, 1 failing" in out and "malformed feed" in out and "TechWire Daily" in out


def test_stale_feed_listed_in_digest_health(route_server, tmp_path):
    url = route_server.add("/feed.xml", Response(200, rss([{"title": "Old", "link": "http://x.example/1",
                                                            "guid": "1"}])))
    config = local_config(tmp_path / "db.duckdb", [{"url": url, "name": "Quiet Feed"}],
                          **{"fetch.articles": False, "health.stale_days": 14})
    run_id = start_run(config, T0)
    fetch_articles(config, run_id, fetch_feeds(config, run_id, T0).new_entries, T0)
    later = T0 + timedelta(days=20)
    assert not fetch_feeds(config, run_id, later).new_entries  # fetched fine, nothing new for 20 days
    with Store.open(config.database) as store:
        report = feed_health_report(store, config, later, later)
    assert [(f.name, f.detail) for f in report.stale] == [("Quiet Feed", "no new item since 2026-11-20")]
    assert not report.failing and not report.recovered

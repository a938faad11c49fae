"""Hostile input that must not reach a reader's screen as markup: links and text from feeds in
the digests (HTML, Markdown, Atom, Slack) and on the terminal."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from xml.etree import ElementTree as ET

import pytest

from aiwatch.config import load_config
from aiwatch.report.delivery import webhook_payload
from aiwatch.report.digest import collect_digest, render_atom, render_html, render_markdown
from aiwatch.store import Store
from aiwatch.urls import canonical_url, safe_link, site_of, url_key

NOW = datetime.now(timezone.utc)
EVIL_LINKS = ["javascript:alert(document.cookie)", "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
              "https://news.example/x)[click me](javascript:alert(1))"]


@pytest.fixture
def hostile_db(demo_copy):
    """The demo database with three flagged chip stories' links and names made hostile."""
    _, db = demo_copy
    with Store.open(db) as store:
        store.con.execute("DELETE FROM core.digest_items; DELETE FROM core.digests")
        ids = [r[0] for r in store.con.execute(
            "SELECT article_id FROM matches WHERE theme = 'chip_sanctions' ORDER BY score DESC LIMIT 3").fetchall()]
        for aid, link in zip(ids, EVIL_LINKS):
            store.con.execute("UPDATE core.articles SET url = ?, outlet = '<!channel> Wire' WHERE article_id = ?",
                              [link, aid])
        store.con.execute("UPDATE core.articles SET title = '<!here> <https://evil.example|Official notice> & co' "
                          "WHERE article_id = ?", [ids[0]])
    return db


def test_digests_never_carry_a_live_unsafe_link(hostile_db, tmp_path):
    config = load_config(None).replace(**{"storage.database": str(hostile_db), "digest.dir": str(tmp_path),
                                          "digest.webhook.url": "https://hooks.example/x"})
    with Store.open(hostile_db) as store:
        data = collect_digest(store, config, NOW)
        atom = render_atom(store, config, NOW)
    html, md = render_html(data), render_markdown(data)
    for text in (html, md, atom):
        assert 'href="javascript' not in text and 'href="data:' not in text
    assert "](javascript" not in md and "(data:" not in md and "[click me]" not in md  # nor an injected link
    links = [e.get("href") for e in ET.fromstring(atom).iter("{http://www.w3.org/2005/Atom}link")]
    assert links and all(link.startswith(("http://", "https://")) for link in links)
    slack = json.dumps(webhook_payload(config, data))
    assert "<!here>" not in slack and "<!channel>" not in slack and "<https://evil.example" not in slack
    assert "&lt;!here&gt;" in slack and "<javascript:" not in slack and "data:text" not in slack


def test_url_functions_are_total_and_safe_link_is_http_only():
    for raw in ("http://[::1]:8080/a", "http://x.example:99999/a", "http://[oops/", "http://a.example/\x01b",
                "javascript:alert(1)", "", "   ", "http://"):
        once = canonical_url(raw)
        assert canonical_url(once) == once and len(url_key(raw)) == 20
        site_of(raw)
    assert canonical_url("HTTP://[2001:DB8::1]:80/x?utm_source=a") == "http://[2001:db8::1]/x"
    assert [safe_link(u) for u in ("javascript:alert(1)", "data:text/html,x", "https://a.example/x y",
                                   "https://a.example/x")] == [None, None, None, "https://a.example/x"]


def test_terminal_never_gets_control_characters_from_feeds(demo_copy, capsys):
    from aiwatch.cli import main, shown
    cfg, db = demo_copy
    with Store.open(db) as store:
        store.con.execute("UPDATE core.articles SET title = 'Chips \x1b[2J\x1b]0;owned\x07 \u202eevil' "
                          "WHERE article_id = (SELECT min(article_id) FROM core.articles)")
    assert main(["query", "SELECT title FROM articles ORDER BY title", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "\\x1b[2J" in out and "\\u202e" in out  # shown, escaped
    assert shown("plain text, ünïcode 中文") == "plain text, ünïcode 中文"


@pytest.mark.parametrize("toml, key", [
    ("[fetch]\ntimeout = inf\n", "fetch.timeout"),
    ("[fetch]\ntimeout = 1e10\n", "fetch.timeout"),
    ("[stories]\nwindow_hours = inf\n", "stories.window_hours"),
    ("[health]\nbackoff_hours = 1e300\n", "health.backoff_hours"),
    ("[fetch]\nretries = 1000000\n", "fetch.retries"),
    ('[[feeds]]\nurl = "http://a.example:808080/feed"\n', "feeds[0].url"),
    ('[storage]\ndatabase = "/etc/passwd/db.duckdb"\n', "storage.database"),
    ('[digest]\ndir = "/etc/passwd/digests"\n', "digest.dir"),
])
def test_settings_that_would_crash_a_run_are_refused_at_start(tmp_path, toml, key):
    import subprocess
    import sys
    cfg = tmp_path / "aiwatch.toml"
    cfg.write_text(toml)
    out = subprocess.run([sys.executable, "-m", "aiwatch", "run", "--no-prefect", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert f"config: {key}:" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_page_that_failed_is_fetched_again_on_a_later_run(route_server, tmp_path, embedder):
    from datetime import timedelta
    from conftest import local_config
    from routes import Response, page, rss
    from aiwatch.pipeline import run_pipeline
    body = "Officials said the new licence requirement covers advanced accelerators and memory. " * 10
    items = [{"title": "Flaky story", "link": route_server.url("/flaky.html"), "guid": "f",
              "description": "What the feed says."}]
    url = route_server.add("/feed.xml", Response(200, rss(items)))
    route_server.add("/flaky.html", Response(503, b"busy"), Response(504, b"busy"), Response(200, page("Flaky", [body])))
    config = local_config(tmp_path / "db.duckdb", [{"url": url}])
    t0 = datetime(2026, 12, 1, 8, tzinfo=timezone.utc)
    first = run_pipeline(config, now=t0)
    assert first.status == "partial" and first.stats.articles_new == 1

    def state():
        with Store.open(config.database, read_only=True) as store:
            text_source = store.query("SELECT text_source FROM articles")[1][0][0]
            retries = store.query("SELECT attempts FROM core.page_retries")[1]
            scores = store.query("SELECT count(*) FROM core.scores")[1][0][0]
        return text_source, retries, scores

    assert state() == ("feed", [(1,)], 3)  # kept the feed's text, and scheduled the page
    run_pipeline(config, now=t0 + timedelta(minutes=30))  # not due yet
    assert route_server.hits["/flaky.html"] == 1
    run_pipeline(config, now=t0 + timedelta(hours=2))  # due: fails again (504), backs off further
    assert route_server.hits["/flaky.html"] == 2 and state()[1] == [(2,)]
    run_pipeline(config, now=t0 + timedelta(hours=5))  # comes back: the page's text replaces the feed's
    assert route_server.hits["/flaky.html"] == 3
    assert state() == ("page", [], 3)  # re-embedded and re-scored, nothing duplicated
    with Store.open(config.database, read_only=True) as store:
        assert store.count("core.articles") == 1


def test_ctrl_c_drops_queued_pages_and_records_the_run_as_interrupted(route_server, tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from routes import Response, page, rss
    items = [{"title": f"Story {i}", "link": route_server.url(f"/p{i}.html"), "guid": f"g{i}",
              "description": "What the feed says."} for i in range(60)]
    for i in range(60):
        route_server.add(f"/p{i}.html", Response(200, page(f"Story {i}", ["Some text. " * 40]), delay=1.5))
    url = route_server.add("/feed.xml", Response(200, rss(items)))
    db = tmp_path / "db.duckdb"
    cfg = tmp_path / "aiwatch.toml"
    cfg.write_text(f'[storage]\ndatabase = "{db}"\n[fetch]\nallow_private_addresses = true\nhost_delay = 0\n'
                   f'concurrency = 4\nper_host = 4\nrobots = false\n[[feeds]]\nurl = "{url}"\n')
    proc = subprocess.Popen([sys.executable, "-m", "aiwatch", "run", "--no-prefect", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while sum(n for p, n in route_server.hits.items() if p.startswith("/p")) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    pages_asked = sum(n for p, n in route_server.hits.items() if p.startswith("/p"))
    assert pages_asked <= 12  # the queued pages were dropped, not fetched one after another
    with Store.open(db, read_only=True) as store:
        assert store.query("SELECT status FROM runs")[1] == [("interrupted",)]


def test_query_reads_the_database_and_nothing_else(demo_copy, tmp_path, capsys):
    from aiwatch.cli import main
    cfg, _ = demo_copy
    target = tmp_path / "leak.csv"
    for sql in (f"COPY (SELECT * FROM articles) TO '{target}'", "SELECT * FROM read_csv('/etc/passwd')",
                "INSTALL httpfs", f"ATTACH '{tmp_path / 'other.duckdb'}' AS other",
                "SET enable_external_access = true"):
        assert main(["query", sql, "--config", str(cfg)]) == 1, sql
        err = capsys.readouterr().err
        assert err.startswith("aiwatch: error: query failed") and len(err.strip().splitlines()) == 1
    assert not target.exists() and not (tmp_path / "other.duckdb").exists()
    assert main(["query", "SELECT count(*) AS n FROM matches", "--config", str(cfg)]) == 0


def test_a_hostile_run_beside_a_good_feed_stores_every_good_item(route_server, tmp_path, embedder):
    """Every hostile case of one run, on a local server, beside a good feed: the run exits 0
    twice, prints no traceback, stores every good item and stays well under 1 GB."""
    import gzip
    import subprocess
    import sys
    import time
    from test_http_hostile import RawServer
    from routes import Response, page, rss
    good_text = "Officials said the new licence requirement covers advanced accelerators and memory. " * 10
    for i in range(3):
        route_server.add(f"/good/{i}.html", Response(200, page(f"Good story {i}", [good_text])))
    good = route_server.add("/good.xml", Response(200, rss([{"title": f"Good story {i}", "guid": f"good{i}",
                                                             "link": route_server.url(f"/good/{i}.html"),
                                                             "description": "A good story."} for i in range(3)])))
    bomb = gzip.compress(b"\0" * 50_000_000)

    def drip(conn, head):
        for byte in b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n":
            conn.sendall(bytes([byte]))
            time.sleep(0.3)

    with RawServer(drip) as dripper:
        hostile_pages = {
            "/stacked.html": Response(200, gzip.compress(gzip.compress(page("Stacked", [good_text]))),
                                      {"Content-Encoding": "gzip, gzip"}),
            "/bomb.html": Response(200, bomb, {"Content-Encoding": "gzip", "Content-Type": "text/html"}),
            "/retry.html": Response(503, b"busy", {"Retry-After": "²"}),
            "/canonical.html": Response(200, page("Canonical", [good_text]).replace(
                b"<head>", b'<head><link rel="canonical" href="http://[oops/">')),
            "/moved.html": Response(301, b"", {"Location": "http://127.0.0.1:99999/x"}),
            "/etag.html": Response(200, page("Etag", [good_text]), {"ETag": '"caf\xe9"'}),
            "/binary.html": Response(200, b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 200, {"Content-Type": "text/html"}),
            "/slow.html": Response(200, page("Slow", [good_text]), delay=4),
        }
        for path, resp in hostile_pages.items():
            route_server.add(path, resp)
        links = [route_server.url(p) for p in hostile_pages] + [
            dripper.url("/drip.html"), "http://127.0.0.1:99999/port", f"http://[::1]:{route_server.port}/v6",
            "http://[oops/", route_server.url("/ctl\x01char"), "javascript:alert(1)", "data:text/html,x"]
        items = [{"title": f"Hostile {i}", "guid": f"h{i}", "link": link.replace("&", "&amp;"),
                  "description": "What the feed says."} for i, link in enumerate(links)]
        items.append({"title": "x" * 1_000_000, "guid": "huge-title", "description": "A huge title."})
        hostile = route_server.add("/hostile.xml", Response(200, rss(items), {"ETag": '"fe\xeft"'}))
        jsonfeed = route_server.add("/feed.json", Response(200, json.dumps({
            "version": "https://jsonfeed.org/version/1.1", "title": "J\u0001son",
            "items": [{"id": "j1", "title": "Bad \u0001 chars \ufffe here", "content_text": "Text \u0001 here"}]}
        ).encode("utf-8"), {"Content-Type": "application/feed+json"}))
        db = tmp_path / "db.duckdb"
        cfg = tmp_path / "aiwatch.toml"
        feeds = "".join(f'[[feeds]]\nurl = "{u}"\n' for u in (good, hostile, jsonfeed))
        cfg.write_text(f'[storage]\ndatabase = "{db}"\n[digest]\ndir = "{tmp_path}"\n'
                       f'[fetch]\nallow_private_addresses = true\nhost_delay = 0\ntimeout = 2\nretries = 0\n'
                       f'max_bytes = 2000000\n{feeds}')
        for _ in range(2):  # the second run re-sends what the first stored (validators): nothing is poisoned
            out = subprocess.run([sys.executable, "-m", "aiwatch", "run", "--no-prefect", "--config", str(cfg)],
                                 capture_output=True, text=True, timeout=300)
            assert out.returncode == 0, out.stderr[-2000:]
            assert "Traceback" not in out.stderr and "Traceback" not in out.stdout
    with Store.open(db, read_only=True) as store:
        titles = {r[0] for r in store.query("SELECT title FROM articles")[1]}
        runs = store.query("SELECT status, peak_rss_mb FROM runs ORDER BY started_at")[1]
        etags = store.query("SELECT etag FROM core.feeds")[1]
        atom = (tmp_path / "aiwatch.atom").read_bytes()
    assert {f"Good story {i}" for i in range(3)} <= titles
    assert any(t.startswith("Hostile") for t in titles)  # hostile items kept with the feed's text
    assert all(len(t) <= 1000 for t in titles)
    assert runs[0][0] == "partial" and runs[1][0] in ("ok", "partial")  # the second: nothing new, nothing due
    assert all(rss < 1000 for _, rss in runs), runs
    assert all(e is None or e.isascii() for (e,) in etags)
    ET.fromstring(atom)  # the Atom feed stays well-formed


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), st.from_regex(r"https?://[\[\]\w.:%@-]{0,30}(/[^\s]{0,20})?", fullmatch=True)))
def test_url_functions_never_raise(raw):
    once = canonical_url(raw)
    assert canonical_url(once) == once
    assert len(url_key(raw)) == 20
    site_of(raw)
    link = safe_link(raw)
    assert link is None or link.split(":", 1)[0].lower() in ("http", "https")

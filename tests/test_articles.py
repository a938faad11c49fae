"""Articles: one row per article, honest dates, raw pages for re-extraction, one entry per story."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from conftest import local_config
from routes import Response, rss

from aiwatch.cli import main
from aiwatch.articles.dates import choose_published
from aiwatch.report.digest import collect_digest
from aiwatch.articles.page import Page
from aiwatch.pipeline import run_pipeline
from aiwatch.store import Store

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)

SAME_EVENT_A = ("Netherlands ends grace period for servicing chip machines in China",
                "The Dutch government said on Tuesday that companies will need an export licence to service and "
                "repair advanced lithography machines already installed at Chinese chip factories, ending a grace "
                "period that had let engineers keep maintaining the tools. The rule takes effect next month.")
SAME_EVENT_B = ("Dutch licence rule now covers repairs of chipmaking tools in China",
                "Engineers who maintain advanced lithography systems at Chinese chip plants will need a Dutch "
                "export licence from next month, the government in The Hague announced on Tuesday, closing the "
                "grace period that had allowed servicing of machines already installed there.")
OTHER_BAN = ("Korea requires licences for HBM memory shipped to China",
             "South Korea's trade ministry said exporters of high-bandwidth memory and advanced chip tools bound "
             "for China must apply for a licence, aligning its rules with those of Washington.")
LATER_BAN = ("Netherlands widens chip tool licences to older lithography machines",
             "A week after its servicing rule, the Dutch government extended licence requirements to older "
             "deep-ultraviolet lithography machines bound for Chinese chip factories.")


def html_page(title: str, body: str, extra_head: str = "", repeat: int = 3) -> bytes:
    paragraphs = "".join(f"<p>{body} {i}</p>" for i in range(repeat)) if repeat > 1 else f"<p>{body}</p>"
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>{extra_head}"
            f"</head><body><nav><a href='/'>Home</a></nav><article><h1>{title}</h1>{paragraphs}</article>"
            f"<footer>Footer text</footer></body></html>").encode()


def test_date_rule():
    feed, page = NOW - timedelta(hours=3), NOW - timedelta(days=5)
    assert choose_published(feed, page, NOW) == (feed, "feed", ("dates_disagree",))
    assert choose_published(None, NOW + timedelta(days=400), NOW) == (NOW, "first_seen",
                                                                      ("future_page_date", "no_trusted_date"))
    assert choose_published(NOW + timedelta(days=30), page, NOW) == (page, "page", ("future_feed_date",))
    old = datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert choose_published(old, None, NOW)[1:] == ("first_seen", ("implausible_feed_date", "no_trusted_date"))


def test_same_site_canonical_only():
    head = '<html><head><link rel="canonical" href="/story?id=1&utm_source=x"></head><body></body></html>'
    assert Page("https://www.news.example/amp/story", head).canonical == "https://www.news.example/story?id=1"
    assert Page("https://news.example/a", '<link rel="canonical" href="https://other.example/x">').canonical is None


def test_misleading_future_date_and_tracking_urls_from_two_feeds(route_server, tmp_path, embedder):
    future = '<meta property="article:published_time" content="2031-05-01T09:00:00Z">'
    route_server.add("/story.html", Response(200, html_page(*SAME_EVENT_A, extra_head=future)))
    a = [{"title": SAME_EVENT_A[0], "link": route_server.url("/story.html?utm_source=rss&utm_medium=feed"),
          "guid": "a1", "description": "Short summary."}]
    b = [{"title": SAME_EVENT_A[0], "link": route_server.url("/story.html?fbclid=XYZ"), "guid": "b1",
          "description": "Short summary."}]
    feeds = [{"url": route_server.add("/a.xml", Response(200, rss(a))), "name": "Feed A"},
             {"url": route_server.add("/b.xml", Response(200, rss(b))), "name": "Feed B"}]
    config = local_config(tmp_path / "db.duckdb", feeds)
    assert run_pipeline(config).stats.articles_new == 1
    assert run_pipeline(config).stats.articles_new == 0
    with Store.open(config.database, read_only=True) as store:
        rows = store.query("SELECT canonical_url, date_source, date_flags, published_at, fetched_at FROM articles")[1]
        assert store.query("SELECT count(*) FROM core.entries_seen")[1][0][0] == 2  # both feeds' entries
    assert len(rows) == 1  # stored once
    canonical, source, flags, published, fetched = rows[0]
    assert "utm_" not in canonical and "fbclid" not in canonical
    assert source == "first_seen" and "future_page_date" in flags and published == fetched


def test_same_event_is_one_story_distinct_events_stay_apart(route_server, tmp_path, embedder):
    # Dates relative to the real clock: a date in the future would fall back to first-seen.
    now = datetime.now(timezone.utc).replace(microsecond=0)
    day = now - timedelta(days=7, hours=12)
    items = [
        {"title": SAME_EVENT_A[0], "link": route_server.url("/a.html"), "guid": "a",
         "pubDate": day.strftime("%a, %d %b %Y %H:%M:%S GMT"), "description": "A."},
        {"title": SAME_EVENT_B[0], "link": route_server.url("/b.html"), "guid": "b",
         "pubDate": (day + timedelta(hours=5)).strftime("%a, %d %b %Y %H:%M:%S GMT"), "description": "B."},
        {"title": OTHER_BAN[0], "link": route_server.url("/c.html"), "guid": "c",
         "pubDate": (day + timedelta(hours=8)).strftime("%a, %d %b %Y %H:%M:%S GMT"), "description": "C."},
        {"title": LATER_BAN[0], "link": route_server.url("/d.html"), "guid": "d",
         "pubDate": (day + timedelta(days=7)).strftime("%a, %d %b %Y %H:%M:%S GMT"), "description": "D."},
    ]
    for path, (title, body) in zip(("/a.html", "/b.html", "/c.html", "/d.html"),
                                   (SAME_EVENT_A, SAME_EVENT_B, OTHER_BAN, LATER_BAN)):
        route_server.add(path, Response(200, html_page(title, body)))
    feeds = [{"url": route_server.add("/feed.xml", Response(200, rss(items))), "name": "Wire"}]
    config = local_config(tmp_path / "db.duckdb", feeds)
    run_pipeline(config, now=now)
    with Store.open(config.database) as store:
        stories = {h: n for h, n in store.query("SELECT headline, n_articles FROM stories")[1]}
        data = collect_digest(store, config, now, only_new=False)
    assert stories[SAME_EVENT_A[0]] == 2
    assert stories[OTHER_BAN[0]] == 1 and stories[LATER_BAN[0]] == 1
    chip = next(t for t in data.themes if t.name == "chip_sanctions")
    titles = [i.title for i in chip.items]
    assert sum(t in (SAME_EVENT_A[0], SAME_EVENT_B[0]) for t in titles) == 1  # one entry per story


def test_reextract_works_from_stored_pages(route_server, tmp_path, embedder, capsys):
    items = [{"title": SAME_EVENT_A[0], "link": route_server.url("/a.html"), "guid": "a", "description": "A."}]
    route_server.add("/a.html", Response(200, html_page(*SAME_EVENT_A)))
    feeds = [{"url": route_server.add("/feed.xml", Response(200, rss(items)))}]
    config = local_config(tmp_path / "db.duckdb", feeds)
    run_pipeline(config)
    with Store.open(config.database) as store:  # pretend an older extractor stored poor text
        store.con.execute("UPDATE core.articles SET text = 'stale text', content_hash = 'x'")
    cfg = tmp_path / "aiwatch.toml"
    cfg.write_text(f'[storage]\ndatabase = "{config.database}"\n')
    hits = route_server.hits["/a.html"]
    assert main(["reextract", "--config", str(cfg)]) == 0
    assert "1 articles changed" in capsys.readouterr().out
    assert route_server.hits["/a.html"] == hits  # nothing fetched
    with Store.open(config.database, read_only=True) as store:
        text, updated = store.query("SELECT text, updated_at FROM articles")[1][0]
    assert "lithography" in text and updated is not None


WIRE = ("Officials in Seoul said on Wednesday that makers of high-bandwidth memory will need a licence "
        "before shipping their most advanced stacks to customers in China. The rule also covers several "
        "kinds of etching and deposition equipment used to make logic chips. Companies that already hold "
        "contracts will have ninety days to apply, the trade ministry said, adding that decisions would "
        "normally come within a month. Analysts said the move brings Korean practice closer to the rules "
        "that Washington and Tokyo adopted over the past two years, and that the largest memory makers "
        "had prepared for it by moving some packaging work to plants outside the country. Shares of the "
        "two biggest memory producers fell slightly in morning trading before recovering by the close.")


def test_wire_copies_with_small_edits_are_linked_to_the_earliest(route_server, tmp_path, embedder):
    from aiwatch.articles.dedup import shingles, signature, similarity
    copy = "SEOUL (Wire) - " + WIRE + " The ministry did not say how many licences it expects to issue."
    exact = len(shingles(WIRE) & shingles(copy)) / len(shingles(WIRE) | shingles(copy))
    assert exact >= 0.8 and similarity(signature(WIRE), signature(copy)) >= 0.8
    day = NOW - timedelta(days=1)
    route_server.add("/a.html", Response(200, html_page("Korea adds licence rule for memory exports", WIRE,
                                                        repeat=1)))
    route_server.add("/b.html", Response(200, html_page("Seoul tightens memory chip export rules", copy, repeat=1)))
    a = [{"title": "Korea adds licence rule for memory exports", "link": route_server.url("/a.html"), "guid": "a",
          "pubDate": day.strftime("%a, %d %b %Y %H:%M:%S GMT"), "description": "A."}]
    b = [{"title": "Seoul tightens memory chip export rules", "link": route_server.url("/b.html"), "guid": "b",
          "pubDate": (day + timedelta(hours=2)).strftime("%a, %d %b %Y %H:%M:%S GMT"), "description": "B."}]
    feeds = [{"url": route_server.add("/fa.xml", Response(200, rss(a))), "name": "Outlet A"},
             {"url": route_server.add("/fb.xml", Response(200, rss(b))), "name": "Outlet B"}]
    config = local_config(tmp_path / "db.duckdb", feeds)
    run_pipeline(config)
    with Store.open(config.database, read_only=True) as store:
        rows = dict(store.query("SELECT outlet, duplicate_of IS NOT NULL FROM articles")[1])
        stories = store.query("SELECT n_articles, outlets FROM stories")[1]
    assert rows == {"Outlet A": False, "Outlet B": True}
    assert stories == [(2, ["Outlet A", "Outlet B"])]

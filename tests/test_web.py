"""The web app's routes, through FastAPI's TestClient, on a real DuckDB file made by the demo
corpus: today's stories and judgements (stored, shown, undone), search, the theme editor and its
preview, feeds, runs, the digest's signed links, and what keeps it safe."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from aiwatch.config import load_config
from aiwatch.errors import ConfigError
from aiwatch.store import Store, write_lock
from aiwatch.web.app import create_app
from aiwatch.web.signing import judge_link, judge_url, load_secret

LOCAL = "http://127.0.0.1"
SLEEP = [sys.executable, "-c", "import time; time.sleep(0.2)"]  # stands in for `aiwatch ...` jobs


def make_web(cfg: Path, **kwargs) -> SimpleNamespace:
    kwargs.setdefault("job_command", SLEEP)
    app = create_app(cfg, **kwargs)
    return SimpleNamespace(app=app, client=TestClient(app, base_url=LOCAL), cfg=cfg,
                           db=app.state.web.config().database, state=app.state.web)


@pytest.fixture
def web(demo_copy):
    cfg, _ = demo_copy
    return make_web(cfg, write_wait=1.0)


def token(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def cards(html: str) -> list[dict]:
    """Each story card of the Today page: its anchor, theme and the articles its buttons judge."""
    out = []
    for m in re.finditer(r'<article class="card[^"]*" id="([^"]+)" data-article="([^"]+)" data-theme="([^"]+)">'
                         r'(.*?)</article>', html, re.S):
        ids = list(dict.fromkeys(re.findall(r'name="article" value="([^"]+)"', m.group(4))))
        out.append({"anchor": m.group(1), "lead": m.group(2), "theme": m.group(3), "ids": ids, "html": m.group(4)})
    return out


def judge(w: SimpleNamespace, card: dict, verdict: str, **extra):
    page = w.client.get("/")
    data = {"csrf": token(page.text), "theme": card["theme"], "verdict": verdict, "article": card["ids"],
            "back": "/", "anchor": card["anchor"], **extra}
    return w.client.post("/feedback", data=data, follow_redirects=False)


def feedback_rows(db: Path) -> dict[tuple[str, str], bool]:
    with Store.open_for_reading(db) as store:
        return {(j.article_id, j.theme): j.relevant for j in store.feedback()}


def flags(db: Path, article_id: str, theme: str) -> list[bool]:
    with Store.open_for_reading(db) as store:
        return [r[0] for r in store.query("SELECT flagged FROM core.scores WHERE article_id = ? AND theme = ?",
                                          [article_id, theme])[1]]


# -- today ----------------------------------------------------------------------------------------

def test_today_lists_the_flagged_stories_by_theme_and_story_newest_first(web, demo_run):
    r = web.client.get("/")
    assert r.status_code == 200
    found = cards(r.text)
    with Store.open_for_reading(web.db) as store:
        flagged = store.query("SELECT DISTINCT theme, article_id FROM matches")[1]
        last = store.last_run()
    assert found and {c["theme"] for c in found} == {t for t, _ in flagged}
    shown_ids = {(c["theme"], a) for c in found for a in c["ids"]}
    assert shown_ids == set(flagged)  # every flagged article, each once, in its story's card
    assert any("also reported by" in c["html"] for c in found)  # a story's copies share its card
    for c in found:  # the explanation: the passage, the nearest example, the probability in words
        assert '<blockquote class="passage">' in c["html"] and "Nearest theme example" in c["html"]
        assert re.search(r"(very likely|likely|more likely than not|possible) \(\d\.\d\d\)", c["html"])
        assert "Relevant</button>" in c["html"] and "Not relevant</button>" in c["html"]
    assert any("<dt>Terms</dt>" in c["html"] for c in found)  # the theme's terms the article used
    chips = [c for c in found if c["theme"] == "chip_sanctions"]
    dates = [re.search(r"(\d{4}-\d\d-\d\d) ·", c["html"]).group(1) for c in chips]
    assert dates == sorted(dates, reverse=True)
    assert f"Data as of run {last.run_id}" in r.text
    assert "<h2>Chip export controls <span" in r.text  # the theme's title (Theme.display_title)
    one = web.client.get("/?theme=llm_pricing")
    assert {c["theme"] for c in cards(one.text)} == {"llm_pricing"}


def test_a_judgement_is_stored_at_once_shown_on_the_card_and_can_be_undone(web):
    card = cards(web.client.get("/").text)[0]
    assert all(flags(web.db, a, card["theme"]) == [True] for a in card["ids"])
    r = judge(web, card, "no")
    assert r.status_code == 303 and r.headers["location"] == f"/#{card['anchor']}"
    assert {feedback_rows(web.db)[(a, card["theme"])] for a in card["ids"]} == {False}
    assert all(flags(web.db, a, card["theme"]) == [False] for a in card["ids"])
    shown = next(c for c in cards(web.client.get("/").text) if c["anchor"] == card["anchor"])
    assert "You marked this not relevant." in shown["html"] and "Undo</button>" in shown["html"]
    assert "Relevant</button>" not in shown["html"]
    # undone: the judgement is gone and the flag is what the probability earns again
    assert judge(web, card, "undo").status_code == 303
    assert not any(k[1] == card["theme"] and k[0] in card["ids"] for k in feedback_rows(web.db))
    assert all(flags(web.db, a, card["theme"]) == [True] for a in card["ids"])
    again = next(c for c in cards(web.client.get("/").text) if c["anchor"] == card["anchor"])
    assert "Relevant</button>" in again["html"]


def test_judgements_feed_calibration_and_the_next_scoring(web, embedder):
    from aiwatch.ops import labelled_items
    from aiwatch.relevance.scoring import score_articles
    card = next(c for c in cards(web.client.get("/").text) if c["theme"] == "llm_pricing")
    judge(web, card, "no")
    config = load_config(web.cfg)
    items = labelled_items(config, [], with_feedback=True)  # what `themes calibrate` reads
    assert {(i.item_id, i.grades.get("llm_pricing")) for i in items} >= {(a, 0) for a in card["ids"]}
    with Store.open(web.db) as store:  # the next scoring: a new theme version keeps the user's word
        store.clear_scores(config.theme("llm_pricing"))
    score_articles(config, "rescore-test", only=["llm_pricing"])
    assert all(flags(web.db, a, "llm_pricing") == [False] for a in card["ids"])


def test_state_changes_need_a_post_with_a_form_token_from_this_site(web):
    card = cards(web.client.get("/").text)[0]
    assert web.client.get("/feedback").status_code == 405
    assert judge(web, card, "yes", csrf="forged").status_code == 403
    fresh = TestClient(web.app, base_url=LOCAL)  # no cookie: a token from another browser is no good
    data = {"csrf": token(web.client.get("/").text), "theme": card["theme"], "verdict": "yes", "article": card["ids"]}
    assert fresh.post("/feedback", data=data, follow_redirects=False).status_code == 403
    other_site = web.client.post("/feedback", data=data, headers={"Origin": "https://evil.example"})
    assert other_site.status_code == 403
    assert not feedback_rows(web.db)
    assert web.client.get("/", headers={"Host": "evil.example"}).status_code == 400  # DNS rebinding


def test_a_judgement_the_database_cannot_take_says_it_was_not_saved(web):
    card = cards(web.client.get("/").text)[0]
    data = {"csrf": token(web.client.get("/").text), "theme": card["theme"], "verdict": "yes", "article": card["ids"]}
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('holding', flush=True); time.sleep(60)", str(web.db)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"  # another process writes the file
        r = web.client.post("/feedback", data=data)
        assert r.status_code == 503 and "NOT saved" in r.text and "press the button again" in r.text
    finally:
        holder.kill()
        holder.wait()
    assert not feedback_rows(web.db)
    assert web.client.post("/feedback", data=data, follow_redirects=False).status_code == 303  # and then it is


def test_titles_and_links_from_feeds_are_shown_as_text(web):
    with Store.open(web.db) as store:
        aid = store.query("SELECT article_id FROM matches ORDER BY score DESC LIMIT 1")[1][0][0]
        store.con.execute("UPDATE core.articles SET title = '<script>alert(1)</script> <b>bold</b>', "
                          "url = 'javascript:alert(2)' WHERE article_id = ?", [aid])
    html = web.client.get("/").text
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>bold</b>" not in html and 'href="javascript:' not in html
    csp = web.client.get("/").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp


# -- search ---------------------------------------------------------------------------------------

def test_search_finds_by_meaning_with_theme_date_and_outlet_filters(web):
    r = web.client.get("/search", params={"q": "memory chips barred from China"})
    assert r.status_code == 200
    titles = re.findall(r'<h3><a href="[^"]*" rel="noopener noreferrer" target="_blank">([^<]+)</a>', r.text)
    assert len(titles) >= 5 and any("HBM" in t or "chip" in t.lower() for t in titles[:3])
    assert r.text.count('<blockquote class="passage">') == len(titles)  # each with its best passage
    outlet = web.client.get("/search", params={"q": "memory chips barred from China", "outlet": "Policy Circuit"})
    metas = re.findall(r'<p class="meta">([^·<]+) ·', outlet.text)
    assert metas and {m.strip() for m in metas} == {"Policy Circuit"}
    themed = web.client.get("/search", params={"q": "price cuts", "theme": "llm_pricing"})
    assert "flagged for AI model pricing" in themed.text
    nothing = web.client.get("/search", params={"q": "price cuts", "since": "2030-01-01"})
    assert "No article matches these filters." in nothing.text


# -- themes ---------------------------------------------------------------------------------------

def _preview(w, name: str, **changes) -> str:
    page = w.client.get(f"/themes/{name}")
    fields = dict(re.findall(r'<textarea name="([a-z_]+)" rows="\d+">(.*?)</textarea>', page.text, re.S))
    import html as h
    data = {k: h.unescape(v) for k, v in fields.items()}
    data.update(threshold=re.search(r'name="threshold"[^>]*value="([^"]+)"', page.text).group(1), csrf=token(page.text))
    data.update(changes)
    return w.client.post(f"/themes/{name}/preview", data=data).text


def _count(html: str) -> int:
    return int(re.search(r'<span id="flag-count">(\d+)</span>', html).group(1))


def test_the_theme_preview_moves_with_the_threshold_and_is_measured_against_judgements(web):
    for card, verdict in zip([c for c in cards(web.client.get("/").text) if c["theme"] == "chip_sanctions"][:3],
                             ("yes", "yes", "no")):
        judge(web, card, verdict)
    low, high = _preview(web, "chip_sanctions", threshold="0.05"), _preview(web, "chip_sanctions", threshold="0.99")
    assert _count(low) > _count(high)
    assert "only the threshold changed" in low
    mid = _preview(web, "chip_sanctions", threshold="0.5")
    assert re.search(r'Against your 3 judgements: precision <strong id="precision">\d\.\d\d</strong>', mid)
    assert re.search(r'recall <strong id="recall">1\.00</strong>', mid)
    edited = _preview(web, "chip_sanctions", description="Rare earth magnets and their export licences from China.")
    assert "through the prior" in edited and "from the stored passage vectors" in edited
    bad = web.client.post("/themes/chip_sanctions/preview",
                          data={"csrf": token(low), "description": "short", "threshold": "2"})
    assert bad.status_code == 400 and "themes.chip_sanctions" in bad.text
    assert web.client.get("/themes/nope").status_code == 400


def test_saving_a_theme_writes_the_config_with_comments_kept_and_rescores(demo_copy):
    cfg, db = demo_copy
    cfg.write_text("# my own notes, kept\n" + cfg.read_text())
    w = make_web(cfg, job_command=None)  # the real `aiwatch rescore`
    page = w.client.get("/themes/llm_pricing")
    fields = dict(re.findall(r'<textarea name="([a-z_]+)" rows="\d+">(.*?)</textarea>', page.text, re.S))
    import html as h
    data = {k: h.unescape(v) for k, v in fields.items()}
    data.update(threshold="0.6", csrf=token(page.text))
    r = w.client.post("/themes/llm_pricing/save", data=data, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/themes/llm_pricing?done=saved"
    text = cfg.read_text()
    assert text.startswith("# my own notes, kept\n") and "[[themes]]" in text
    config = load_config(cfg)
    assert config.theme("llm_pricing").threshold == 0.6 and len(config.themes) == 3
    assert [t.title for t in config.themes] == [t.title for t in load_config(None).themes]  # titles kept
    assert w.state.jobs.wait(180) == 0, w.state.jobs.state().log_tail
    with Store.open_for_reading(db) as store:
        assert store.theme_scores("llm_pricing", config.theme("llm_pricing").version)
    assert "re-scored" in w.client.get("/runs").text


def test_a_theme_starts_from_a_stored_article(web):
    lead = cards(web.client.get("/").text)[0]["lead"]
    page = web.client.get("/themes/new", params={"article": lead})
    assert page.status_code == 200 and "From the stored article" in page.text
    r = web.client.post("/themes/new", data={"csrf": token(page.text), "name": "hbm_watch", "article": lead},
                        follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/themes/hbm_watch?done=added"
    theme = load_config(web.cfg).theme("hbm_watch")
    assert theme.positive_examples and theme.key_terms
    assert web.client.get("/themes/hbm_watch").status_code == 200
    dup = web.client.post("/themes/new", data={"csrf": token(page.text), "name": "hbm_watch", "article": lead})
    assert dup.status_code == 400 and "exists already" in dup.text
    bad = web.client.post("/themes/new", data={"csrf": token(page.text), "name": "Bad Name", "article": lead})
    assert bad.status_code == 400 and "lowercase identifier" in bad.text


# -- feeds and runs -------------------------------------------------------------------------------

def test_feeds_show_health_and_are_added_imported_and_exported(demo_copy, demo_run, corpus_server):
    cfg, db = demo_copy
    lines = ["[fetch]", "allow_private_addresses = true"]
    for f in demo_run["config"].feeds:
        lines += ["[[feeds]]", f'url = "{f.url}"', f'name = "{f.name}"']
    cfg.write_text(cfg.read_text() + "\n".join(lines) + "\n")
    w = make_web(cfg)
    page = w.client.get("/feeds")
    assert page.status_code == 200 and "failing (1 in a row)" in page.text  # the demo's broken feed
    assert "backing off until" in page.text
    assert page.text.count('class="badge ok"') == len(demo_run["config"].feeds) - 1
    new = corpus_server.base_url + "/techwire/feed.xml?copy=1"
    r = w.client.post("/feeds/add", data={"csrf": token(page.text), "url": new, "name": "Copy"}, follow_redirects=False)
    assert r.status_code == 303 and any(f.url == new for f in load_config(cfg).feeds)
    assert "never fetched" in w.client.get("/feeds").text
    opml = w.client.get("/feeds/export.opml")
    assert opml.headers["content-type"].startswith("text/x-opml") and new.replace("&", "&amp;") in opml.text
    upload = ('<?xml version="1.0"?><opml version="2.0"><body><outline type="rss" text="X" '
              'xmlUrl="https://x.example/feed.xml"/></body></opml>').encode()
    r = w.client.post("/feeds/import", data={"csrf": token(page.text)}, files={"opml": ("subs.opml", upload)},
                      follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/feeds?imported=1"
    assert any(f.url == "https://x.example/feed.xml" for f in load_config(cfg).feeds)
    bad = w.client.post("/feeds/add", data={"csrf": token(page.text), "url": "http://127.0.0.1:9/nothing"})
    assert bad.status_code == 400 and "127.0.0.1:9" in bad.text


def test_feeds_show_stale_and_dropping_feeds_and_a_site_url_finds_its_feed(demo_copy, demo_run, route_server):
    from routes import Response, rss
    cfg, db = demo_copy
    lines = ["[fetch]", "allow_private_addresses = true"]
    for f in demo_run["config"].feeds:
        lines += ["[[feeds]]", f'url = "{f.url}"', f'name = "{f.name}"']
    cfg.write_text(cfg.read_text() + "\n".join(lines) + "\n")
    stale, dropping = (f.url for f in demo_run["config"].feeds[:2])
    with Store.open(db) as store:  # one feed quiet for 60 days, another dropping entries
        store.con.execute("UPDATE core.feeds SET last_new_at = now() - INTERVAL 60 DAY WHERE feed_url = ?", [stale])
        store.con.execute("UPDATE core.feeds SET entries_dropped = 3, dropped_detail = '3 entries had no link' "
                          "WHERE feed_url = ?", [dropping])
    w = make_web(cfg)
    page = w.client.get("/feeds")
    rows = {m.group(1): m.group(2) for m in re.finditer(r'<div class="small muted url">([^<]+)</div></td>\s*'
                                                        r'<td>(.*?)</td>', page.text, re.S)}
    assert "stale: nothing new since" in rows[stale] and "3 entries dropped" in rows[dropping]
    assert "3 entries had no link" in rows[dropping] and "1 stale, 1 dropping entries" in page.text
    # a site's page, not a feed: the feed it links to is the one added
    feed = route_server.add("/news/feed.xml", Response(200, rss([{"title": "One", "link": route_server.url("/a"),
                                                                   "guid": "1"}], title="Site News"),
                                                       {"Content-Type": "application/rss+xml"}))
    route_server.add("/news/", Response(200, b'<!DOCTYPE html><html><head><title>Site</title><link rel="alternate" '
                                             b'type="application/rss+xml" href="/news/feed.xml"></head><body>hi</body>'
                                             b'</html>', {"Content-Type": "text/html; charset=utf-8"}))
    r = w.client.post("/feeds/add", data={"csrf": token(page.text), "url": route_server.url("/news/")},
                      follow_redirects=False)
    assert r.status_code == 303
    added = [f for f in load_config(cfg).feeds if f.url == feed]
    assert added and added[0].name == "Site News"
    assert route_server.url("/news/") not in [f.url for f in load_config(cfg).feeds]


def test_a_config_broken_by_hand_gets_a_page_saying_so_and_the_app_recovers(web):
    good = web.cfg.read_text()
    assert web.client.get("/themes").status_code == 200
    web.cfg.write_text(good + "[storage\n")  # a typo made in an editor while the app runs
    r = web.client.get("/themes")
    assert r.status_code == 400 and "That did not work" in r.text and str(web.cfg) in r.text
    web.cfg.write_text(good)
    assert web.client.get("/themes").status_code == 200

def test_runs_show_counts_timings_and_failures_and_a_run_is_refused_while_one_writes(web, monkeypatch):
    page = web.client.get("/runs")
    with Store.open_for_reading(web.db) as store:
        runs = store.recent_runs()
    assert page.status_code == 200 and all(r.run_id in page.text for r in runs)
    assert "embed " in page.text and "failures</summary>" in page.text and "Prefect UI" not in page.text
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert 'href="http://127.0.0.1:4200"' in web.client.get("/runs").text
    with write_lock(web.db, 5):
        r = web.client.post("/runs/start", data={"csrf": token(page.text)})
        assert r.status_code == 409 and "another aiwatch run is writing this database" in r.text
    assert web.state.jobs.state() is None
    r = web.client.post("/runs/start", data={"csrf": token(page.text)}, follow_redirects=False)
    assert r.status_code == 303
    assert "aiwatch run" in web.state.jobs.state().what
    busy = web.client.post("/runs/start", data={"csrf": token(page.text)})
    assert busy.status_code == 409 and "still going" in busy.text
    web.state.jobs.wait(10)


# -- the digest's signed links --------------------------------------------------------------------

def _link(w, relevant: bool, now: datetime | None = None) -> tuple[str, str]:
    config = load_config(w.cfg)
    with Store.open_for_reading(w.db) as store:
        aid = store.query("SELECT article_id FROM matches WHERE theme = 'gov_ai_policy' LIMIT 1")[1][0][0]
    link = judge_link(load_secret(config.web_secret_file), aid, "gov_ai_policy", relevant,
                      now or datetime.now(timezone.utc))
    return aid, judge_url("http://127.0.0.1", link).removeprefix("http://127.0.0.1")


def test_a_signed_digest_link_applies_its_judgement_once(web):
    aid, url = _link(web, False)
    page = web.client.get(url)
    assert page.status_code == 200 and "Mark as not relevant</button>" in page.text
    assert not feedback_rows(web.db)  # a GET changes nothing
    form = dict(re.findall(r'<input type="hidden" name="([a-z]+)" value="([^"]*)">', page.text))
    r = web.client.post("/judge", data=form, follow_redirects=False)
    assert r.status_code == 303
    shown = web.client.get(r.headers["location"])
    assert "Recorded: you marked this not relevant for Government AI policy." in shown.text
    assert feedback_rows(web.db) == {(aid, "gov_ai_policy"): False} and flags(web.db, aid, "gov_ai_policy") == [False]
    with Store.open(web.db) as store:  # the reader changes their mind in the app...
        store.undo_feedback(aid, "gov_ai_policy")
    web.client.post("/judge", data=form)  # ...and the old link, followed again, changes nothing
    assert feedback_rows(web.db) == {}
    assert "the judgement was undone since" in web.client.get(url).text


def test_a_tampered_or_expired_link_is_refused_with_a_plain_page(web):
    aid, url = _link(web, True)
    tampered = web.client.get(url.replace("r=yes", "r=no"))
    assert tampered.status_code == 403 and tampered.headers["content-type"].startswith("text/plain")
    assert "altered" in tampered.text
    other = web.client.get(url.replace(aid, "0" * len(aid)))
    assert other.status_code == 403
    _, old = _link(web, True, now=datetime.now(timezone.utc) - timedelta(days=31))
    expired = web.client.get(old)
    assert expired.status_code == 410 and "expired" in expired.text
    form = dict(a=aid, t="gov_ai_policy", r="yes", e=str(int(time.time()) + 99), s="0" * 64)
    assert web.client.post("/judge", data={**form, "csrf": token(web.client.get("/").text)}).status_code == 403
    assert not feedback_rows(web.db)


def test_the_digest_carries_signed_links_when_the_app_has_an_address(demo_copy):
    from aiwatch.report.digest import collect_digest, render_html, render_markdown
    cfg, db = demo_copy
    config = load_config(cfg).replace(**{"web.base_url": "https://watch.example.org/"})
    assert not config.web_secret_file.exists()
    with Store.open(db) as store:
        data = collect_digest(store, config, datetime.now(timezone.utc),
                              since=datetime(2000, 1, 1, tzinfo=timezone.utc), only_new=False)
    html, md = render_html(data), render_markdown(data)
    items = [i for t in data.themes for i in t.items]
    assert items and all(i.relevant_url.startswith("https://watch.example.org/judge?a=") for i in items)
    assert html.count("https://watch.example.org/judge?") == 2 * len(items) and "&amp;s=" in html
    assert md.count("(https://watch.example.org/judge?") == 2 * len(items)
    assert config.web_secret_file.stat().st_mode & 0o777 == 0o600
    plain = load_config(cfg)  # without web.base_url: no links
    with Store.open(db) as store:
        data = collect_digest(store, plain, datetime.now(timezone.utc), only_new=False)
    assert "/judge?" not in render_html(data)


# -- who may use it -------------------------------------------------------------------------------

def test_any_other_address_needs_a_password_and_a_login(demo_copy, monkeypatch):
    cfg, _ = demo_copy
    with pytest.raises(ConfigError, match="reachable from other machines: set web.password_env"):
        create_app(cfg, host="0.0.0.0")
    cfg.write_text(cfg.read_text() + '[web]\npassword_env = "AIWATCH_TEST_WEB_PASSWORD"\n')
    with pytest.raises(ConfigError, match="AIWATCH_TEST_WEB_PASSWORD is not set"):
        create_app(cfg, host="0.0.0.0")
    monkeypatch.setenv("AIWATCH_TEST_WEB_PASSWORD", "correct horse")
    w = make_web(cfg, host="0.0.0.0")
    c = TestClient(w.app, base_url="http://watch.example.org")
    r = c.get("/themes", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/themes"
    login = c.get("/login?next=/themes")
    assert c.post("/login", data={"csrf": token(login.text), "password": "wrong", "next": "/themes"}).status_code == 401
    ok = c.post("/login", data={"csrf": token(login.text), "password": "correct horse", "next": "/themes"},
                follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/themes"
    assert c.get("/themes").status_code == 200
    _, url = _link(w, True)
    assert TestClient(w.app, base_url="http://watch.example.org").get(url).status_code == 200  # the link is the key


def test_the_command_refuses_another_address_in_one_line(demo_copy):
    cfg, _ = demo_copy
    out = subprocess.run([sys.executable, "-m", "aiwatch", "web", "--config", str(cfg), "--host", "0.0.0.0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "aiwatch: error: config: --host: 0.0.0.0 is reachable from other machines" in out.stderr


def test_the_demo_leaves_a_config_for_the_app(tmp_path, demo_run):
    from aiwatch.cli.running import _demo_web_command
    db = tmp_path / "aiwatch.duckdb"
    said = _demo_web_command(tmp_path, db, [{"url": "http://127.0.0.1:47239/a.xml", "name": "A"}])
    assert f"aiwatch web --config {tmp_path / 'aiwatch.toml'}" in said and said.startswith("wrote ")
    config = load_config(tmp_path / "aiwatch.toml")
    assert config.database == db and config.digest_dir == tmp_path and config.fetch.allow_private_addresses
    assert _demo_web_command(tmp_path, db, []) == f"open the app: aiwatch web --config {tmp_path / 'aiwatch.toml'}"
    other = _demo_web_command(tmp_path, tmp_path / "x" / "other.duckdb", [])
    assert "left as it is" in other and "AIWATCH_STORAGE_DATABASE=" in other

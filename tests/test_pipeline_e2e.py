"""End to end on the demo corpus: real server, real DuckDB file, real model."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiwatch.store import Store

THEMES = ("chip_sanctions", "llm_pricing", "gov_ai_policy")


def _scores(config):
    with Store.open(config.database, read_only=True) as store:
        rows = store.query("""
            SELECT a.url, a.duplicate_of, s.theme, s.score, s.flagged
            FROM core.articles a LEFT JOIN core.scores s USING (article_id)""")[1]
    out = {}
    for url, dup, theme, score, flagged in rows:
        entry = out.setdefault(urlsplit(url).path, {"dup": dup, "flagged": set(), "scores": {}})
        if theme:
            entry["scores"][theme] = score
            if flagged:
                entry["flagged"].add(theme)
    return out


def test_on_theme_stories_flagged_under_the_right_themes(demo_run):
    scores = _scores(demo_run["config"])
    wrong = []
    for art in demo_run["manifest"]["articles"]:
        if art["kind"] == "missing":
            continue
        got = scores[art["path"]]
        if got["dup"]:
            continue  # a syndicated copy: scored through its original
        if got["flagged"] != set(art["themes"]):
            wrong.append((art["path"], sorted(got["flagged"]), art["themes"], got["scores"]))
    assert not wrong, wrong


def test_off_theme_and_near_miss_stories_not_flagged(demo_run):
    scores = _scores(demo_run["config"])
    near = [a for a in demo_run["manifest"]["articles"] if a["kind"] in ("near_miss", "off_theme")]
    assert len(near) >= 10
    flagged = [(a["path"], scores[a["path"]]["flagged"]) for a in near if scores[a["path"]]["flagged"]]
    assert flagged == []


def test_deep_match_is_found(demo_run):
    """A chip-rule paragraph deep in a round-up is flagged, and that paragraph is the passage."""
    deep = [a for a in demo_run["manifest"]["articles"] if a.get("deep")]
    assert deep
    with Store.open(demo_run["config"].database, read_only=True) as store:
        for art in deep:
            rows = store.query("SELECT passage_no, passage FROM matches WHERE url LIKE ? AND theme = ?",
                               ["%" + art["path"], art["themes"][0]])[1]
            assert rows, art["path"]
            assert rows[0][0] > 0  # not the title + lead


def test_syndicated_story_appears_once(demo_run):
    groups = {}
    for art in demo_run["manifest"]["articles"]:
        if art.get("syndicated_group"):
            groups.setdefault(art["syndicated_group"], []).append(art["path"])
    assert groups
    config = demo_run["config"]
    with Store.open(config.database, read_only=True) as store:
        for paths in groups.values():
            rows = store.query("SELECT url, duplicate_of FROM articles WHERE "
                               + " OR ".join("url LIKE ?" for _ in paths), ["%" + p for p in paths])[1]
            assert len(rows) == 2
            assert sum(1 for _, dup in rows if dup is None) == 1
            flagged = store.query("SELECT count(*) FROM matches WHERE "
                                  + " OR ".join("url LIKE ?" for _ in paths), ["%" + p for p in paths])[1]
            assert flagged[0][0] == 1
    md = demo_run["first"].digest_files[0].read_text("utf-8")
    assert "Also reported by" in md


def test_failures_recorded_and_run_goes_on(demo_run):
    first = demo_run["first"]
    assert first.status == "partial"
    assert first.stats.feeds_failed == 1
    assert first.stats.feeds_ok == 5
    assert first.stats.articles_new == 40
    with Store.open(demo_run["config"].database, read_only=True) as store:
        failures = store.query("SELECT stage, url, error FROM core.failures")[1]
        health = dict(store.query("SELECT feed_url, last_status FROM feed_health")[1])
        runs = store.query("SELECT status, feeds_failed FROM runs ORDER BY started_at")[1]
    broken = [f for f in failures if f[1].endswith("/broken/feed.xml")]
    assert broken and broken[0][0] == "feed" and "malformed" in broken[0][2]
    missing = [f for f in failures if f[1].endswith("holiday-gift-guide-gadgets-under-100.html")]
    assert missing and missing[0][0] == "article" and "404" in missing[0][2]
    assert health[demo_run["base"] + "/broken/feed.xml"] == "failed"
    assert [r[0] for r in runs][0] == "partial"


def test_404_article_kept_with_feed_text(demo_run):
    with Store.open(demo_run["config"].database, read_only=True) as store:
        rows = store.query("SELECT text_source, text FROM articles WHERE url LIKE '%holiday-gift-guide%'")[1]
    assert rows and rows[0][0] == "feed" and rows[0][1]


def test_second_run_adds_nothing_and_reembeds_nothing(demo_run):
    second = demo_run["second"]
    assert second.stats.articles_new == 0
    assert second.stats.passages_embedded == 0
    assert second.stats.flagged == 0
    assert second.stats.feeds_not_modified == 5  # conditional GET answered 304
    with Store.open(demo_run["config"].database, read_only=True) as store:
        for table, count in demo_run["counts_after_first"].items():
            assert store.query(f"SELECT count(*) FROM core.{table}")[1][0][0] == count, table
    feed_requests = [r for r in demo_run["second_requests"] if r[1].endswith((".xml", ".rdf"))]
    page_requests = [r for r in demo_run["second_requests"] if r[1].endswith(".html")]
    assert page_requests == []
    assert all("if-none-match" in r[2] for r in feed_requests if "broken" not in r[1])


def test_digest_lists_flagged_articles_per_theme(demo_run):
    first = demo_run["first"]
    files = {p.suffix: p for p in first.digest_files}
    assert set(files) == {".md", ".html", ".json", ".png", ".atom"}
    md, html = files[".md"].read_text("utf-8"), files[".html"].read_text("utf-8")
    for theme in demo_run["config"].themes:
        assert f"## {theme.display_title}" in md
    assert "score " in md and "on the theme" in md and "Run statistics" in md and "## Feed health" in md and "Failing:" in md
    assert "holiday-gift-guide" in md  # the failed page is listed
    for title in (f.title for f in first.flagged):
        assert title.split()[0] in md
    assert html.lstrip().startswith("<!DOCTYPE html>") and "<script" not in html
    # the second run flagged nothing new, and says so plainly
    quiet = demo_run["second"].digest_files[0].read_text("utf-8")
    assert "Quiet day: nothing new was flagged" in quiet


def test_public_views_have_documented_columns(demo_run):
    expected = {
        "articles": ["article_id", "url", "canonical_url", "feed_url", "title", "text", "text_source",
                     "author", "published_at", "fetched_at", "language"],
        "matches": ["article_id", "url", "theme", "score", "passage", "run_id", "flagged_at"],
        "runs": ["run_id", "started_at", "finished_at", "status"],
        "feed_health": ["feed_url", "last_status", "last_ok_at", "consecutive_failures", "last_error"],
    }
    with Store.open(demo_run["config"].database, read_only=True) as store:
        for view, cols in expected.items():
            got, _ = store.query(f"SELECT * FROM {view} LIMIT 0")
            assert got[:len(cols)] == cols, view

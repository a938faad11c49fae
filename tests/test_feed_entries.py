"""No entry of a feed vanishes without a word.

One small feed per kind of loss seen on real feeds (items without titles, JSON Feed 1.1
variants, Atom or RSS in an unknown or prefixed namespace, encodings named only by an iconv
name, illegally nested elements, CDATA sections, RSS module elements), each written here in our
own words, each asserting that its entries are kept. Then what is still dropped is counted with
its reason (caps, unreadable entries, nothing to read) and shown in the health row, `aiwatch
feeds` and the digest; and no text aiwatch stores carries a character XML forbids.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

import pytest
from conftest import local_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from routes import Response, rss

import aiwatch.ingest.parse as parse_module
import aiwatch.ingest.stage as stage_module
from aiwatch.cli import main
from aiwatch.errors import FeedError
from aiwatch.http import Fetched
from aiwatch.ingest.parse import MAX_TITLE_CHARS, NOTHING_TO_READ, parse_feed
from aiwatch.ingest.stage import fetch_feeds
from aiwatch.pipeline import start_run
from aiwatch.report.digest import collect_digest, feed_health_report, render_html, render_markdown
from aiwatch.store import Store
from aiwatch.text import html_to_text, normalize_space, strip_xml_illegal
from aiwatch.urls import url_key

FEED_URL = "http://news.example/feed"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)


def fetched(body: bytes | str, ctype: str = "application/xml") -> Fetched:
    if isinstance(body, str):
        body = body.encode("utf-8")
    return Fetched(FEED_URL, FEED_URL, 200, {"content-type": ctype} if ctype else {}, body)


def channel(items: str, *, decl: str = '<?xml version="1.0" encoding="utf-8"?>', attrs: str = "") -> str:
    return (f'{decl}\n<rss version="2.0"{attrs}><channel><title>Desk</title><link>http://news.example/</link>'
            f"<description>notes</description>{items}</channel></rss>")


def titles(feed) -> list[str]:
    return [e.title for e in feed.entries]


# -- the kinds of loss ---------------------------------------------------------------------------

def test_microblog_items_without_titles_are_kept_each_as_its_own_article():
    # A day page with one anchor per post, posts without any link, and one post with a link
    # of its own: seven items, seven articles.
    posts = "".join(
        f'<item><description>Note {i}: the lab shipped a smaller model today.</description>'
        f'<link>http://news.example/2026/11/20.html#post{i}</link>'
        f'<guid>http://news.example/2026/11/20.html#post{i}</guid></item>' for i in range(3))
    bare = "".join(f"<item><description>Unlinked thought number {i}.</description></item>" for i in range(3))
    own = "<item><description>A longer post.</description><link>http://news.example/long-post</link></item>"
    feed = parse_feed(fetched(channel(posts + bare + own)))
    assert len(feed.entries) == 7 and feed.dropped == ()
    assert titles(feed)[0] == "Note 0: the lab shipped a smaller model today."  # titled by its text
    assert [e.shared_link for e in feed.entries] == [True] * 3 + [False] * 4
    assert len({url_key(e.canonical_url) for e in feed.entries}) == 7  # seven article ids
    assert feed.entries[6].canonical_url == "http://news.example/long-post"


def test_podcast_episodes_sharing_the_home_page_link_are_kept_and_true_repeats_counted(route_server, tmp_path):
    episodes = [{"title": f"Episode {i}", "link": "http://news.example/show", "guid": f"ep-{i}",
                 "description": f"We talk about chips, part {i}."} for i in range(4)]
    repeat = [{"title": "Episode 0", "link": "http://news.example/show", "guid": "ep-0-again",
               "description": "We talk about chips, part 0."}]
    url = route_server.add("/show.xml", Response(200, rss(episodes + repeat)))
    config = local_config(tmp_path / "db.duckdb", [{"url": url}], **{"fetch.articles": False})
    result = fetch_feeds(config, start_run(config, T0), T0)
    assert sorted(e.title for e in result.new_entries) == [f"Episode {i}" for i in range(4)]
    assert all(e.shared_link for e in result.new_entries)
    assert [str(d) for d in result.outcomes[0].dropped] == ["1 dropped (same link as an earlier entry of the feed)"]


def test_json_feed_11_variants_are_read():
    doc = {
        "version": "1.1",  # the number alone, as some generators write it
        "title": "Model notes", "_generator": {"name": "ours", "about": "an extension object"},
        "authors": ["Desk Editor"],  # names given as plain strings
        "items": [
            {"id": "a", "content_text": "First note, no title.", "_ext": {"rank": 1}},
            {"id": "b", "title": "Second", "url": "https://news.example/b",
             "authors": [{"name": "Ann"}, {"url": "https://ann.example"}], "author": {"name": "Old Ann"}},
            {"id": "c", "title": "Third", "author": "Plain Author", "content_html": "<p>Body</p>"},
            ["not", "an", "item"],
        ],
    }
    feed = parse_feed(fetched(json.dumps(doc), "application/feed+json"))
    assert titles(feed) == ["First note, no title.", "Second", "Third"]
    assert [e.author for e in feed.entries] == ["Desk Editor", "Ann", "Plain Author"]
    assert [(d.reason, d.count) for d in feed.dropped] == [("item is not a JSON object", 1)]
    assert "non-standard version" in feed.warning


def test_json_feed_cut_short_keeps_its_whole_items():
    doc = json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "Cut",
                      "items": [{"id": str(i), "title": f"Item {i}", "content_text": "x" * 50} for i in range(3)]})
    feed = parse_feed(fetched(doc[:-60], "application/json"))  # the third item is cut in half
    assert titles(feed) == ["Item 0", "Item 1"] and "cut short" in feed.warning


@pytest.mark.parametrize("body", [
    '<x:feed xmlns:x="http://example.org/unknown"><x:title>T</x:title>'
    '<x:entry><x:id>1</x:id><x:title>One</x:title><x:link href="http://news.example/1"/></x:entry>'
    '<x:entry><x:id>2</x:id><x:title>Two</x:title></x:entry></x:feed>',
    '<feed xmlns="http://example.org/not-atom"><title>T</title><entry><id>1</id><title>One</title>'
    '<link href="/1"/></entry><entry><id>2</id><title>Two</title></entry></feed>',
    '<atom:feed><atom:title>T</atom:title><atom:entry><atom:id>1</atom:id><atom:title>One</atom:title>'
    '<atom:link href="http://news.example/1"/></atom:entry><atom:entry><atom:id>2</atom:id>'
    '<atom:title>Two</atom:title></atom:entry></atom:feed>',  # the prefix never declared
    '<r:rss xmlns:r="http://example.org/rss" version="2.0"><r:channel><r:title>T</r:title>'
    '<r:item><r:title>One</r:title><r:link>http://news.example/1</r:link></r:item>'
    '<r:item><r:title>Two</r:title></r:item></r:channel></r:rss>',
], ids=["prefixed-unknown-ns", "default-unknown-ns", "undeclared-prefix", "prefixed-rss"])
def test_feeds_in_an_unknown_or_prefixed_namespace_keep_their_entries(body):
    feed = parse_feed(fetched('<?xml version="1.0"?>' + body))
    assert titles(feed) == ["One", "Two"] and feed.dropped == ()
    assert feed.entries[0].link == "http://news.example/1"


@pytest.mark.parametrize("label, codec, text", [
    ("windows-31j", "cp932", "半導体の輸出規制"),
    ("x-sjis", "cp932", "半導体の輸出規制"),
    ("eucJP-ms", "euc_jp", "半導体の輸出規制"),
    ("ISO-2022-JP", "iso2022_jp", "半導体の輸出規制"),  # 7-bit: valid ASCII, still Japanese
    ("x-mac-cyrillic", "mac_cyrillic", "Новости о чипах"),
    ("koi8-ru", "koi8_u", "Новини про чипи"),
    ("MS-EE", "cp1250", "Środa: nowe układy"),
    ("cspc850multilingual", "cp850", "Café über Straße"),
    ("ebcdic-cp-us", "cp037", "Café: new chips"),  # the declaration itself is EBCDIC
    ("ibm500", "cp500", "Café: new chips"),
])
def test_encodings_named_only_by_an_iconv_name(label, codec, text):
    body = channel(f"<item><title>{text}</title><link>http://news.example/1</link></item>"
                   f"<item><title>Second</title></item>",
                   decl=f'<?xml version="1.0" encoding="{label}"?>').encode(codec)
    feed = parse_feed(fetched(body, ""))
    assert titles(feed) == [text, "Second"] and feed.warning is None


@pytest.mark.parametrize("inside", [
    "<textInput><title>Search</title><name>q</name><link>http://news.example/s</link>"
    "<description>d</description></textInput>",
    '<gml:pos xmlns:gml="http://www.opengis.net/gml">45.2 7.6</gml:pos>',
    '<creativeCommons:license xmlns:creativeCommons="http://backend.userland.com/creativeCommonsRssModule">'
    "<content>by</content></creativeCommons:license>",
    "<width><content>640</content></width>",
], ids=["textinput", "gml-pos", "cc-license", "width"])
def test_illegally_nested_elements_cost_no_entry(inside):
    # Each of these inside an item made feedparser raise, and the whole feed was lost.
    body = channel(f"<item><title>First</title><link>http://news.example/1</link>{inside}</item>"
                   "<item><title>Second</title><link>http://news.example/2</link></item>")
    feed = parse_feed(fetched(body))
    assert titles(feed) == ["First", "Second"] and feed.dropped == ()
    assert "tolerant reader" in feed.warning


def test_items_nested_in_items_and_entries_in_content_are_not_lost_or_double_counted():
    body = channel("<item><title>Outer</title><item><title>Inner</title></item></item>"
                   "<item><title>Next</title><description><p>an <item>inline</item> word</p></description></item>")
    feed = parse_feed(fetched(body))
    assert "Outer" in titles(feed) and "Next" in titles(feed) and feed.dropped == ()


def test_cdata_sections_are_read_in_well_formed_and_broken_feeds():
    items = ("<item><title><![CDATA[Chips & <b>tools</b>]]></title>"
             "<link><![CDATA[http://news.example/a?x=1&y=2]]></link>"
             "<description><![CDATA[<p>Text with </item> inside]]></description></item>"
             "<item><title>Split</title><description><![CDATA[a]]]]><![CDATA[>b]]></description></item>"
             "<item><title>Plain</title></item>")
    for body in (channel(items), channel("<item><title>Broken <b>markup</title></item>" + items)):
        feed = parse_feed(fetched(body))
        assert titles(feed)[-3:] == ["Chips & tools", "Split", "Plain"] and feed.dropped == ()
        first = feed.entries[-3]
        assert first.link == "http://news.example/a?x=1&y=2" and first.summary == "Text with inside"


def test_rss_module_elements_are_not_taken_for_entries():
    body = """<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
  xmlns:content="http://purl.org/rss/1.0/modules/content/" xmlns:dc="http://purl.org/dc/elements/1.1/"
  xmlns:slash="http://purl.org/rss/1.0/modules/slash/" xmlns:media="http://search.yahoo.com/mrss/">
<channel rdf:about="http://news.example/"><title>Modules</title><link>http://news.example/</link></channel>
<item rdf:about="http://news.example/1"><title>One</title><dc:creator>Desk</dc:creator>
  <slash:comments>4</slash:comments><media:title>Not the title</media:title>
  <content:items><rdf:Bag><rdf:li><content:item><rdf:value>part one</rdf:value></content:item></rdf:li>
  <rdf:li><content:item><rdf:value>part two</rdf:value></content:item></rdf:li></rdf:Bag></content:items></item>
<item rdf:about="http://news.example/2"><title>Two</title></item>
</rdf:RDF>"""
    feed = parse_feed(fetched(body))
    assert titles(feed) == ["One", "Two"] and feed.dropped == ()
    assert feed.entries[0].author == "Desk"
    assert [e.link for e in feed.entries] == ["http://news.example/1", "http://news.example/2"]  # rdf:about


# -- what is still dropped is counted ----------------------------------------------------------------

def test_entries_past_the_cap_are_dropped_and_counted():
    body = channel("".join(f"<item><title>N{i}</title><guid>{i}</guid></item>" for i in range(5)))
    feed = parse_feed(fetched(body), max_entries=3)
    assert titles(feed) == ["N0", "N1", "N2"]
    assert [(d.reason, d.count) for d in feed.dropped] == [("over the 3-entry cap", 2)]
    doc = {"version": "https://jsonfeed.org/version/1.1", "items": [{"id": str(i), "title": "t"} for i in range(5)]}
    assert [str(d) for d in parse_feed(fetched(json.dumps(doc)), max_entries=4).dropped] == [
        "1 dropped (over the 4-entry cap)"]


def test_a_huge_title_is_cut_at_a_word_and_bodies_are_capped():
    words = ("semiconductor " * 80_000).strip()  # about 1.1 MB
    body = channel(f"<item><title>{words}</title><description>{words}</description>"
                   f"<link>http://news.example/1</link></item>")
    (e,) = parse_feed(fetched(body)).entries
    assert len(e.title) <= MAX_TITLE_CHARS and e.title.endswith("semiconductor…")
    assert len(e.summary) <= parse_module.MAX_SUMMARY_CHARS and e.summary.endswith("…")


def test_an_entry_that_raises_is_dropped_alone(monkeypatch):
    real = parse_module._feedparser_entry

    def odd(fetched, e, element=None):
        if e.get("title") == "Odd":
            raise TypeError("an unexpected shape")
        return real(fetched, e, element)

    monkeypatch.setattr(parse_module, "_feedparser_entry", odd)
    feed = parse_feed(fetched(channel("<item><title>Fine</title></item><item><title>Odd</title></item>"
                                      "<item><title>Also fine</title></item>")))
    assert titles(feed) == ["Fine", "Also fine"]
    assert [str(d) for d in feed.dropped] == ["1 dropped (unreadable entry: TypeError: an unexpected shape)"]


def test_a_json_item_that_raises_is_dropped_alone(monkeypatch):
    real = parse_module.read_item
    monkeypatch.setattr(parse_module, "read_item",
                        lambda obj, *a: 1 / 0 if obj.get("id") == "bad" else real(obj, *a))
    doc = {"version": "https://jsonfeed.org/version/1.1",
           "items": [{"id": "ok", "title": "Kept"}, {"id": "bad", "title": "Lost"}]}
    feed = parse_feed(fetched(json.dumps(doc)))
    assert titles(feed) == ["Kept"] and feed.dropped[0].reason.startswith("unreadable entry: ZeroDivisionError")


@pytest.fixture
def cli_logging():
    """`main` points the aiwatch logger at this test's captured stderr: put it back afterwards."""
    logger = logging.getLogger("aiwatch")
    handlers, propagate, level = list(logger.handlers), logger.propagate, logger.level
    yield
    logger.handlers[:] = handlers
    logger.propagate, logger.level = propagate, level


def test_health_row_feeds_command_and_digest_say_how_many_were_dropped_and_why(route_server, tmp_path, capsys,
                                                                               cli_logging):
    items = [{"title": f"Story {i}", "link": f"http://news.example/{i}", "guid": str(i)} for i in range(5)]
    url = route_server.add("/busy.xml", Response(200, rss(items + [{"guid": "nothing-here"}])))
    config = local_config(tmp_path / "db.duckdb", [{"url": url, "name": "Busy Wire"}],
                          **{"fetch.articles": False, "fetch.max_feed_entries": 3})
    result = fetch_feeds(config, start_run(config, T0), T0)
    assert [e.title for e in result.new_entries] == ["Story 0", "Story 1", "Story 2"]
    detail = "3 dropped (over the 3-entry cap)"
    with Store.open(config.database) as store:
        row = store.feed_health()[url]
        assert (row["last_status"], row["entries_last_fetch"], row["entries_dropped"], row["dropped_detail"]) == (
            "ok", 3, 3, detail)
        report = feed_health_report(store, config, T0, T0)
        assert [(f.name, f.detail) for f in report.dropping] == [("Busy Wire", detail)]
        data = collect_digest(store, config, T0)
    assert f"Dropping entries: Busy Wire: {detail}" in render_markdown(data)
    assert f"Busy Wire: {detail}" in render_html(data)
    cfg = tmp_path / "aiwatch.toml"
    cfg.write_text(f'[storage]\ndatabase = "{config.database}"\n\n[[feeds]]\nurl = "{url}"\nname = "Busy Wire"\n')
    assert main(["feeds", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert detail in out and "1 feeds, 0 failing, 1 dropping entries" in out


def test_empty_items_are_counted_as_nothing_to_read(route_server, tmp_path):
    items = [{"title": "Real", "link": "http://news.example/r"}, {"category": "chips"}]
    url = route_server.add("/thin.xml", Response(200, rss(items)))
    config = local_config(tmp_path / "db.duckdb", [{"url": url}], **{"fetch.articles": False})
    (outcome,) = fetch_feeds(config, start_run(config, T0), T0).outcomes
    assert [(d.reason, d.count) for d in outcome.dropped] == [(NOTHING_TO_READ, 1)]


# -- one bad feed never ends the run ----------------------------------------------------------------

def test_an_unexpected_error_in_one_feed_fails_that_feed_only(route_server, tmp_path, monkeypatch, caplog):
    good = route_server.add("/good.xml", Response(200, rss([{"title": "Fine", "link": "http://news.example/f"}])))
    bad = route_server.add("/bad.xml", Response(200, rss([{"title": "Trap", "link": "http://news.example/t"}])))
    real = stage_module.parse_feed

    def trap(fetched, **kw):
        if fetched.requested_url == bad:
            raise TypeError("unsupported operand")
        return real(fetched, **kw)

    monkeypatch.setattr(stage_module, "parse_feed", trap)
    config = local_config(tmp_path / "db.duckdb", [{"url": good}, {"url": bad}], **{"fetch.articles": False})
    with caplog.at_level(logging.WARNING, logger="aiwatch"):
        result = fetch_feeds(config, start_run(config, T0), T0)
    by_url = {o.feed_url: o for o in result.outcomes}
    assert by_url[good].status == "ok" and [e.title for e in result.new_entries] == ["Fine"]
    assert (by_url[bad].status, by_url[bad].error) == ("failed", "unexpected error: TypeError: unsupported operand")
    assert [r.getMessage() for r in caplog.records if bad in r.getMessage()] == [
        f"feed {bad}: unexpected error: TypeError: unsupported operand"]
    with Store.open(config.database) as store:
        assert store.feed_health()[bad]["last_error"] == "unexpected error: TypeError: unsupported operand"


def test_links_the_pipeline_cannot_use_cost_only_the_link(route_server, tmp_path):
    # An at:// URI and a port that is not a number used to raise in the feeds stage.
    body = channel('<item><title>Bridged</title><link uri="at://did:plc:abc/app.post/1">http://news.example/b</link>'
                   "</item><item><title>Bad port</title><link>http://news.example:port/x</link></item>"
                   "<item><title>Mail</title><link>mailto:desk@news.example</link></item>")
    url = route_server.add("/links.xml", Response(200, body.encode()))
    config = local_config(tmp_path / "db.duckdb", [{"url": url}], **{"fetch.articles": False})
    result = fetch_feeds(config, start_run(config, T0), T0)
    assert result.outcomes[0].status == "ok"
    assert sorted(e.title for e in result.new_entries) == ["Bad port", "Bridged", "Mail"]
    assert all(e.link in (None, "http://news.example/b") for e in result.new_entries)


# -- no XML-illegal character in stored text --------------------------------------------------------

def test_xml_illegal_characters_never_reach_stored_text():
    bad = "Chip\u0001 rules\ufffe and\uffff more\ud800 news\x0b"
    assert strip_xml_illegal(bad) == "Chip rules and more news" == normalize_space(bad) == html_to_text(bad)
    assert html_to_text(f"<p>{bad}</p>") == "Chip rules and more news"
    doc = {"version": "https://jsonfeed.org/version/1.1", "title": f"Feed {bad}",
           "items": [{"id": f"id{bad}", "title": bad, "content_text": bad, "content_html": "",
                      "url": "https://news.example/x", "authors": [{"name": bad}]}]}
    feed = parse_feed(fetched(json.dumps(doc)))  # json.dumps writes \ud800 as an escape, as feeds do
    (e,) = feed.entries
    for text in (feed.title, e.entry_id, e.title, e.content, e.author):
        assert strip_xml_illegal(text) == text
        text.encode("utf-8")  # a lone surrogate would raise here (and in DuckDB)
    atom = etree.Element("entry")
    etree.SubElement(atom, "title").text = e.title  # lxml refuses XML-illegal text
    assert etree.fromstring(etree.tostring(atom)).findtext("title") == "Chip rules and more news"


# -- OPML ------------------------------------------------------------------------------------------

def test_utf16_opml_with_an_entity_bomb_is_refused_and_never_expanded():
    from aiwatch.errors import AiwatchError
    from aiwatch.ingest.subscriptions import parse_opml
    lol = "".join(f'<!ENTITY l{i} "{"&l%d;" % (i - 1) * 10 if i else "lol"}">' for i in range(10))
    doc = (f'<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE opml [{lol}]><opml version="2.0"><body>'
           f'<outline text="&l9;" xmlUrl="https://news.example/feed"/></body></opml>')
    for data in (doc.encode("utf-16"), doc.encode("utf-16-le"), doc.encode("utf-16-be")):
        with pytest.raises(AiwatchError, match="refused"):
            parse_opml(data)
    plain = ('<?xml version="1.0" encoding="UTF-16"?><opml version="2.0"><body>'
             '<outline text="Caf&eacute; Wire" xmlUrl="https://news.example/feed"/></body></opml>')
    (spec,) = parse_opml(plain.encode("utf-16"))
    assert (spec.url, spec.name) == ("https://news.example/feed", "Café Wire")


# -- property: nothing but FeedError ----------------------------------------------------------------

SEEDS = [channel("<item><title>A</title><link>http://news.example/a</link></item>").encode(),
         json.dumps({"version": "1.1", "items": [{"id": "1", "title": "A"}]}).encode(),
         b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><entry><title>A</title></entry></feed>']


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=800),
    st.tuples(st.sampled_from(SEEDS), st.integers(0, 400), st.binary(max_size=40)).map(
        lambda t: t[0][:t[1]] + t[2] + t[0][t[1]:]),
), st.sampled_from(["application/xml", "application/json", ""]), st.integers(1, 3))
def test_arbitrary_bytes_raise_nothing_but_feed_error(body, ctype, cap):
    try:
        feed = parse_feed(fetched(body, ctype), max_entries=cap)
    except FeedError as exc:
        assert exc.reason
    else:
        assert len(feed.entries) <= cap and all(e.entry_id and e.title for e in feed.entries)
        assert all(d.count > 0 and d.reason for d in feed.dropped)


def test_a_post_sharing_its_page_is_built_from_the_feed_text_without_fetching_the_page(route_server, tmp_path):
    from aiwatch.articles.build import build_article
    from aiwatch.http import HttpClient
    day = route_server.add("/2026/11/20.html", Response(200, b"<html><body><p>all the day's posts</p></body></html>",
                                                        {"content-type": "text/html"}))
    body = channel("".join(f"<item><description>Post {i} about export rules.</description><link>{day}#p{i}</link>"
                           f"<guid>{day}#p{i}</guid></item>" for i in range(2)))
    first, second = parse_feed(fetched(body)).entries
    config = local_config(tmp_path / "db.duckdb", [])
    with HttpClient.from_config(config) as client:
        built = [build_article(config, client, e, "Desk", T0) for e in (first, second)]
    assert not route_server.requests
    assert [b.article.text for b in built] == ["Post 0 about export rules.", "Post 1 about export rules."]
    assert [b.article.url for b in built] == [f"{day}#p0", f"{day}#p1"]
    assert built[0].article.article_id != built[1].article.article_id and built[0].article.text_source == "feed"

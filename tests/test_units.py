"""Pure functions: URL canonicalisation, passages, feed parsing, theme versions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiwatch.errors import FeedError
from aiwatch.ingest.parse import parse_feed
from aiwatch.http import Fetched
from aiwatch.text import content_hash, html_to_text, passages
from aiwatch.relevance.themes import Theme, find_terms
from aiwatch.urls import canonical_url, url_key


@pytest.mark.parametrize("raw, expected", [
    ("HTTPS://Example.COM:443/a/b?utm_source=x&id=3#frag", "https://example.com/a/b?id=3"),
    ("http://example.com:80", "http://example.com/"),
    ("http://example.com:8080/x?fbclid=1&gclid=2&mc_cid=3", "http://example.com:8080/x"),
    ("https://example.com/a//b?b=2&a=1", "https://example.com/a/b?b=2&a=1"),
    ("https://example.com/caf%C3%A9", "https://example.com/caf%C3%A9"),
])
def test_canonical_url(raw, expected):
    assert canonical_url(raw) == expected


def test_tracking_variants_share_one_id():
    a = "https://news.example.com/story?id=7&utm_campaign=feed&utm_medium=rss"
    b = "https://NEWS.example.com/story?id=7&fbclid=abc#comments"
    assert url_key(a) == url_key(b)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"https?://[A-Za-z0-9.-]{1,20}(:[0-9]{1,5})?(/[A-Za-z0-9%._~-]{0,12}){0,4}"
                     r"(\?[a-z_]{1,8}=[A-Za-z0-9%]{0,6}(&[a-z_]{1,8}=[A-Za-z0-9]{0,6}){0,3})?", fullmatch=True))
def test_canonical_url_is_idempotent(url):
    try:
        once = canonical_url(url)
    except ValueError:  # an out-of-range port: not a URL
        return
    assert canonical_url(once) == once


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=400)
                .map(lambda t: " ".join(t.split())).filter(bool), min_size=1, max_size=12))
def test_passages_lose_no_text(paragraphs):
    text = "\n\n".join(paragraphs)
    out = passages("", text, max_words=40, max_passages=1000)
    assert " ".join(" ".join(out).split()) == " ".join(text.split())
    assert all(len(p.split()) <= 40 for p in out)


def test_first_passage_is_title_plus_lead():
    out = passages("Big news", "Lead paragraph here.\n\nSecond paragraph.", max_words=3, max_passages=8)
    assert out[0].startswith("Big news\nLead paragraph here.")
    assert out[-1] == "Second paragraph."


def test_passages_capped():
    text = "\n\n".join(f"paragraph number {i} with some words" for i in range(100))
    assert len(passages("t", text, max_words=10, max_passages=5)) == 5


def test_html_to_text_drops_tags_and_scripts():
    assert html_to_text("<p>Hello <b>world</b> &amp; friends</p><script>alert(1)</script>") == "Hello world & friends"


def test_content_hash_ignores_case_and_spacing():
    assert content_hash("The  chip ban,\nexpanded.") == content_hash("the chip ban expanded")


def _fetched(body: bytes, ctype: str = "application/xml") -> Fetched:
    return Fetched("http://feeds.example/f.xml", "http://feeds.example/f.xml", 200, {"content-type": ctype}, body)


def test_parse_rss_entries_normalised():
    body = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>
    <item><title>A &amp; B</title><link>http://x.example/a</link><guid>g1</guid>
    <description>&lt;p&gt;Summary &lt;b&gt;bold&lt;/b&gt;&lt;/p&gt;</description>
    <pubDate>Tue, 17 Nov 2026 08:00:00 GMT</pubDate></item>
    <item><title>No guid or date</title><description>Only text</description></item>
    </channel></rss>"""
    feed = parse_feed(_fetched(body))
    assert feed.title == "T" and feed.warning is None
    first, second = feed.entries
    assert first.entry_id.endswith("g1")  # feedparser reads a guid as a permalink, resolved
    assert (first.link, first.title, first.summary) == ("http://x.example/a", "A & B", "Summary bold")
    assert first.published.isoformat() == "2026-11-17T08:00:00+00:00"
    assert second.entry_id.startswith("sha:") and second.published is None
    assert parse_feed(_fetched(body)).entries[1].entry_id == second.entry_id  # stable


def test_malformed_feed_without_entries_is_an_error():
    with pytest.raises(FeedError, match="malformed"):
        parse_feed(_fetched(b"<?xml version='1.0'?><rss><channel><title>cut off"))


def test_html_page_is_not_a_feed():
    with pytest.raises(FeedError):
        parse_feed(_fetched(b"<html><body><p>Hello</p></body></html>", "text/html"))


def test_bozo_feed_with_entries_is_a_warning():
    body = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>
    <item><title>One &nbsp; two</title><link>http://x.example/1</link></item>
    <item><title>Three</title><link>http://x.example/2</link></item></channel>"""
    feed = parse_feed(_fetched(body))
    assert len(feed.entries) == 2
    assert feed.warning and "not well-formed" in feed.warning


def test_theme_version_changes_with_any_edit():
    t = Theme("x_theme", "A description of the theme", 0.5, ("pos",), ("neg",))
    assert t.version == Theme("x_theme", "A description of the theme", 0.5, ("pos",), ("neg",)).version
    assert t.version != Theme("x_theme", "A description of the theme", 0.55, ("pos",), ("neg",)).version
    assert t.version != Theme("x_theme", "A description of the theme!", 0.5, ("pos",), ("neg",)).version


def test_find_terms_whole_words_and_cjk():
    assert find_terms("The AI chip rules", ("AI", "chip")) == ["AI", "chip"]
    assert find_terms("The rain in Spain", ("AI",)) == []
    assert find_terms("美国将其列入实体清单", ("实体清单",)) == ["实体清单"]

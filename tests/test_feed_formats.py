"""parse_feed on every feed format, on broken and mis-encoded bodies, and on hostile XML.

Every document is written here, inline, so that each test says what it feeds in and what must
come out. The hostile documents are built by the tests themselves: entity expansion (billion
laughs, quadratic blow-up), external entities and DTDs (a real HTTP server on 127.0.0.1 counts
the requests it gets: there must be none), and bodies that name a local file.
"""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from routes import Response

from aiwatch.errors import FeedError
from aiwatch.ingest.body import MAX_DECOMPRESSED_BYTES, decode_body, prepare_xml
from aiwatch.ingest.parse import parse_feed
from aiwatch.http import Fetched, HttpClient

FEED_URL = "http://feeds.example/news/feed.xml"


def fetched(body: bytes | str, ctype: str = "application/xml", *, url: str = FEED_URL,
            requested: str | None = None) -> Fetched:
    if isinstance(body, str):
        body = body.encode("utf-8")
    return Fetched(requested or url, url, 200, {"content-type": ctype} if ctype else {}, body)


def rss(items: str, *, decl: str = '<?xml version="1.0" encoding="utf-8"?>', title: str = "T") -> str:
    return f"""{decl}
<rss version="2.0"><channel><title>{title}</title><link>http://feeds.example/</link>
<description>d</description>{items}</channel></rss>"""


def item(title: str = "Hello", link: str = "http://feeds.example/a", text: str = "Body") -> str:
    return f"<item><title>{title}</title><link>{link}</link><description>{text}</description></item>"


def all_text(feed) -> str:
    return "\n".join(f"{e.entry_id} {e.link} {e.title} {e.summary} {e.content} {e.author}" for e in feed.entries)


# -- formats -----------------------------------------------------------------------------------

def test_rss_091_with_netscape_doctype_and_html_entities():
    body = """<?xml version="1.0" encoding="ISO-8859-1"?>
<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN"
  "http://my.netscape.com/publish/formats/rss-0.91.dtd">
<rss version="0.91"><channel><title>Old&nbsp;school</title><link>http://feeds.example/</link>
<description>d</description><language>en-us</language>
<item><title>Caf&eacute; opens&hellip;</title><link>http://feeds.example/cafe</link>
<description>It&rsquo;s open</description></item></channel></rss>"""
    feed = parse_feed(fetched(body))
    assert feed.title == "Old school" and feed.warning is None
    (e,) = feed.entries
    assert (e.title, e.summary, e.link) == ("Café opens…", "It’s open", "http://feeds.example/cafe")


def test_rss_092_items_without_links():
    body = """<?xml version="1.0"?><rss version="0.92"><channel><title>T</title>
<link>http://feeds.example/</link><description>d</description>
<item><title>First</title><description>One</description></item>
<item><description>Only a description</description></item></channel></rss>"""
    feed = parse_feed(fetched(body))
    assert [(e.title, e.summary, e.link) for e in feed.entries] == [
        ("First", "One", None), ("Only a description", "Only a description", None)]  # titled by its text


def test_rss_10_rdf():
    body = """<?xml version="1.0" encoding="utf-8"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
         xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel rdf:about="http://feeds.example/"><title>RDF feed</title><link>http://feeds.example/</link>
    <description>d</description></channel>
  <item rdf:about="http://feeds.example/1"><title>One</title><link>http://feeds.example/1</link>
    <description>First item</description><dc:date>2026-11-17T08:00:00+02:00</dc:date>
    <dc:creator>Ann Author</dc:creator></item>
  <item rdf:about="http://feeds.example/2"><title>Two</title><link>http://feeds.example/2</link></item>
</rdf:RDF>"""
    feed = parse_feed(fetched(body, "application/rdf+xml"))
    assert feed.title == "RDF feed"
    first, second = feed.entries
    assert (first.title, first.link, first.author) == ("One", "http://feeds.example/1", "Ann Author")
    assert first.published == datetime(2026, 11, 17, 6, 0, tzinfo=timezone.utc)
    assert second.title == "Two"


def test_rss_20_content_encoded():
    body = rss("""<item><title>Full</title><link>http://feeds.example/full</link><guid>urn:x:1</guid>
<description>Short</description>
<content:encoded><![CDATA[<p>Long <b>text</b> &nbsp;here</p><p>Second</p>]]></content:encoded>
<pubDate>Tue, 17 Nov 2026 08:00:00 +0100</pubDate></item>""").replace(
        '<rss version="2.0">', '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">')
    (e,) = parse_feed(fetched(body)).entries
    assert (e.entry_id, e.summary) == ("urn:x:1", "Short")
    assert e.content == "Long text here\n\nSecond"
    assert e.published == datetime(2026, 11, 17, 7, 0, tzinfo=timezone.utc)


def test_atom_03():
    body = """<?xml version="1.0" encoding="utf-8"?>
<feed version="0.3" xmlns="http://purl.org/atom/ns#">
  <title>Atom 0.3</title><link rel="alternate" type="text/html" href="http://feeds.example/"/>
  <modified>2026-11-17T08:00:00Z</modified>
  <entry><title>Old Atom</title><link rel="alternate" type="text/html" href="http://feeds.example/o"/>
    <id>tag:feeds.example,2026:1</id><issued>2026-11-16T08:00:00Z</issued>
    <modified>2026-11-17T08:00:00Z</modified><summary>Summary 0.3</summary>
    <author><name>Bob</name></author></entry>
</feed>"""
    feed = parse_feed(fetched(body, "application/atom+xml"))
    (e,) = feed.entries
    assert feed.title == "Atom 0.3"
    assert (e.title, e.link, e.entry_id, e.summary, e.author) == (
        "Old Atom", "http://feeds.example/o", "tag:feeds.example,2026:1", "Summary 0.3", "Bob")
    assert e.published == datetime(2026, 11, 16, 8, 0, tzinfo=timezone.utc)


def test_atom_10_with_xhtml_content():
    body = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title type="html">A &amp;amp; B</title>
  <id>urn:feed</id><updated>2026-11-17T08:00:00Z</updated>
  <entry><title>New Atom</title><link href="http://feeds.example/n"/><id>urn:n</id>
    <updated>2026-11-17T09:30:00+01:00</updated>
    <content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>Para&#160;one</p></div></content>
  </entry>
</feed>"""
    feed = parse_feed(fetched(body, "application/atom+xml"))
    (e,) = feed.entries
    assert feed.title == "A & B"
    assert (e.title, e.link, e.entry_id, e.content) == ("New Atom", "http://feeds.example/n", "urn:n", "Para one")
    assert e.published == datetime(2026, 11, 17, 8, 30, tzinfo=timezone.utc)


# -- JSON Feed ---------------------------------------------------------------------------------

def test_json_feed_11():
    doc = {
        "version": "https://jsonfeed.org/version/1.1", "title": "JSON news",
        "authors": [{"name": "Feed Author"}],
        "items": [
            {"id": "1", "url": "/posts/1", "title": "First", "content_html": "<p>Hello <b>there</b></p>",
             "summary": "Sum", "date_published": "2026-11-17T08:00:00Z", "authors": [{"name": "Ann"}, {"name": "Bo"}]},
            {"id": 2, "external_url": "https://elsewhere.example/x", "content_text": "Plain   text",
             "date_modified": "2026-11-17T10:00:00+02:00"},
            {"url": "relative/3", "title": "No id"},
            "not an item",
        ],
    }
    feed = parse_feed(fetched(json.dumps(doc), "application/feed+json", url="https://site.example/blog/feed.json"))
    assert feed.title == "JSON news" and feed.warning is None
    first, second, third = feed.entries
    assert (first.entry_id, first.link, first.title, first.summary, first.content, first.author) == (
        "1", "https://site.example/posts/1", "First", "Sum", "Hello there", "Ann, Bo")
    assert first.published == datetime(2026, 11, 17, 8, 0, tzinfo=timezone.utc)
    assert (second.entry_id, second.link, second.content, second.author) == (
        "2", "https://elsewhere.example/x", "Plain text", "Feed Author")
    assert second.published == datetime(2026, 11, 17, 8, 0, tzinfo=timezone.utc)
    assert second.title == "Plain text"  # no title: the start of its text stands in, as for RSS
    assert (third.entry_id, third.link) == ("https://site.example/blog/relative/3",) * 2


def test_json_feed_10_detected_by_body_whatever_the_content_type():
    doc = {"version": "https://jsonfeed.org/version/1", "title": "v1",
           "items": [{"id": "a", "url": "https://site.example/a", "title": "A",
                      "author": {"name": "Solo"}, "date_published": "2026-11-17T08:00:00-05:00"}]}
    body = b"\xef\xbb\xbf \n" + json.dumps(doc).encode()  # a BOM and whitespace first
    for ctype in ("application/xml", "text/plain", ""):
        (e,) = parse_feed(fetched(body, ctype)).entries
        assert (e.entry_id, e.author, e.published) == (
            "a", "Solo", datetime(2026, 11, 17, 13, 0, tzinfo=timezone.utc))


def test_json_feed_entry_ids_are_stable_without_id_or_url():
    doc = {"version": "https://jsonfeed.org/version/1.1", "items": [{"content_text": "Only text"}]}
    one = parse_feed(fetched(json.dumps(doc), "application/json")).entries[0]
    two = parse_feed(fetched(json.dumps(doc), "application/json")).entries[0]
    assert one.entry_id.startswith("sha:") and one.entry_id == two.entry_id


def test_xml_served_as_json_is_read_as_xml():
    assert [e.title for e in parse_feed(fetched(rss(item("Mislabelled")), "application/json")).entries] \
        == ["Mislabelled"]


@pytest.mark.parametrize("body, reason", [
    (b'{"version": "https://jsonfeed.org/version/1", "items": [', "invalid JSON"),
    (b'{"title": "an API response", "items": []}', "not a JSON Feed"),
    (b'{"version": "https://jsonfeed.org/version/1.1", "items": {"a": 1}}', "not a JSON Feed"),
    (b'["a", "list"]', "not a JSON Feed"),
    (b"{" + b'"a":{' * 100_000, "invalid JSON"),  # nesting deep enough to exhaust the recursion limit
])
def test_json_that_is_not_a_json_feed_is_a_clear_error(body, reason):
    with pytest.raises(FeedError, match=reason):
        parse_feed(fetched(body, "application/json"))


# -- encodings and bodies ---------------------------------------------------------------------------

UNICODE_FEED = rss(item("Grüße aus Köln — ünïcödé", text="Ελληνικά και русский"), decl="")


@pytest.mark.parametrize("codec, decl", [
    ("utf-16-le", ""),
    ("utf-16-le", '<?xml version="1.0" encoding="utf-16"?>'),
    ("utf-16-be", ""),
    ("utf-16-be", '<?xml version="1.0" encoding="UTF-16"?>'),
    ("utf-16", '<?xml version="1.0" encoding="utf-16"?>'),  # with a BOM
    ("utf-32-le", ""),
])
def test_utf16_and_utf32_with_or_without_bom(codec, decl):
    body = (decl + UNICODE_FEED.lstrip()).encode(codec)
    (e,) = parse_feed(fetched(body, "")).entries
    assert (e.title, e.summary) == ("Grüße aus Köln — ünïcödé", "Ελληνικά και русский")


def test_latin1_body_declared_as_utf8_is_read_as_latin1_with_a_warning():
    body = rss(item("Café crème à la française"), decl='<?xml version="1.0" encoding="utf-8"?>')
    feed = parse_feed(fetched(body.encode("latin-1"), "application/rss+xml; charset=utf-8"))
    assert feed.entries[0].title == "Café crème à la française"
    assert "utf-8" in feed.warning and "cp1252" in feed.warning


def test_utf8_body_declared_as_latin1_is_read_as_utf8():
    body = rss(item("Café ünïcödé"), decl='<?xml version="1.0" encoding="ISO-8859-1"?>')
    feed = parse_feed(fetched(body.encode("utf-8"), "text/xml; charset=iso-8859-1"))
    assert feed.entries[0].title == "Café ünïcödé" and feed.warning is None


def test_iso_8859_1_label_reads_windows_1252_smart_quotes():
    body = rss(item("It’s “quoted” – €5"), decl='<?xml version="1.0" encoding="iso-8859-1"?>')
    assert parse_feed(fetched(body.encode("cp1252"))).entries[0].title == "It’s “quoted” – €5"


@pytest.mark.parametrize("label", ["bogus", "unicode_escape", "raw_unicode_escape", "utf-7", "rot13", "utf-16"])
def test_unusable_declared_encodings_are_ignored(label):
    body = rss(item("Caf\u00e9 \\ud800 +2AA-"), decl=f'<?xml version="1.0" encoding="{label}"?>')
    assert parse_feed(fetched(body.encode("latin-1"))).entries[0].title == "Caf\u00e9 \\ud800 +2AA-"


def test_charset_from_http_header_when_the_document_declares_none():
    body = rss(item("Новости дня", text="Сегодня в Москве"), decl="").encode("koi8-r")
    (e,) = parse_feed(fetched(body, "text/xml; charset=KOI8-R")).entries
    assert (e.title, e.summary) == ("Новости дня", "Сегодня в Москве")


def test_undeclared_cyrillic_is_detected():
    text = "Сегодня в Москве прошло заседание правительства, посвящённое развитию искусственного интеллекта. "
    body = rss(item("Новости дня", text=text * 3), decl="").encode("cp1251")
    feed = parse_feed(fetched(body, "application/xml"))
    assert feed.entries[0].title == "Новости дня" and "cp1251" in feed.warning


@pytest.mark.parametrize("prefix", [b"\n\n   ", b"\xef\xbb\xbf\r\n \t", b"\xef\xbb\xbf",
                                    b"<br />\n<b>Warning</b>: Cannot modify header information in feed.php\n"])
def test_whitespace_bom_or_junk_before_the_xml_declaration(prefix):
    body = prefix + rss(item("Still read")).encode()
    feed = parse_feed(fetched(body))
    assert [e.title for e in feed.entries] == ["Still read"] and feed.warning is None


def test_html_entities_that_xml_does_not_declare():
    body = rss(item("Caf&eacute;&nbsp;&amp;&nbsp;cr&egrave;me&hellip; &copy;2026 &unknownthing; A&B",
                    link="http://feeds.example/a?x=1&y=2", text="&lt;p&gt;Fine&lt;/p&gt; &#146;s &#0;"))
    feed = parse_feed(fetched(body))
    (e,) = feed.entries
    assert e.title == "Café & crème… ©2026 &unknownthing; A&B"
    assert e.link == "http://feeds.example/a?x=1&y=2"
    assert e.summary == "Fine\n\n’s \ufffd"  # &#146; is windows-1252's quote; &#0; is not a character
    assert feed.warning is None  # all repaired before parsing: nothing left to complain about


def test_control_characters_are_dropped():
    (e,) = parse_feed(fetched(rss(item("Bell\x07 and \x0bvtab\x1f")))).entries
    assert e.title == "Bell and vtab"


def test_gzip_body_without_content_encoding():
    body = gzip.compress(rss(item("Zipped")).encode())
    assert [e.title for e in parse_feed(fetched(body)).entries] == ["Zipped"]
    doc = {"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "z", "title": "Zipped JSON"}]}
    assert parse_feed(fetched(gzip.compress(json.dumps(doc).encode()), "application/json")).entries[0].title \
        == "Zipped JSON"


def test_gzip_body_over_the_cap_is_refused():
    bomb = gzip.compress(b" " * (MAX_DECOMPRESSED_BYTES + 1), compresslevel=9)
    assert len(bomb) < 50_000
    with pytest.raises(FeedError, match="over 10,000,000 bytes once decompressed"):
        parse_feed(fetched(bomb))


def test_corrupt_gzip_body_is_a_clear_error():
    with pytest.raises(FeedError, match="gzip"):
        parse_feed(fetched(b"\x1f\x8b\x08\x00garbage-not-deflate"))


def test_gzip_without_header_over_real_http(route_server):
    route_server.add("/gz.xml", Response(200, gzip.compress(rss(item("Over HTTP")).encode()),
                                         {"Content-Type": "application/rss+xml"}))
    with HttpClient(allow_private=True, timeout=5.0) as client:
        got = client.fetch(route_server.url("/gz.xml"))
    assert [e.title for e in parse_feed(got).entries] == ["Over HTTP"]


def test_decode_body_prefers_valid_utf8_over_a_wrong_label():
    text, codec, note = decode_body("<a>é</a>".encode(), "text/xml; charset=windows-1251")
    assert (text, codec, note) == ("<a>é</a>", "utf_8", None)


# -- links ----------------------------------------------------------------------------------------------

def test_relative_links_resolve_against_the_url_after_redirects():
    body = rss(item("Rel", link="/story/1") + item("Rel2", link="story/2?a=1&amp;b=2"))
    feed = parse_feed(fetched(body, url="https://new.example/feeds/main.xml", requested="http://old.example/rss"))
    assert [e.link for e in feed.entries] == [
        "https://new.example/story/1", "https://new.example/feeds/story/2?a=1&b=2"]
    assert {e.feed_url for e in feed.entries} == {"http://old.example/rss"}  # the feed as configured


def test_xml_base_on_feed_and_entry():
    body = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="http://cdn.example/blog/">
  <title>Based</title><id>urn:f</id><updated>2026-11-17T08:00:00Z</updated>
  <entry><title>One</title><link href="posts/1"/><id>urn:1</id><updated>2026-11-17T08:00:00Z</updated></entry>
  <entry xml:base="/other/"><title>Two</title><link href="2"/><id>urn:2</id>
    <updated>2026-11-17T08:00:00Z</updated></entry>
  <entry xml:base="https://third.example/x/"><title>Three</title><link href="../3"/><id>urn:3</id>
    <updated>2026-11-17T08:00:00Z</updated></entry>
</feed>"""
    feed = parse_feed(fetched(body, "application/atom+xml"))
    assert [e.link for e in feed.entries] == [
        "http://cdn.example/blog/posts/1", "http://cdn.example/other/2", "https://third.example/3"]


def test_relative_atom_link_without_xml_base_uses_the_feed_url():
    body = """<feed xmlns="http://www.w3.org/2005/Atom"><title>F</title>
<entry><title>A</title><link rel="alternate" href="../a.html"/><id>urn:a</id></entry></feed>"""
    assert parse_feed(fetched(body)).entries[0].link == "http://feeds.example/a.html"


# -- missing fields ------------------------------------------------------------------------------------

def test_entries_without_guid_link_or_date_get_stable_distinct_ids():
    body = rss("<item><title>Only a title</title></item><item><description>Only text</description></item>"
               "<item><pubDate>Tue, 17 Nov 2026 08:00:00 GMT</pubDate></item>")
    first = parse_feed(fetched(body)).entries
    again = parse_feed(fetched(body)).entries
    assert len(first) == 3  # the parser finds all three...
    assert [e.is_empty for e in first] == [False, False, True]  # ...the pipeline skips the empty one
    assert all(e.entry_id.startswith("sha:") for e in first)
    assert len({e.entry_id for e in first}) == 3
    assert [e.entry_id for e in first] == [e.entry_id for e in again]


# -- not feeds, broken feeds ---------------------------------------------------------------------------

@pytest.mark.parametrize("body, ctype, reason", [
    (b"", "application/xml", "empty document"),
    (b"  \n ", "application/xml", "empty document"),
    (b"<!-- only a comment -->", "application/xml", "no XML element"),
    (b"just some text", "text/plain", "no XML element"),
    (b"<!DOCTYPE html><html><head><title>x</title></head><body><p>Hi<br></body></html>", "text/html", "HTML page"),
    (b"<?xml version='1.0'?><note><to>Tove</to></note>", "application/xml", "root element <note>"),
    (b"<?xml version='1.0'?><rss version='2.0'><channel><title>cut", "application/xml", "malformed"),
])
def test_documents_that_are_not_feeds(body, ctype, reason):
    with pytest.raises(FeedError, match=reason):
        parse_feed(fetched(body, ctype))


def test_truncated_feed_keeps_the_entries_before_the_cut():
    body = rss(item("One") + item("Two")).encode()
    feed = parse_feed(fetched(body[:body.index(b"<title>Two")]))
    assert [e.title for e in feed.entries if not e.is_empty] == ["One"]  # the cut item has nothing in it
    assert "not well-formed" in feed.warning


# -- hostile XML ---------------------------------------------------------------------------------------

def billion_laughs(levels: int = 10, fan_out: int = 10) -> str:
    decls = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * fan_out}">' for i in range(1, levels + 1)]
    doctype = "<!DOCTYPE rss [\n" + "\n".join(decls) + "\n]>"
    return rss(item(f"Laughs &lol{levels};", text=f"&lol{levels};&lol{levels};"),
               decl='<?xml version="1.0"?>\n' + doctype)


def assert_harmless(body: bytes | str, ctype: str = "application/xml", *, forbidden: str = "lollollol",
                    max_chars: int = 100_000):
    """parse_feed either fails cleanly or yields small entries free of ``forbidden``."""
    try:
        feed = parse_feed(fetched(body, ctype))
    except FeedError:
        return None
    text = all_text(feed)
    assert forbidden not in text
    assert len(text) < max_chars
    return feed


def test_billion_laughs_is_never_expanded():
    feed = assert_harmless(billion_laughs())
    assert feed is not None and [e.title for e in feed.entries] == ["Laughs &lol10;"]


def test_billion_laughs_in_utf16_and_with_line_breaks_inside_the_subset():
    body = billion_laughs().replace("<!ENTITY", "\n  <!ENTITY").replace('<?xml version="1.0"?>', "")
    assert_harmless(body.encode("utf-16-le"))
    assert_harmless(body.encode("utf-16"))


def test_quadratic_blowup_is_never_expanded():
    big = "A" * 100_000
    body = rss(item("Quadratic", text="&a;" * 10_000),
               decl=f'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY a "{big}">\n]>')
    feed = assert_harmless(body, forbidden="A" * 1_000)
    assert feed is not None and feed.entries[0].title == "Quadratic"
    # The same with the document cut short, which sends feedparser to its tolerant parser.
    assert_harmless(body[:-len("</channel></rss>")], forbidden="A" * 1_000)


def test_short_entities_the_document_declares_are_kept():
    body = rss(item("&brand; news &copy2;"), decl='<?xml version="1.0"?>\n<!DOCTYPE rss [\n'
               '<!ENTITY brand "Acme">\n<!ENTITY copy2 "&#169;">\n<!ENTITY nested "&brand;&brand;">\n]>')
    assert parse_feed(fetched(body)).entries[0].title == "Acme news ©"


@pytest.mark.parametrize("doctype", [
    '<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE rss [\n  <!ENTITY xxe SYSTEM "file:///etc/passwd" >\n]>',
    "<!DOCTYPE rss [<!ENTITY xxe PUBLIC 'x' 'file:///etc/passwd'>]>",
    '<!DOCTYPE rss [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p; <!ENTITY xxe "&#x25;p;">]>',
])
def test_external_entity_never_reads_a_local_file(doctype):
    body = rss(item("XXE &xxe;", link="http://feeds.example/&xxe;", text="<![CDATA[&xxe;]]> &xxe;"),
               decl='<?xml version="1.0"?>\n' + doctype)
    for variant in (body, body[:-len("</channel></rss>")], body.replace("<rss", "junk<rss")):
        assert_harmless(variant, forbidden="root:")


def test_a_body_naming_a_local_file_is_not_opened(tmp_path):
    # feedparser.parse(bytes) opens a file when the bytes are a path that exists; aiwatch hands
    # it a stream, so a server answering with a path gets "not a feed", not that file's entries.
    local = tmp_path / "local-feed.xml"
    local.write_text(rss(item("From the local disk")), encoding="utf-8")
    with pytest.raises(FeedError, match="no XML element"):
        parse_feed(fetched(str(local).encode()))
    with pytest.raises(FeedError):
        parse_feed(fetched(b"/etc/passwd"))


EVIL_DTD = b'<!ENTITY pwned "PWNED-BY-DTD"><!ENTITY % more SYSTEM "more.dtd"> %more;'


@pytest.mark.parametrize("template", [
    '<!DOCTYPE rss SYSTEM "{base}/evil.dtd">',
    '<!DOCTYPE rss PUBLIC "-//Evil//DTD//EN" "{base}/evil.dtd">',
    '<!DOCTYPE rss SYSTEM "{base}/evil.dtd" [<!ENTITY local "ok">]>',
    '<!DOCTYPE rss [<!ENTITY % ext SYSTEM "{base}/evil.dtd"> %ext;]>',
    '<!DOCTYPE rss [<!ENTITY pwned SYSTEM "{base}/entity.txt">]>',
])
def test_no_external_dtd_or_entity_is_ever_fetched(route_server, template):
    route_server.add("/evil.dtd", Response(200, EVIL_DTD, {"Content-Type": "application/xml-dtd"}))
    route_server.add("/more.dtd", Response(200, EVIL_DTD, {"Content-Type": "application/xml-dtd"}))
    route_server.add("/entity.txt", Response(200, b"PWNED-BY-ENTITY", {"Content-Type": "text/plain"}))
    base = route_server.url("").rstrip("/")
    doctype = template.format(base=base)
    body = rss(item("DTD &pwned;", text="&pwned; &nbsp;"), decl='<?xml version="1.0"?>\n' + doctype)
    for variant in (body.encode(), body.encode("utf-16"), body[:-len("</channel></rss>")].encode(),
                    body.replace('<?xml version="1.0"?>', '<?xml version="1.0" standalone="no"?>').encode()):
        assert_harmless(variant, forbidden="PWNED")
    assert sum(route_server.hits.values()) == 0, dict(route_server.hits)


def test_doctype_hidden_after_junk_or_in_a_comment():
    big = "B" * 100_000
    for decl in (f'garbage <!DOCTYPE rss [<!ENTITY a "{big}">]>',
                 f'<!-- <!DOCTYPE rss [ --><!DOCTYPE rss [<!ENTITY a "{big}">]>',
                 f'<!DOCTYPE rss [<!ENTITY a "<b>{big}</b>">]>',
                 f'<!DOCTYPE rss [<!ENTITY a "{big}">'):  # never closed
        body = rss(item("Hidden", text="&a;" * 5_000), decl=decl)
        assert_harmless(body, forbidden="B" * 1_000)


# -- nothing escapes but FeedError ---------------------------------------------------------------------

VALID = rss(item("One") + item("Two", link="http://feeds.example/b?x=1&amp;y=2") + item("Three")).encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=600),
    st.integers(0, len(VALID)).map(lambda n: VALID[:n]),
    st.tuples(st.integers(0, len(VALID)), st.sampled_from(
        [b"<!DOCTYPE x [", b"<!--", b"<![CDATA[", b"&", b"&#0;", b"\x00", b"<?xml", b"]]>", b"\xff\xfe",
         b"{", b"\x1f\x8b", b"<!ENTITY a SYSTEM 'file:///etc/passwd'>", b"&nbsp", b"\xe9"])).map(
        lambda t: VALID[:t[0]] + t[1] + VALID[t[0]:]),
), st.sampled_from(["application/xml", "text/html", "application/json", "", "text/xml; charset=koi8-r"]))
def test_any_body_gives_entries_or_a_feed_error(body, ctype):
    try:
        feed = parse_feed(fetched(body, ctype))
    except FeedError as exc:
        assert exc.reason
    else:
        assert all(e.entry_id and e.title for e in feed.entries)


def test_prepared_xml_never_carries_a_doctype_or_entity_declaration():
    for body in (billion_laughs(), billion_laughs().encode("utf-16")):
        data = prepare_xml(body.encode() if isinstance(body, str) else body).data
        assert b"<!DOCTYPE" not in data and b"<!ENTITY" not in data
        assert data.startswith(b'<?xml version="1.0" encoding="utf-8"?>')

"""Digests: formats, no repeats, updates, the alert budget, delivery to real local servers, safety."""

from __future__ import annotations

import base64
import email
import json
import logging
import shutil
from datetime import datetime, timezone
from email import policy
from pathlib import Path

import feedparser
import pytest
from routes import Response

from aiwatch.config import load_config
from aiwatch.report.delivery import build_email, deliver, retry_failed
from aiwatch.report.digest import collect_digest, record_digest, render_html, render_markdown, write_digest_files
from aiwatch.store import Store

NOW = datetime.now(timezone.utc)


@pytest.fixture
def db(demo_copy):
    path = demo_copy[1]
    with Store.open(path) as store:  # forget what the demo runs' digests listed
        store.con.execute("DELETE FROM core.digest_items; DELETE FROM core.digests; DELETE FROM core.deliveries")
    return path


def config_for(db: Path, tmp_path: Path, **values):
    base = load_config(None).replace(**{"storage.database": str(db), "digest.dir": str(tmp_path)})
    return base.replace(**values) if values else base


def test_every_format_is_written_and_the_atom_feed_validates(db, tmp_path):
    config = config_for(db, tmp_path)
    with Store.open(db) as store:
        data = collect_digest(store, config, NOW)
        files = write_digest_files(data, tmp_path, "md,html,json,atom", store, config)
    by_suffix = {f.suffix: f for f in files}
    assert set(by_suffix) == {".md", ".html", ".json", ".png", ".atom"}
    html = by_suffix[".html"].read_text()
    assert 'src="data:image/png;base64,' in html and "<script" not in html
    doc = json.loads(by_suffix[".json"].read_text())
    assert {t["name"] for t in doc["themes"]} == {"chip_sanctions", "llm_pricing", "gov_ai_policy"}
    feed = feedparser.parse(by_suffix[".atom"].read_bytes())
    assert not feed.bozo and len(feed.entries) == data.flagged_total and feed.entries[0].link.startswith("http")
    assert by_suffix[".png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stories_not_repeated_unless_updated(db, tmp_path):
    config = config_for(db, tmp_path)
    with Store.open(db) as store:
        first = collect_digest(store, config, NOW)
        record_digest(store, first, [])
        assert first.flagged_total == 25
        again = collect_digest(store, config, NOW)
        assert again.flagged_total == 0  # nothing repeated
        assert "Quiet day" in render_markdown(again)
        # a story picked up by a new outlet comes back, marked as updated
        aid, url = store.query("SELECT article_id, url FROM matches WHERE theme = 'gov_ai_policy' LIMIT 1")[1][0]
        store.con.execute("""INSERT INTO core.articles (article_id, url, canonical_url, feed_url, entry_id, title,
                                 text, text_source, fetched_at, content_hash, duplicate_of, outlet)
                             SELECT 'copy1', 'https://other.example/x', 'https://other.example/x', feed_url, 'e',
                                    title, text, text_source, fetched_at, content_hash, article_id, 'Other Outlet'
                             FROM core.articles WHERE article_id = ?""", [aid])
        third = collect_digest(store, config, NOW)
    items = [i for t in third.themes for i in t.items]
    assert [(i.url, i.updated, i.n_outlets) for i in items] == [(url, True, 2)]
    assert "(updated)" in render_markdown(third) and "UPDATED" in render_html(third)


def test_alert_budget_summarises_the_rest(db, tmp_path):
    config = config_for(db, tmp_path, **{"digest.max_per_theme": 2})
    with Store.open(db) as store:
        data = collect_digest(store, config, NOW)
    chip = next(t for t in data.themes if t.name == "chip_sanctions")
    assert len(chip.items) == 2 and chip.more == 7
    assert round(chip.items[0].score, 2) >= round(chip.items[1].score, 2)  # by probability (to the hundredth) first
    md = render_markdown(data)
    assert "…and 7 more: `aiwatch digest --theme chip_sanctions" in md


def test_malicious_title_is_text_not_markup(db, tmp_path):
    evil = 'Chip curbs <script>alert("x")</script><img src=x onerror=alert(1)>\r\nBcc: victim@example.com'
    with Store.open(db) as store:
        store.con.execute("UPDATE core.articles SET title = ? WHERE article_id = "
                          "(SELECT article_id FROM matches WHERE theme = 'chip_sanctions' LIMIT 1)", [evil])
        data = collect_digest(store, config_for(db, tmp_path), NOW)
    html = render_html(data)
    assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(" in html
    md = render_markdown(data)
    assert "<script>" not in md and "\\<script\\>" in md
    msg = build_email(config_for(db, tmp_path, **{"digest.email.to": "a@example.com"}),
                      "Digest: " + evil, "text", html, None)
    parsed = email.message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert parsed["Bcc"] is None and set(parsed.keys()) <= {"Subject", "From", "To", "Date", "Message-ID",
                                                            "MIME-Version", "Content-Type"}  # no header injection
    assert "Bcc: victim" in parsed["Subject"]  # the title's newline became a space inside the subject


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    received = []

    class Keep(Message):
        def handle_message(self, message):
            received.append(message)

    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield controller, received
    finally:
        controller.stop()


def test_email_is_multipart_with_the_chart_inline(db, tmp_path, smtp_server, monkeypatch, caplog):
    controller, received = smtp_server
    port = controller.port
    monkeypatch.setenv("AIWATCH_TEST_SMTP_PASSWORD", "s3cret-pass")
    config = config_for(db, tmp_path, **{"digest.email.host": "127.0.0.1", "digest.email.port": port,
                                         "digest.email.starttls": False, "digest.email.to": "watcher@example.com",
                                         "digest.email.from": "aiwatch@example.com"})
    caplog.set_level(logging.DEBUG)
    with Store.open(db) as store:
        data = collect_digest(store, config, NOW)
        record_digest(store, data, write_digest_files(data, tmp_path, "md,html", store, config))
        assert deliver(store, config, data, NOW) == {"email": True}
        assert store.query("SELECT channel, status FROM core.deliveries")[1] == [("email", "sent")]
    assert len(received) == 1
    msg = email.message_from_bytes(received[0].as_bytes(), policy=policy.default)
    assert msg["To"] == "watcher@example.com" and "aiwatch digest" in msg["Subject"]
    assert abs((msg["Date"].datetime - datetime.now(timezone.utc)).total_seconds()) < 600  # RFC 5322 wants a Date
    assert msg["Message-ID"].startswith("<") and msg["Message-ID"].rstrip(">").endswith("@example.com")
    types = [part.get_content_type() for part in msg.walk()]
    assert types[0] == "multipart/alternative"
    assert "text/plain" in types and "text/html" in types and "image/png" in types
    html = next(p for p in msg.walk() if p.get_content_type() == "text/html").get_content()
    png = next(p for p in msg.walk() if p.get_content_type() == "image/png")
    assert f'src="cid:{png["Content-ID"].strip("<>")}"' in html
    assert "s3cret-pass" not in caplog.text


def test_webhook_slack_and_json(db, tmp_path, route_server):
    url = route_server.add("/hooks/T000/SECRET-TOKEN", Response(200, b"ok"))
    for fmt in ("slack", "json"):
        config = config_for(db, tmp_path, **{"digest.webhook.url": url, "digest.webhook.format": fmt})
        with Store.open(db) as store:
            data = collect_digest(store, config, NOW, only_new=False)
            assert deliver(store, config, data, NOW) == {"webhook": True}
    slack, generic = (json.loads(b) for b in route_server.posts["/hooks/T000/SECRET-TOKEN"])
    assert slack["text"].startswith("aiwatch digest") and slack["blocks"][0]["type"] == "header"
    assert any("Chip export controls" in b.get("text", {}).get("text", "") for b in slack["blocks"])
    assert {t["name"] for t in generic["themes"]} == {"chip_sanctions", "llm_pricing", "gov_ai_policy"}


def test_failed_delivery_is_recorded_and_retried_next_run(db, tmp_path, route_server, caplog):
    url = route_server.add("/hook/SECRET", Response(500, b"down"), Response(200, b"ok"))
    config = config_for(db, tmp_path, **{"digest.webhook.url": url, "digest.webhook.format": "json"})
    with Store.open(db) as store:
        data = collect_digest(store, config, NOW)
        record_digest(store, data, write_digest_files(data, tmp_path, "md,html,json", store, config))
        assert deliver(store, config, data, NOW) == {"webhook": False}
        assert store.query("SELECT status, attempts FROM core.deliveries")[1] == [("failed", 1)]
        assert retry_failed(store, config, NOW) == 1
        assert store.query("SELECT status, attempts FROM core.deliveries")[1] == [("sent", 2)]
    assert "HTTP 500" in caplog.text and "SECRET" not in caplog.text
    late = json.loads(route_server.posts["/hook/SECRET"][-1])
    assert late["digest"]["digest_id"] == data.digest_id


@pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                    reason="chromium and chromedriver not installed")
def test_html_digest_in_a_browser_keeps_the_chart_legible_at_1200_and_390_px(db, tmp_path):
    """Headless Chromium shows the HTML digest at desktop and phone widths (the phone width by
    device emulation: a desktop window is never narrower than 500 px): nothing scrolls
    sideways, and the chart's smallest text (its 9-point tick labels) is at least 9 CSS pixels
    tall as shown. Screenshots are taken (SCREENSHOTS_DIR=folder keeps a copy)."""
    import os

    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    from aiwatch.report.digest import CHART_DPI, CHART_TICK_PT
    config = config_for(db, tmp_path)
    with Store.open(db) as store:
        data = collect_digest(store, config, NOW, only_new=False)
    html = render_html(data)
    assert "<script" not in html and 'src="data:image/png;base64,' in html
    page = tmp_path / "digest.html"
    page.write_text(html)
    keep = Path(os.environ["SCREENSHOTS_DIR"]) if os.environ.get("SCREENSHOTS_DIR") else None
    options = Options()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-quic", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        for width in (1200, 390):
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 500})
            driver.get(page.as_uri())
            sizes = driver.execute_script("""const img = document.querySelector('img');
                return {shown: img.getBoundingClientRect().width, natural: img.naturalWidth,
                        page: document.documentElement.scrollWidth, view: window.innerWidth};""")
            assert sizes["view"] == width and sizes["page"] <= width, sizes  # no sideways scrolling
            tick_px = CHART_TICK_PT * CHART_DPI / 72 * sizes["shown"] / sizes["natural"]
            assert tick_px >= 9, (width, sizes, tick_px)
            height = driver.execute_script("return document.documentElement.scrollHeight")
            shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
            png = base64.b64decode(shot["data"])
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
            if keep:
                keep.mkdir(parents=True, exist_ok=True)
                (keep / f"digest-{width}.png").write_bytes(png)
    finally:
        driver.quit()

def test_slack_keeps_every_story_when_urls_are_long(db, tmp_path):
    """Nine stories with 600-character URLs: all nine links intact, sections within Slack's limits."""
    from dataclasses import replace

    from aiwatch.report.delivery import SLACK_MAX_BLOCKS, SLACK_SECTION_CHARS, webhook_payload
    config = config_for(db, tmp_path, **{"digest.webhook.url": "http://127.0.0.1:9/hook"})
    with Store.open(db) as store:
        data = collect_digest(store, config, NOW, only_new=False)
    chip = next(t for t in data.themes if t.name == "chip_sanctions")
    long_items = tuple(replace(chip.items[k % len(chip.items)], url=f"https://news.example/{k}/" + "a" * 600)
                       for k in range(9))
    data = replace(data, themes=tuple(replace(t, items=long_items, more=4) if t is chip else t
                                      for t in data.themes))
    payload = webhook_payload(config, data)
    sections = [b["text"]["text"] for b in payload["blocks"][1:]]
    assert len(payload["blocks"]) <= SLACK_MAX_BLOCKS
    assert all(len(s) <= SLACK_SECTION_CHARS and s.count("<") == s.count(">") for s in sections)
    text = "\n".join(sections)
    assert all(f"<https://news.example/{k}/{'a' * 600}|" in text for k in range(9))
    assert "…and 4 more" in text


def _certificate_authority(folder: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate for 127.0.0.1 that it signed (PEM files)."""
    import ipaddress
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.now(timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("aiwatch test CA")).issuer_name(name("aiwatch test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_email_trusts_a_private_ca_from_the_setting(db, tmp_path):
    """An SMTPS server whose certificate a private CA signed: refused with the system's CAs,
    delivered once digest.email.ca_file names the CA."""
    import socket
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    from aiwatch.report.delivery import DeliveryError, send_email
    ca, cert, key = _certificate_authority(tmp_path)
    received = []

    class Keep(Message):
        def handle_message(self, message):
            received.append(message)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    controller = Controller(Keep(), hostname="127.0.0.1", port=port, ssl_context=context)
    controller.start()
    try:
        values = {"digest.email.host": "127.0.0.1", "digest.email.port": port, "digest.email.ssl": True,
                  "digest.email.to": "watcher@example.com"}
        msg = build_email(config_for(db, tmp_path, **values), "Digest", "text", "<p>html</p>", None)
        with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
            send_email(config_for(db, tmp_path, **values), msg)
        assert received == []
        send_email(config_for(db, tmp_path, **values, **{"digest.email.ca_file": str(ca)}), msg)
    finally:
        controller.stop()
    assert len(received) == 1 and received[0]["To"] == "watcher@example.com"


def test_recipients_as_a_toml_list(tmp_path):
    cfg = tmp_path / "aiwatch.toml"
    cfg.write_text('[digest]\nformats = ["md", "html"]\n[digest.email]\nto = ["a@example.com", "b@example.com"]\n')
    config = load_config(cfg)
    assert config.digest.email.to == "a@example.com, b@example.com" and config.digest.formats == "md, html"
    msg = build_email(config, "Digest", "text", "<p>html</p>", None)
    assert msg["To"] == "a@example.com, b@example.com"


def test_digest_of_a_run_reports_the_health_of_the_feeds_it_fetched(db, tmp_path):
    """A run given its feeds on the command line: `digest --run` still lists the one that failed."""
    with Store.open(db) as store:
        run_id, started = store.query("SELECT run_id, started_at FROM runs ORDER BY started_at DESC LIMIT 1")[1][0]
        store.con.execute("""INSERT INTO core.feeds (feed_url, name, first_seen_at, last_attempt_at, last_status,
                                 consecutive_failures, last_error)
                             VALUES ('http://127.0.0.1:9/cli-feed.xml', 'Given on the command line', ?, ?, 'failed',
                                     1, 'connection refused')""", [started, started])
        data = collect_digest(store, config_for(db, tmp_path), NOW, run_id=run_id, only_new=False)
    assert [f.feed_url for f in data.health.failing] == ["http://127.0.0.1:9/cli-feed.xml"]
    assert "Given on the command line" in render_markdown(data)


def test_atom_entries_carry_content_and_the_feed_its_own_links_and_id(db, tmp_path):
    config = config_for(db, tmp_path, **{"digest.atom_url": "https://watch.example.org/d/aiwatch.atom"})
    with Store.open(db) as store:
        data = collect_digest(store, config, NOW)
        files = write_digest_files(data, tmp_path, "html,atom", store, config)
        install = store.install_id()
    feed = feedparser.parse((tmp_path / "aiwatch.atom").read_bytes())
    html_name = next(f.name for f in files if f.suffix == ".html")
    assert not feed.bozo and feed.feed.id == f"urn:uuid:{install}" and len(install) == 36
    links = {link.rel: link.href for link in feed.feed.links}
    assert links == {"self": "https://watch.example.org/d/aiwatch.atom",
                     "alternate": f"https://watch.example.org/d/{html_name}"}
    entry = feed.entries[0]
    content = entry.content[0]
    assert content.type == "text/html" and "score" in content.value and "<blockquote>" in content.value
    assert "Matched terms:" in content.value and entry.tags[0].label in {
        "Chip export controls", "AI model pricing", "Government AI policy"}
    # another database has another id; the same one keeps its id when the file moves
    other = tmp_path / "other.duckdb"
    with Store.open(other) as store:
        assert store.install_id() not in ("", install)
    moved = tmp_path / "moved.duckdb"
    shutil.copy(db, moved)
    with Store.open(moved) as store:
        assert store.install_id() == install


def test_readable_digest(db, tmp_path):
    """What a reader sees: passages without kicker and repeated headline, theme titles, telling
    terms before generic ones, the score in words, statistics as a reader wants them, feed
    errors in words, the trend by day published."""
    from aiwatch.report.digest import distinct_terms, excerpt, plain_error, run_facts
    passage = ("Beijing tightens rules on chip imports\nTrade & security\nBeijing tightens rules on chip imports\n"
               "The ministry said on Monday that licences would be needed.")
    assert excerpt(passage, "Beijing tightens rules on chip imports") == \
        "The ministry said on Monday that licences would be needed."
    assert excerpt("A story that never repeats its title.", "Other words") == "A story that never repeats its title."
    assert distinct_terms(("AI", "chip", "chips", "entity list"), {"AI": 0.9, "chip": 0.5, "chips": 0.6,
                                                                          "entity list": 0.02}) == \
        ("entity list", "chip", "AI")
    assert plain_error("malformed feed (SAXParseException: <unknown>:12:2: mismatched tag), no entries found") == \
        "malformed feed: broken XML at line 12, column 2: mismatched tag; no entries could be read"
    started = datetime(2026, 12, 1, 7, 0, 3, 123456, tzinfo=timezone.utc)
    facts = dict(run_facts({"started_at": started, "finished_at": started.replace(minute=3, second=9),
                            "status": "ok", "feeds_total": 6, "feeds_ok": 5, "feeds_failed": 1, "articles_new": 40,
                            "articles_failed": 1, "flagged": 25, "peak_rss_mb": 739.6,
                            "stage_seconds": '{"feeds": 0.75, "articles": 10.7, "fetch": 2.5, "embed": 130.2}'}))
    assert facts == {"Started": "2026-12-01 07:00 UTC", "Took": "3 min 06 s", "Status": "ok",
                     "Feeds": "6 (5 fetched, 1 failed)", "New articles": "40 (1 page failed)", "Flagged": "25",
                     "Time per stage": "feeds 0.8 s · articles 11 s (fetch 2.5 s) · embed 2 min 10 s",
                     "Peak memory": "740 MB"}
    config = config_for(db, tmp_path)
    with Store.open(db) as store:
        data = collect_digest(store, config, NOW, only_new=False)
        # an article published long ago counts on its publication day, not on the day it was fetched
        store.con.execute("UPDATE core.articles SET published_at = TIMESTAMPTZ '2026-06-01 12:00:00+00' "
                          "WHERE article_id = (SELECT min(article_id) FROM matches)")
        days = store.query("SELECT day, flagged FROM theme_daily ORDER BY day")[1]
    assert str(days[0][0]) == "2026-06-01" and days[0][1] == 1
    md = render_markdown(data)
    assert "## Chip export controls" in md and "## AI model pricing" in md and "## Government AI policy" in md
    assert "Listed from a score of 0.45" in md and "almost certainly on the theme" in md
    assert "stage seconds" not in md and "{" not in md.split("## Run statistics")[1]
    chip = next(t for t in data.themes if t.name == "chip_sanctions")
    assert all(not i.passage.startswith(i.title) for i in chip.items)
    terms = [t for i in data.themes for it in i.items for t in it.terms]
    assert terms and all(it.terms[-1] == "AI" or "AI" not in it.terms for i in data.themes for it in i.items)

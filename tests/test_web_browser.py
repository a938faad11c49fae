"""The web app in a real headless Chromium (Debian's chromium and chromedriver, driven by
selenium), against the app served by uvicorn on 127.0.0.1 in a thread, on the demo database:
judge a story and undo it, move a theme's threshold and watch the preview, search, and
screenshots at desktop and phone widths (saved under tests/artifacts/, git-ignored; with
AIWATCH_UPDATE_DOCS_SCREENSHOT=1 the desktop Today page also becomes docs/web-today.png, the
README's picture). Skipped where no browser is installed."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from aiwatch.web.app import create_app  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).parent / "artifacts"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")

pytestmark = pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                                reason="no chromium and chromedriver on this machine")


def any_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(demo_copy):
    """The app on the demo database, served by uvicorn on 127.0.0.1 in a thread."""
    import uvicorn
    cfg, db = demo_copy
    app = create_app(cfg, job_command=[sys.executable, "-c", "pass"])
    port = any_free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}", web=app.state.web, db=db)
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser(tmp_path):
    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")  # a fresh profile each test
    options.add_argument("--window-size=1200,900")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def judgements(served) -> dict:
    with served.web.db.read() as store:
        return {(j.article_id, j.theme): j.relevant for j in store.feedback()}


def wait(driver, condition, seconds: float = 15):
    # The page swaps a card for its new version after a click: an element found a moment ago
    # can go stale under the condition, which then simply asks again.
    return WebDriverWait(
        driver, seconds, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
    ).until(condition)


def test_judge_a_story_and_undo_it_in_a_browser(served, browser):
    browser.get(served.url + "/")
    card = browser.find_element(By.CSS_SELECTOR, "article.card")
    anchor, article, theme = (card.get_attribute(a) for a in ("id", "data-article", "data-theme"))
    assert "Data as of run" in browser.find_element(By.ID, "freshness").text
    card.find_element(By.CSS_SELECTOR, "button[data-verdict=yes]").click()
    card = wait(browser, EC.presence_of_element_located((By.ID, anchor)))
    wait(browser, lambda d: "You marked this relevant." in d.find_element(By.ID, anchor).text)
    assert "accepted" in browser.find_element(By.ID, anchor).get_attribute("class")
    assert judgements(served)[(article, theme)] is True  # recorded in core.feedback at once
    browser.find_element(By.ID, anchor).find_element(By.CSS_SELECTOR, "button[data-verdict=undo]").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"#{anchor} button[data-verdict=yes]"))
    assert (article, theme) not in judgements(served)


def _count(browser) -> int:
    return int(browser.find_element(By.ID, "flag-count").text)


def test_moving_a_threshold_changes_the_preview_in_a_browser(served, browser):
    browser.get(served.url + "/themes/chip_sanctions")
    before = _count(browser)
    field = browser.find_element(By.ID, "threshold")
    field.clear()
    field.send_keys("0.99")
    wait(browser, lambda d: d.find_element(By.ID, "flag-threshold").text == "0.99")
    live = _count(browser)
    assert live < before
    assert int(browser.find_element(By.ID, "flag-gone").text) == before - live
    browser.find_element(By.CSS_SELECTOR, "#theme-form button:not([formaction])").click()  # Preview, on the server
    wait(browser, EC.staleness_of(field))
    wait(browser, lambda d: d.find_element(By.ID, "threshold").get_attribute("value") == "0.99")
    assert _count(browser) == live  # the server counts what the page counted
    slider = browser.find_element(By.ID, "threshold-range")
    browser.execute_script("arguments[0].value = '0.05'; arguments[0].dispatchEvent(new Event('input'))", slider)
    assert _count(browser) >= before and browser.find_element(By.ID, "threshold").get_attribute("value") == "0.05"


def test_search_in_a_browser(served, browser):
    browser.get(served.url + "/search")
    box = browser.find_element(By.NAME, "q")
    box.send_keys("memory chips barred from China", Keys.ENTER)
    wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, "ol.results li.card")))
    results = browser.find_elements(By.CSS_SELECTOR, "ol.results li.card")
    assert len(results) >= 5
    assert results[0].find_element(By.CSS_SELECTOR, "blockquote.passage").text
    assert "similarity" in results[0].text


def test_screenshots_at_desktop_and_phone_widths(served, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    saved = []
    for width in (1200, 390):
        browser.set_window_size(width, 900)
        for name, path in (("today", "/"), ("theme", "/themes/chip_sanctions"),
                           ("search", "/search?q=memory+chips+barred+from+China"), ("feeds", "/feeds"),
                           ("runs", "/runs")):
            browser.get(served.url + path)
            # nothing wider than the window: a phone never scrolls sideways
            assert browser.execute_script("return document.documentElement.scrollWidth") <= width, (name, width)
            target = ARTIFACTS / f"web-{name}-{width}.png"
            assert browser.save_screenshot(str(target))
            saved.append(target)
    print("screenshots:", *saved, sep="\n  ")
    if os.environ.get("AIWATCH_UPDATE_DOCS_SCREENSHOT"):  # the README's picture: docs/web-today.png
        shutil.copy(ARTIFACTS / "web-today-1200.png", Path(__file__).parents[1] / "docs" / "web-today.png")

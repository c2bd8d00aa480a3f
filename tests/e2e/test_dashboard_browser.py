"""The dashboard in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by selenium)
against the app served on loopback by werkzeug in a thread. Nothing is downloaded at run time.

``DASHBOARD_SCREENSHOTS=<dir>`` also saves the list and detail pages as PNGs (how the README's were taken).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from werkzeug.serving import make_server

from tests.support.dashboard import seed_recording
from tests.support.emulated import POLL
from tests.support.service import API_TOKEN
from workers.core.config import Settings
from workers.recordings.store import peek_commands

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    # A failure, not a skip: a run without the browser would otherwise pass without testing the pages.
    raise RuntimeError("Debian's chromium and chromium-driver are not installed (make test installs them)")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.expected_conditions import staleness_of  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402


@pytest.fixture
def settings(settings: Settings) -> Settings:
    from tests.support.service import with_default_storage

    return with_default_storage(settings)


@pytest.fixture
def server(app: Flask) -> Iterator[str]:
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(POLL,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(5)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1280,1000",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def console_errors(driver: Any) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]


def screenshot(driver: Any, name: str) -> None:
    target = os.environ.get("DASHBOARD_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1280, min(max(int(height) + 40, 600), 2400))
        driver.save_screenshot(str(Path(target) / name))
        driver.set_window_size(1280, 1000)


def click_and_wait(driver: Any, element: Any) -> None:
    """Click and wait for the page it loads (a form's POST and its redirect), not just the click."""
    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 15).until(staleness_of(page))
    WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")


def log_in(driver: Any, base: str, token: str) -> None:
    driver.get(f"{base}/dashboard/login")
    field = driver.find_element(By.NAME, "token")
    field.clear()
    field.send_keys(token)
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]"))


def test_dashboard_in_a_real_browser(
    browser: Any, server: str, client: Any, redis_client: redis.Redis, settings: Settings
) -> None:
    rid = seed_recording(redis_client, settings, client=client)
    other = seed_recording(redis_client, settings, cname="room-42")

    # Without a session: the login page, no data.
    browser.get(f"{server}/dashboard/")
    assert "/dashboard/login" in browser.current_url
    assert rid not in browser.page_source

    # A wrong token is refused.
    log_in(browser, server, "not-the-token")
    assert browser.find_element(By.ID, "login-error").text == "wrong token"
    assert "/dashboard/login" in browser.current_url
    browser.get(f"{server}/dashboard/")
    assert "/dashboard/login" in browser.current_url

    # The right one: the list.
    log_in(browser, server, API_TOKEN)
    assert browser.current_url == f"{server}/dashboard/"
    ids = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "table.recordings td a code")]
    assert ids == [other, rid]  # newest first
    assert "1/3 uploaded, 1 backed up" in browser.find_element(By.CSS_SELECTOR, "table.recordings").text
    screenshot(browser, "dashboard-recordings.png")

    # Filter by channel, then follow the id to the detail page.
    browser.find_element(By.NAME, "cname").send_keys("class-7b")
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "form.filters button"))
    assert [a.text for a in browser.find_elements(By.CSS_SELECTOR, "table.recordings td a code")] == [rid]
    click_and_wait(browser, browser.find_element(By.LINK_TEXT, rid))
    assert browser.current_url == f"{server}/dashboard/recordings/{rid}"

    # The drawn timeline: an SVG with two session bars and marks, rendered with a real size.
    svg = browser.find_element(By.CSS_SELECTOR, "svg.timeline")
    assert svg.size["width"] > 500 and svg.size["height"] > 100
    assert len(svg.find_elements(By.CSS_SELECTOR, "rect.session-bar")) == 2
    assert len(svg.find_elements(By.CSS_SELECTOR, ".mark")) >= 14
    assert len(svg.find_elements(By.CSS_SELECTOR, ".mark-callback")) == 4
    events = browser.find_element(By.CSS_SELECTOR, "table.events").text
    for expected in ("recorder_started", "acquire", "start", "query", "starting → recording"):
        assert expected in events
    screenshot(browser, "dashboard-recording.png")

    # Stop through the button: the recording's commands get a stop.
    assert peek_commands(redis_client, rid) == []
    click_and_wait(browser, browser.find_element(By.ID, "stop"))
    assert "stop requested" in browser.find_element(By.CSS_SELECTOR, ".flash").text
    assert peek_commands(redis_client, rid) == [{"op": "stop"}]
    assert browser.find_element(By.ID, "stop").get_attribute("disabled") is not None

    # A forged POST (a form without the CSRF token, submitted from the signed-in page) is refused.
    page = browser.find_element(By.TAG_NAME, "html")
    browser.execute_script(
        """
        const form = document.createElement('form');
        form.method = 'post';
        form.action = arguments[0];
        document.body.appendChild(form);
        form.submit();
        """,
        f"/dashboard/recordings/{other}/stop",
    )
    WebDriverWait(browser, 15).until(staleness_of(page))
    assert "missing or wrong CSRF token" in browser.find_element(By.CSS_SELECTOR, "p.error").text
    assert peek_commands(redis_client, other) == []

    # The other pages render.
    for path, marker in (
        ("/dashboard/dead-letters", "No dead letters"),
        ("/dashboard/notifications", "No notifications"),
        ("/dashboard/system", "Queues"),
    ):
        browser.get(server + path)
        assert marker in browser.page_source, path

    # Console: nothing but the two refusals above, which Chromium logs as network errors (401, 403).
    errors = console_errors(browser)
    expected = [e for e in errors if e.get("source") == "network" and "status of 40" in e.get("message", "")]
    assert len(expected) == 2, errors
    assert [e for e in errors if e not in expected] == []


def test_no_console_errors_on_any_page(
    browser: Any, server: str, redis_client: redis.Redis, settings: Settings, client: Any
) -> None:
    rid = seed_recording(redis_client, settings, client=client)
    log_in(browser, server, API_TOKEN)
    for path in (
        "/dashboard/",
        f"/dashboard/recordings/{rid}",
        "/dashboard/dead-letters",
        "/dashboard/notifications",
        "/dashboard/system",
    ):
        browser.get(server + path)
        assert browser.find_element(By.TAG_NAME, "h1").text
    assert console_errors(browser) == []

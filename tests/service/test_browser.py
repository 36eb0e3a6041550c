"""Real Chromium (Debian's /usr/bin/chromium via Playwright) against a real uvicorn server.

Load the dashboard, see tasks, disable and enable a task, run one now and see its run
appear live (no page load in between), open a task's history, see the timeline SVG, log
in with a token. Screenshots go to docs/screenshots/ with TICKWORK_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import TOKEN, LiveServer, wait_for

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
# The README's screenshots are refreshed only on request (TICKWORK_SCREENSHOTS=1), so that
# a test run leaves the work tree clean; otherwise they go to a temporary folder.
SHOTS = (Path(__file__).resolve().parents[2] / "docs" / "screenshots"
         if os.environ.get("TICKWORK_SCREENSHOTS") == "1"
         else Path(tempfile.gettempdir()) / "tickwork-screenshots")
SHOTS.mkdir(parents=True, exist_ok=True)

if not os.path.exists(CHROMIUM):
    pytest.skip(f"!!! {CHROMIUM} is missing: browser tests NOT RUN (apt install chromium) !!!",
                allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    p = ctx.new_page()
    p.set_default_timeout(10_000)
    yield p
    ctx.close()


def _ready(live_server: LiveServer) -> None:
    # The interval tasks run once at start; wait for those runs so the page has history.
    wait_for(lambda: len(live_server.sched.get_history()) >= 3, what="initial runs")


def test_dashboard_actions_and_live_run(live_server: LiveServer, page: Any) -> None:
    _ready(live_server)
    sched = live_server.sched
    page.goto(live_server.url + "/")
    rows = page.locator("#tasks tbody tr")
    assert rows.count() == 3
    report = page.locator('tr[data-task="report"]')
    # The name is HTML-escaped: shown literally, not as bold markup.
    assert "Nightly <b>report</b>" in report.inner_text()
    assert report.locator("b").count() == 0
    assert "every 6 hours" in report.inner_text()
    sync_api.expect(page.locator("#conn")).to_have_attribute("data-state", "on")
    page.evaluate("window.__noReload = true")

    # Disable and enable (enhanced forms: no page load).
    page.click("#toggle-cleanup")
    sync_api.expect(page.locator('tr[data-task="cleanup"]')).to_have_attribute(
        "data-state", "disabled")
    assert sched.get_task("cleanup").enabled is False
    page.click("#toggle-cleanup")
    sync_api.expect(page.locator('tr[data-task="cleanup"]')).to_have_attribute(
        "data-state", "scheduled")
    assert sched.get_task("cleanup").enabled is True

    # Run now: the new run shows up in the recent-runs table and on the timeline, live.
    before_rows = page.locator('#runs tr[data-run]').count()
    before_bars = page.locator('#timeline rect.bar[data-task="report"]').count()
    page.click("#run-report")
    sync_api.expect(page.locator("#runs tr[data-run]")).to_have_count(before_rows + 1,
                                                                      timeout=10_000)
    sync_api.expect(page.locator('#runs tr[data-run]').first).to_have_attribute(
        "data-status", "succeeded")
    assert page.locator('#timeline rect.bar[data-task="report"]').count() == before_bars + 1
    sync_api.expect(page.locator("#live")).to_contain_text("report")
    assert page.evaluate("window.__noReload") is True  # the page never reloaded

    svg = page.locator("#timeline svg")
    assert svg.get_attribute("role") == "img"
    assert "Timeline of the last 24 hours" in (svg.get_attribute("aria-label") or "")
    assert page.locator('#timeline rect.bar-failed[data-task="broken"]').count() >= 1
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)


def test_task_page_history(live_server: LiveServer, page: Any) -> None:
    _ready(live_server)
    page.goto(live_server.url + "/")
    page.click('#tasks a[href="/tasks/broken"]')
    page.wait_for_url("**/tasks/broken")
    assert "Task broken" in page.locator("h1").inner_text()
    hist = page.locator("#history tr[data-run]")
    assert hist.count() >= 1
    assert "ValueError: boom" in hist.first.inner_text()
    assert hist.first.get_attribute("data-status") == "failed"
    assert page.locator("#timeline svg rect.bar").count() >= 1
    # Run it again from its own page: the history grows live.
    n = hist.count()
    page.click("#run-broken")
    sync_api.expect(page.locator("#history tr[data-run]")).to_have_count(n + 1)
    page.goto(live_server.url + "/tasks/report")
    wait_for(lambda: bool(live_server.sched.get_history("report")), what="report run")
    page.reload()
    assert "done" in page.locator("#history").inner_text()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "task.png"), full_page=True)


def test_reading_works_without_javascript(browser: Any, live_server: LiveServer) -> None:
    _ready(live_server)
    ctx = browser.new_context(java_script_enabled=False)
    p = ctx.new_page()
    p.goto(live_server.url + "/")
    assert p.locator("#tasks tbody tr").count() == 3
    # A plain form POST (303 back to the page) still works.
    p.click("#toggle-report")
    p.wait_for_load_state()
    assert live_server.sched.get_task("report").enabled is False
    assert p.locator('tr[data-task="report"]').get_attribute("data-state") == "disabled"
    ctx.close()


@pytest.mark.parametrize("live_server", [TOKEN], indirect=True)
def test_login_with_token(live_server: LiveServer, page: Any) -> None:
    page.goto(live_server.url + "/tasks/report")
    page.wait_for_url("**/login**")
    page.fill("#token", "wrong")
    page.click("button[type=submit]")
    sync_api.expect(page.locator("[role=alert]")).to_contain_text("Wrong token")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url("**/tasks/report")
    assert "Task report" in page.locator("h1").inner_text()
    # The cookie is HttpOnly: invisible to scripts, and the live stream works with it.
    assert page.evaluate("document.cookie") == ""
    sync_api.expect(page.locator("#conn")).to_have_attribute("data-state", "on")

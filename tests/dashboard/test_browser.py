"""The dashboard in a real browser: headless Chromium driven by Playwright against the CLI.

Needs the Debian ``chromium`` package (``/usr/bin/chromium``) and the ``playwright`` Python
package (``requirements/browser.txt``); Playwright's own browser download is never used. Without
them the test is skipped with the reason, unless ``WEBHOOK_GUARD_REQUIRE_BROWSER=1`` (then it
fails). ``WEBHOOK_GUARD_UPDATE_SCREENSHOT=1`` also writes the screenshot to
``docs/images/dashboard.png``.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.history import History, build_history
from tests.servers import BIN, ROOT, free_port, serve

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REQUIRE_ENV = "WEBHOOK_GUARD_REQUIRE_BROWSER"
UPDATE_ENV = "WEBHOOK_GUARD_UPDATE_SCREENSHOT"
SCREENSHOT = ROOT / "docs" / "images" / "dashboard.png"
VIEWPORT = {"width": 1200, "height": 800}
FAILED = {"rejected", "retrying", "dead"}

pytestmark = pytest.mark.e2e


def _skip_without_a_browser() -> None:
    missing = []
    if not CHROMIUM.exists():
        missing.append("/usr/bin/chromium (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -r requirements/browser.txt)")
    if missing:
        reason = "the browser test needs " + " and ".join(missing)
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason}; {REQUIRE_ENV}=1 makes a missing browser a failure")
        pytest.skip(reason)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[History, str]]:
    """A real history (Guard + Worker on SQLite) served by `webhook-guard dashboard`."""
    _skip_without_a_browser()
    history = build_history(tmp_path / "webhook_guard.db", now=time.time(), spread=6 * 3600)
    port = free_port()
    command = [str(BIN / "webhook-guard"), "dashboard", "--db", str(history.db)]
    command += ["--port", str(port)]
    with serve(command, dict(os.environ), port, tmp_path / "dashboard.log"):
        yield history, f"http://127.0.0.1:{port}"


@pytest.fixture
def page(served: tuple[History, str]) -> Iterator[Any]:
    """A headless Chromium page; any console error (a CSP violation included) fails the test."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(15_000)
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page
            assert errors == [], errors
        finally:
            browser.close()


def row_statuses(page: Any) -> list[str]:
    return [
        str(s)
        for s in page.locator("tbody tr.row").evaluate_all(
            "rows => rows.map(r => r.dataset.status)"
        )
    ]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_filter_detail_and_replay_in_a_real_browser(
    served: tuple[History, str], page: Any, tmp_path: Path
) -> None:
    """Failed rows first; status=dead shows only dead; a detail page; Replay re-queues the dead
    delivery (checked in the database); replay from a filtered list; a screenshot."""
    from playwright.sync_api import expect

    history, base = served
    page.goto(base + "/")
    expect(page.locator("h1")).to_have_text("Delivery history")
    shown = row_statuses(page)
    assert len(shown) == 13
    settled = next(i for i, status in enumerate(shown) if status not in FAILED)
    assert set(shown[:settled]) == FAILED and not FAILED & set(shown[settled:])
    assert page.locator("svg.chart rect.bar").count() > 0
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot))
    assert png_size(shot) == (VIEWPORT["width"], VIEWPORT["height"])
    if os.environ.get(UPDATE_ENV) == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)

    # Filter: only dead deliveries.
    page.select_option("select[name=status]", "dead")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"\?status=dead(&|$)"))
    assert row_statuses(page) == ["dead", "dead"]
    expect(page.locator("select[name=status]")).to_have_value("dead")

    # Detail page of the dead delivery.
    dead = history.dead[0]
    page.locator(f'a[href="/delivery/{dead}"]').click()
    expect(page).to_have_url(f"{base}/delivery/{dead}")
    expect(page.locator("h1")).to_contain_text(dead)
    expect(page.locator("dl.facts")).to_contain_text("permanent failure")
    expect(page.locator("table.attempts tbody tr")).to_have_count(1)
    expect(page.locator("pre.body")).to_contain_text('"event": "order.refunded"')

    # Replay: a POST with the CSRF token, 303 back to the page, queued again in the database.
    page.locator("form.replay").get_by_role("button", name="Replay").click()
    expect(page).to_have_url(f"{base}/delivery/{dead}?replayed=1")
    expect(page.locator(".notice")).to_contain_text("Queued again")
    expect(page.locator("dl.facts")).to_contain_text("queued")
    record = history.queue().get(dead)
    assert record is not None and (record.status, record.attempts) == ("queued", 0)

    # Replay from the failed list: back to the same filter, the row gone from it.
    retrying = history.retrying[0]
    page.goto(base + "/?status=failed")
    page.locator(f'tr[data-id="{retrying}"]').get_by_role("button", name="Replay").click()
    expect(page).to_have_url(f"{base}/?status=failed&replayed={retrying}")
    expect(page.locator(".notice")).to_contain_text("was queued again")
    expect(page.locator(f'tr[data-id="{retrying}"]')).to_have_count(0)
    record = history.queue().get(retrying)
    assert record is not None and record.status == "queued"


def test_the_hostile_delivery_renders_as_text_in_the_browser(
    served: tuple[History, str], page: Any
) -> None:
    """A <script> in a body and a header is shown as text and never runs."""
    from playwright.sync_api import expect

    history, base = served
    page.goto(f"{base}/delivery/{history.hostile}")
    expect(page.locator("pre.body")).to_contain_text("<script>alert('body')</script>")
    expect(page.locator("table.headers")).to_contain_text("<script>alert('header')</script>")
    assert page.locator("script").count() == 0

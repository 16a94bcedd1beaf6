"""Browser tests: Playwright for Python driving Debian's `chromium` (never a downloaded browser) against a
live bxsync (pytest-django's `live_server`).

Screenshots go to docs/screenshots/, where the README shows them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.cache import cache

# Playwright's sync API runs an event loop in the test thread; the ORM calls a test makes beside it are
# synchronous on purpose (tests only).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

from playwright.sync_api import Browser, Page, sync_playwright

# Users are made as in every admin test (tests/support/roles.py); the browser tests import them from here.
from tests.support.roles import PASSWORD, user_make

__all__ = ["PASSWORD", "user_make"]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# Headless in a closed network: without these, Chromium spends its start trying to reach Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is not installed: run .ci/system-packages (as root)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(autouse=True)
def _cache_cleared(request):
    """A live-server test commits for real, and the flush after it empties only the models' tables: the
    database cache would carry this test's real clock into later tests."""
    yield
    if request.node.get_closest_marker("django_db") is None:
        return
    cache.clear()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def log_in(page: Page, live_server, username: str) -> None:
    """Log in through the admin's own login form."""
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def screenshot(page: Page, name: str) -> Path:
    """Save the page as docs/screenshots/<name>.png (for the README) and return the path. The embedded leg
    writes the README's pictures; the scaled leg, running at the same time, writes the same pages to its temp
    dir (BXSYNC_TEST_SCREENSHOTS), so the two never write one file at once."""
    folder = Path(os.environ.get("BXSYNC_TEST_SCREENSHOTS") or SCREENSHOTS)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

"""The dashboard's portal check in a real browser: a Sync manager checks the portals again (in the
background) and reads what to fix, in English and in Russian; Support read the same report without the
button. Writes docs/screenshots/doctor.png and docs/screenshots/doctor-ru.png."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from bitrix_sandbox import Sandbox, SandboxConfig
from statussync import roles
from statussync.doctor.background import CHECKING, doctor_check_run
from statussync.mapping.store import mapping_import
from statussync.models import DoctorReport
from tests.browser.conftest import SCREENSHOTS, log_in, user_make
from tests.support.mappings import DESIGN_EXAMPLE
from tests.support.sandbox import sandbox_use

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sb(settings):
    """Sandbox portals with a CRM whose clock runs two minutes fast and whose stage PREPARATION is gone."""
    with Sandbox(SandboxConfig(seed=5)) as sandbox:
        sandbox_use(sandbox, settings)
        settings.BXSYNC_RATE_PER_SECOND = 2
        sandbox.seed(4)
        mapping_import(data=DESIGN_EXAMPLE)
        sandbox.set_account("crm", clock_skew=120, deleted_stages=["PREPARATION"])
        yield sandbox


def panel_shot(page: Page, name: str) -> Path:
    """The portal check alone, saved like `conftest.screenshot` saves pages."""
    folder = Path(os.environ.get("BXSYNC_TEST_SCREENSHOTS") or SCREENSHOTS)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.locator("#bx-doctor").screenshot(path=str(path))
    return path


def test_it_lets_a_manager_check_the_portals_and_read_the_fixes_in_both_languages(
    page, browser: Browser, live_server, sb
):
    roles.roles_ensure()
    user_make("maria", groups=(roles.SYNC_MANAGERS,))
    user_make("sasha", groups=(roles.SUPPORT,))

    log_in(page, live_server, "maria")
    page.goto(f"{live_server.url}/admin/dashboard/")
    assert "The portals have not been checked yet." in page.inner_text("#bx-doctor")
    page.click("#bx-doctor button[type=submit]")
    page.wait_for_selector(".messagelist")
    # The check runs in a worker: the panel says so, with no second button, until the report is in.
    panel = page.inner_text("#bx-doctor")
    assert "Checking… (started" in panel
    assert page.locator("#bx-doctor button[type=submit]").count() == 0
    doctor_check_run(report_id=DoctorReport.objects.get(verdict=CHECKING).id)  # the worker's task
    page.reload()

    panel = page.inner_text("#bx-doctor")
    assert "Checking…" not in panel
    assert "Bitrix doctor: syncing is blocked: 1 problem(s) to fix" in panel
    assert "the mapping uses stage PREPARATION of pipeline 0, which the CRM does not list" in panel
    assert "the portal's clock is +120 s off bxsync's" in panel or "+119 s" in panel or "+121 s" in panel
    assert "Fix: Set the clocks by NTP" in panel
    panel_shot(page, "doctor")

    russian = browser.new_context(viewport={"width": 1400, "height": 900}, locale="ru-RU")
    try:
        reader = russian.new_page()
        log_in(reader, live_server, "sasha")
        reader.goto(f"{live_server.url}/admin/dashboard/")
        panel = reader.inner_text("#bx-doctor")
        assert "Проверка порталов Битрикса: синхронизация заблокирована" in panel
        assert "в сопоставлении есть стадия PREPARATION воронки 0, которой нет в CRM" in panel
        assert "Проверить снова" not in panel  # Support read, never re-run
        panel_shot(reader, "doctor-ru")
    finally:
        russian.close()

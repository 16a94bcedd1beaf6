"""Connect in a real browser: a Sync manager enters the CRM's address and the local application's keys,
presses Connect, the browser signs in on the (sandbox) portal and comes back connected, with the bound events
and the offline queue's depth shown; Support sees the same and has nothing to press. bxsync is never called by
the portal. Writes docs/screenshots/connect.png."""

from __future__ import annotations

import pytest

from bitrix_sandbox import Sandbox, SandboxConfig
from statussync import intake_pull, roles
from statussync.models import ConnectedPortal, ConnectionState
from tests.browser.conftest import log_in, screenshot, user_make
from tests.support.sandbox import sandbox_use
from tests.support.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sb(settings):
    with Sandbox(SandboxConfig(seed=13)) as sandbox:
        sandbox_use(sandbox, settings)
        settings.BXSYNC_CRM_REST_URL = ""
        yield sandbox


def test_it_connects_the_crm_through_the_portals_sign_in(page, live_server, sb, monkeypatch) -> None:
    # The list keeps the portal's count for 5 s; a second here, as the wait below is for it to pass.
    monkeypatch.setattr(intake_pull, "QUEUE_DEPTH_SECONDS", 1)
    user_make("manager", groups=(roles.SYNC_MANAGERS,))
    sb.crm.app.configure(redirect_uri=f"{live_server.url}/admin/statussync/connectedportal/connect/done/")
    log_in(page, live_server, "manager")

    page.goto(f"{live_server.url}/admin/statussync/connectedportal/add/")
    page.select_option("#id_portal", "crm")
    page.fill("#id_address", sb.crm.base_url)
    page.fill("#id_client_id", sb.crm.app.client_id)
    page.fill("#id_client_secret", sb.crm.app.client_secret)
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    page.fill("#id_oauth_server", sb.crm.base_url)  # the sandbox is its own authorization server
    page.click("input[value=Connect]")

    page.wait_for_url(f"{live_server.url}/admin/statussync/connectedportal/")
    assert "connected as an application" in page.content()
    assert "ONCRMDEALMOVETOCATEGORY" in page.content()
    assert ConnectedPortal.objects.get(portal="crm").state == ConnectionState.CONNECTED
    assert sb.crm.app.client_secret not in page.content()

    # Two deals change while nobody pulls: the list shows the queue as the portal counts it, once the time
    # the last count is kept for has passed.
    for _, deal_id in sb.seed(2, pipeline_share=0.0, orders_without_deal=0, deals_without_order=0):
        sb.crm.move_deal(deal_id, "PREPARATION")

    def queue_shown() -> str:
        page.reload()
        return page.inner_text("td.field-queue").strip()

    wait_for(lambda: queue_shown() == "2", timeout=15, what="the queue's depth of 2 on the list")
    screenshot(page, "connect")

    user_make("support", groups=(roles.SUPPORT,))
    page.context.clear_cookies()
    log_in(page, live_server, "support")
    page.goto(f"{live_server.url}/admin/statussync/connectedportal/")
    assert page.inner_text("td.field-queue").strip() == "2"
    assert "ONCRMDEALMOVETOCATEGORY" in page.content()
    page.click("th.field-portal a")
    assert page.locator("input[value=Connect], button.deletelink").count() == 0
    assert ConnectedPortal.objects.get(portal="crm").state == ConnectionState.CONNECTED

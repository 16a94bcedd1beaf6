"""The links list in a real browser, as a manager: a resync from the list, through its confirmation page,
moves the sandbox deal. Writes docs/screenshots/links.png."""

from __future__ import annotations

import pytest
from django.utils import timezone

from bitrix_sandbox import Sandbox, SandboxConfig
from statussync.jobs import job_request
from statussync.mapping.catalog_refresh import catalog_refresh
from statussync.mapping.store import mapping_import
from statussync.models import Job, JobKind, JobState, Link
from tests.browser.conftest import log_in, screenshot, user_make
from tests.support.mappings import two_pipelines
from tests.support.roles import MANAGERS, role_group
from tests.support.sandbox import pay, run_worker, sandbox_use

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sb(settings):
    """The sandbox portals (no events delivered: the test runs the worker itself), bxsync pointed at them."""
    with Sandbox(SandboxConfig(seed=7)) as sandbox:
        sandbox_use(sandbox, settings)
        mapping_import(data=two_pipelines())
        catalog_refresh()  # the list shows the portals' names for statuses, stages and pipelines
        yield sandbox


def links_in_every_state(sb: Sandbox) -> list[tuple[str, str]]:
    """Six linked pairs, then what a working day does to them: a regression after payment, a stage without a
    rule, both sides changed at once, failed work, a payment; the first pair's order changes silently (its
    event lost), which is what the manager's resync is for."""
    pairs = [
        (str(o), str(d))
        for o, d in sb.seed(6, pipeline_share=0, orders_without_deal=0, deals_without_order=0)
    ]
    for order_id, _ in pairs:
        job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()

    (o2, d2), (_, d3), (o4, d4), (o5, _), (o6, _) = pairs[1:]
    job_request(kind=JobKind.PAYMENT, entity_id=pay(sb, o2))
    job_request(kind=JobKind.PAYMENT, entity_id=pay(sb, o6))
    run_worker("payments")
    sb.crm.move_deal(int(d2), "NEW")  # would put the paid order back to awaiting payment
    sb.crm.move_deal(int(d3), "EXECUTING")  # no order status is mapped to it
    sb.crm.move_deal(int(d4), "LOSE")  # ... while the shop finishes the same order
    sb.shop.set_order_status(int(o4), "F")
    for deal_id in (d2, d3, d4):
        job_request(kind=JobKind.DEAL, entity_id=deal_id)
    run_worker()
    Job.objects.create(
        kind=JobKind.ORDER,
        entity_id=o5,
        state=JobState.DEAD,
        attempts=1,
        last_error="PermanentError: sale.order.update: ACCESS_DENIED (the webhook user may not edit orders)",
        not_before=timezone.now(),
        finished_at=timezone.now(),
    )

    sb.advance_clock(60)
    sb.shop.set_order_status(int(pairs[0][0]), "P")
    return pairs


def test_it_resyncs_a_link_from_the_list_and_the_sandbox_deal_moves(page, live_server, sb):
    pairs = links_in_every_state(sb)
    order_id, deal_id = pairs[0]
    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "NEW"
    role_group(MANAGERS)
    user_make("maria", groups=(MANAGERS,))
    link = Link.objects.get(order_id=order_id)

    log_in(page, live_server, "maria")
    page.goto(f"{live_server.url}/admin/statussync/link/")
    page.check(f"input.action-select[value='{link.id}']")
    page.select_option("select[name=action]", "resync")
    page.click("button[name=index]")

    assert "Resync 1 link?" in page.content()
    page.click("input[type=submit][value='Yes, resync']")
    page.wait_for_selector(".messagelist")
    assert "Queued 1 link for resync" in page.inner_text(".messagelist")

    run_worker()  # the worker the wake-up would start

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPARATION"
    page.goto(f"{live_server.url}/admin/statussync/link/")
    row = page.locator("#result_list tbody tr", has_text=f"{deal_id}").first
    assert "PREPARATION" in row.inner_text()
    assert "In sync" in row.inner_text()
    listing = page.inner_text("#result_list")
    for state in ("Regression blocked", "Unmapped", "Conflict", "Error"):
        assert state in listing
    screenshot(page, "links")

"""Support in a real browser: an order id typed in the header leads to the order's timeline, which says why it
is in its status and lets nothing be changed; the dashboard's chart renders. Writes docs/screenshots/
timeline.png and dashboard.png."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from statussync.mapping.catalog_refresh import catalog_refresh
from statussync.models import AuditEntry, InboundEvent, Link
from statussync.reasons import why
from statussync.reconcile import reconcile_run
from tests.admin.story import link_story
from tests.browser.conftest import PASSWORD, log_in, screenshot
from tests.support.roles import support_make
from tests.sync.conftest import sandbox, sb

__all__ = ["sandbox", "sb"]

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_leads_support_from_an_order_id_to_its_timeline_and_changes_nothing(page, live_server, sb):
    catalog_refresh()  # support reads the portals' names for statuses and stages, not only their codes
    story = link_story(sb)
    support_make("sasha", PASSWORD)
    log_in(page, live_server, "sasha")

    page.fill("#bx-find", story.order_id)
    page.press("#bx-find", "Enter")

    page.wait_for_url(f"{live_server.url}/admin/statussync/link/{story.link.id}/change/")
    summary = page.locator(".bx-summary")
    assert "Blocked: paid order sent back" in summary.inner_text()
    # Names as the portals give them: the shop's in the reader's language, the CRM's in the portal's.
    assert (
        "deal moved to Новая (NEW), which would put paid order back to Accepted, awaiting payment (N)"
        in summary.inner_text()
    )
    payment = page.locator('.bx-step[data-outcome="payment_applied"]')
    assert (
        "order paid: deal Подготовка документов (PREPARATION) → Счёт на предоплату (PREPAYMENT_INVOICE)"
        in (payment.inner_text())
    )
    assert page.locator('.bx-step[data-outcome="echo"]').count() == 2
    # Nothing to change: no save button, no form in the page's content, and a forged POST is refused.
    assert page.locator("input[name=_save], button[name=_save]").count() == 0
    assert page.locator("#content-main form").count() == 0
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    refused = page.request.post(
        page.url,
        form={"csrfmiddlewaretoken": token, "base_order_status": "F", "_save": "Save"},
        headers={"X-CSRFToken": token, "Referer": page.url},
    )
    assert refused.status == 403
    assert "CSRF" not in refused.text()  # refused for want of the permission, not for a missing token
    assert Link.objects.get(id=story.link.id).base_order_status == "P"

    screenshot(page, "timeline")


def _a_day_of_activity() -> None:
    """A day of decisions and events behind the dashboard's chart, shaped like a shop's day."""
    rng = random.Random(7)
    now = timezone.now()
    outcomes = ["no_change"] * 5 + ["echo"] * 4 + ["applied"] * 4 + ["payment_applied"] * 2 + ["retried"]
    entries, events = [], []
    for hours_ago in range(24):
        moment = now - timedelta(hours=hours_ago)
        busy = 4 + 20 * max(0, 1 - abs(timezone.localtime(moment).hour - 14) / 8)
        for _ in range(int(busy * rng.uniform(0.7, 1.3))):
            at = moment - timedelta(minutes=rng.randrange(60))
            outcome = rng.choice(outcomes)
            # Payments have their own worker and reserved slots: a few hundred ms (docs/benchmarks.md).
            latency = rng.randrange(80, 400) if outcome == "payment_applied" else rng.randrange(300, 1500)
            entries.append(AuditEntry(outcome=outcome, latency_ms=latency, reason=why("echo").as_json()))
            events.append((at, outcome))
    # One blocked regression and one conflict, so the held-back colour shows.
    entries += [AuditEntry(outcome="regression_blocked"), AuditEntry(outcome="conflict_flagged")]
    events += [(now - timedelta(hours=5), "regression_blocked"), (now - timedelta(hours=9), "conflict")]
    created = AuditEntry.objects.bulk_create(entries)
    for entry, (at, _) in zip(created, events, strict=True):
        AuditEntry.objects.filter(id=entry.id).update(created_at=at)
    received = InboundEvent.objects.bulk_create(
        InboundEvent(side="cms", event="ONSALEORDERSAVED", entity_id=str(i), dedupe_key=f"day:{i}")
        for i in range(len(events))
    )
    for event, (at, _) in zip(received, events, strict=True):
        InboundEvent.objects.filter(id=event.id).update(received_at=at - timedelta(seconds=2))


def test_it_shows_support_the_dashboard_chart(page, live_server, sb, settings):
    catalog_refresh()
    link_story(sb)
    reconcile_run(process_inline=True)
    _a_day_of_activity()
    # The sandbox runs at 1000 requests a second for speed; show Bitrix cloud's limits.
    settings.BXSYNC_RATE_PER_SECOND, settings.BXSYNC_RATE_BURST = 2, 50
    support_make("sasha", PASSWORD)
    log_in(page, live_server, "sasha")

    page.click("#header >> text=Dashboard")

    page.wait_for_url(f"{live_server.url}/admin/dashboard/")
    chart = page.locator("svg.bx-svg-chart")
    assert chart.is_visible()
    assert chart.locator("rect[data-series]").count() > 24
    assert chart.locator('path[data-series="events"]').count() == 1
    assert chart.bounding_box()["width"] > 600
    content = page.locator("#content-main").inner_text()
    assert "Links needing attention" in content
    assert "changes read up to" in content

    screenshot(page, "dashboard")

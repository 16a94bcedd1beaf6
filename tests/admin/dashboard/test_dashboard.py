"""The dashboard: activity per hour as an SVG chart, payment latency, what needs attention, queues, the REST
limit, reconciliation and the portals."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from statussync.admin.charts import axis_scale
from statussync.admin.dashboard import activity_hourly, payment_latency
from statussync.bitrix import TransientError
from statussync.bitrix.ratelimit import limiter_for, limiter_level
from statussync.models import AuditEntry, InboundEvent, Job, JobState, Link, Watermark
from statussync.reasons import why

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/dashboard/"


def audit(
    outcome: str, *, ago: timedelta = timedelta(0), latency_ms: int | None = None, now: datetime | None = None
) -> None:
    row = AuditEntry.objects.create(outcome=outcome, latency_ms=latency_ms)
    AuditEntry.objects.filter(id=row.id).update(created_at=(now or timezone.now()) - ago)


def test_it_draws_events_and_decisions_per_hour_as_svg(support, client):
    for i in range(3):
        InboundEvent.objects.create(side="cms", event="ONSALEORDERSAVED", entity_id=str(i), dedupe_key=str(i))
    audit("applied")
    audit("payment_applied", latency_ms=300)
    audit("echo")
    audit("regression_blocked", ago=timedelta(hours=2))
    audit("applied", ago=timedelta(hours=30))  # older than the chart
    client.force_login(support)

    response = client.get(DASHBOARD)

    assert response.status_code == 200
    html = response.content.decode()
    svg = re.search(r'<svg [^>]*class="bx-svg-chart".*?</svg>', html, flags=re.S)[0]
    assert 'role="img"' in svg
    assert len(re.findall(r'<rect [^>]*data-series="', svg)) == 4  # this hour: 3 parts; two hours ago: 1
    assert 'data-series="payments"' in svg
    assert 'data-series="held"' in svg
    assert re.search(r'<path d="M[^"]+" [^>]*data-series="events"', svg)
    assert "Events received: 3 · writes: 2 (for payments: 1) · held for a manager: 1" in html


def test_it_counts_by_the_hour_in_the_readers_time_zone(settings):
    settings.TIME_ZONE = "Asia/Kolkata"  # +05:30: hours do not start at UTC hours
    # 15:20 in Kolkata: a minute ago is this hour whatever the clock says when the test runs.
    now = datetime(2026, 11, 30, 9, 50, tzinfo=UTC)
    audit("applied", ago=timedelta(minutes=1), now=now)
    audit("applied", ago=timedelta(hours=3), now=now)

    activity = activity_hourly(now=now)

    assert sum(activity.groups["writes"]) == 2
    assert activity.groups["writes"][-1] >= 1
    assert all(slot.minute == 0 for slot in activity.hours)
    assert str(activity.hours[-1].tzinfo) == "Asia/Kolkata"


def test_it_reports_payment_latency_p50_and_p99():
    for ms in range(1, 101):  # 1 … 100 ms
        audit("payment_applied", latency_ms=ms * 10)
    audit("payment_applied", ago=timedelta(days=2), latency_ms=99_999)  # older than a day
    audit("applied", latency_ms=50_000)  # not a payment

    latency = payment_latency(now=timezone.now())

    # Nearest rank: the 50th and the 99th of 100.
    assert (latency.count, latency.p50, latency.p99) == (100, "500 ms", "990 ms")


def test_it_lists_links_needing_attention_dead_letters_and_queues(support, client):
    Link.objects.create(
        order_id="1",
        deal_id="10",
        needs_attention=True,
        attention=why("regression", stage="NEW", target="N").as_json(),
    )
    Job.objects.create(kind="deal", entity_id="10", state=JobState.DEAD, not_before=timezone.now())
    Job.objects.create(kind="order", entity_id="2", not_before=timezone.now() - timedelta(minutes=1))
    client.force_login(support)

    html = client.get(DASHBOARD).content.decode()

    assert "deal moved to NEW, which would put paid order back to N" in html
    assert "1 dead letter: work that kept failing" in html
    assert "/admin/statussync/job/?state__exact=dead" in html
    assert re.search(r"Everything else</th>\s*<td>1</td><td>0</td>\s*<td[^>]*>6\d s", html)


def test_it_says_how_much_of_one_portals_limit_bxsync_leaves_to_others(support, client, portals):
    # settings/performance/limits.md: one bucket per Bitrix24, shared by its applications.
    # One Bitrix24, two roles: the CRM webhook on the shop's host.
    portals.BXSYNC_CRM_REST_URL = "https://shop.example.ru/rest/7/crmsecretcode456/"
    client.force_login(support)

    html = client.get(DASHBOARD).content.decode()

    assert "bxsync leaves 10 of them to the portal's other applications" in html
    assert "The shop and the CRM are one portal here: they share one limit." in html
    # Both roles' payment reserves, since a payment reads the shop and reads and writes the CRM.
    assert "ordinary work stops at 20, the last 20 are kept for payments" in html


def test_it_shows_the_rest_limit_in_use_and_the_last_reconciliation(support, client, portals):
    portals.BXSYNC_RATE_PER_SECOND = 0.01  # so the bucket does not drain while the test runs
    limiter = limiter_for("crm")
    for _ in range(12):
        limiter.acquire()
    Watermark.objects.create(portal="cms", value=timezone.now() - timedelta(minutes=5))
    client.force_login(support)

    html = client.get(DASHBOARD).content.decode()

    assert limiter_level("crm") == pytest.approx(12, abs=0.1)
    assert limiter_level("cms") is None
    assert re.search(r"<strong>CRM</strong>:\s*12 of 50 requests", html)
    assert re.search(r"<strong>Shop</strong>:\s*0 of 50 requests", html)  # never used: an empty bucket
    assert "changes read up to" in html
    assert "not run yet" in html  # the CRM's watermark


def test_it_needs_the_dashboard_permission(staff, client):
    staff = staff
    client.force_login(staff)

    assert client.get(DASHBOARD).status_code == 403
    assert client.get("/admin/").status_code == 200
    assert "/admin/dashboard/" not in client.get("/admin/").content.decode()


def test_it_is_linked_from_the_admin_index_and_header(support, client):
    client.force_login(support)

    html = client.get("/admin/").content.decode()

    assert html.count('href="/admin/dashboard/"') == 2


def test_it_reads_a_bounded_number_of_queries(support, client, django_assert_max_num_queries):
    for i in range(300):
        audit("applied" if i % 2 else "echo", ago=timedelta(minutes=i * 7), latency_ms=i)
    client.force_login(support)

    # 30; whether a portal moved (from the cache); the newest portal check and any check running; whether each
    # side is connected as an application (statussync/health.py)
    with django_assert_max_num_queries(35):
        assert client.get(DASHBOARD).status_code == 200


@pytest.mark.parametrize(
    ("peak", "expected"),
    [(0, (1, 1)), (3, (3, 1)), (7, (8, 2)), (26, (30, 10)), (50, (50, 10)), (980, (1000, 200))],
)
def test_it_picks_round_axis_steps(peak, expected):
    assert axis_scale(peak) == expected


def test_it_says_when_a_portals_last_outage_began_and_when_it_answered_again(support, client, portals):
    from statussync.health import portal_contact_record
    from statussync.models import PortalHealth

    portal_contact_record(portal="crm", error=TransientError(portal="crm", method="batch", http_status=503))
    PortalHealth.objects.filter(portal="crm").update(failing_since=datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
    portal_contact_record(portal="crm")
    client.force_login(support)

    html = client.get(DASHBOARD).content.decode()

    assert re.search(r"last outage: failing from [^<]*2026[^<]*, answering again at", html)

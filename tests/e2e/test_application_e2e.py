"""Both portals connected as Bitrix24 applications in pull mode, end to end with real processes and at Bitrix
cloud's limits (2 requests/s, burst 50, on the portals and in bxsync's limiter): bxsync down while people
change 200 deals and customers pay, then back — every change and payment written exactly once from the
portals' offline queues, without a reconciliation, the payments within a second; a bulk edit makes no echo;
a pipeline move (an application-only event) is synced within seconds; the portal's ONOFFLINEEVENT wakes the
puller, so a payment is written well under a second with the poll interval at 30 s.

Spec: api-reference/events/offline-events.md, on-offline-event.md, settings/oauth/index.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.e2e.stack import Stack, running_stack
from tests.support.legs import leg
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

CHANGED_DEALS = 200
PAYMENTS = 10
OUTAGE_SECONDS = 120  # on the portals' clock: see the outage test's docstring
# Long: between the portal's wake-ups nothing else reads the queues quickly, so fast means woken.
POLL_SECONDS = 30


@pytest.fixture(scope="module")
def pulled(tmp_path_factory) -> Iterator[Stack]:
    """A stack with no webhook at all: both portals connected as applications in pull mode, at cloud's
    limits, the queues polled every 30 s and read at once when the portal wakes bxsync."""
    workdir = tmp_path_factory.mktemp(f"e2e-app-{leg()}")
    with running_stack(
        leg(),
        workdir,
        portal_rate=2,
        BXSYNC_RATE_PER_SECOND="2",
        BXSYNC_RATE_BURST="50",
        BXSYNC_PULL_SECONDS=str(POLL_SECONDS),
        BXSYNC_CMS_REST_URL="",
        BXSYNC_CRM_REST_URL="",
    ) as stack:
        stack.sandbox.configure_events(shop_handler="", crm_handler="")  # no outgoing webhooks
        stack.application_connect(stack.sandbox.shop, "cms")
        stack.application_connect(stack.sandbox.crm, "crm")
        yield stack


def _settled(stack: Stack) -> bool:
    queues = stack.sandbox.shop.app.depth() + stack.sandbox.crm.app.depth()
    busy = stack.query("SELECT count(*) FROM statussync_job WHERE state IN ('pending', 'running')")[0][0]
    return queues == 0 and busy == 0


def _wait_settled(stack: Stack, timeout: float = 90.0) -> None:
    # Twice, a pull interval apart: a record the puller is about to store is in neither count.
    wait_for(lambda: _settled(stack) and not time.sleep(1.5) and _settled(stack), timeout=timeout)


def _reconciled(stack: Stack) -> int:
    return stack.query("SELECT count(*) FROM statussync_auditentry WHERE origin = 'reconcile'")[0][0]


def _writes(stack: Stack) -> dict[str, dict[str, int]]:
    """bxsync's REST writes by portal and method (the sandbox's counters)."""
    return {side: dict(c.get("writes", {}).get("rest", {})) for side, c in stack.sandbox.counters().items()}


def _renewals(stack: Stack) -> dict[str, int]:
    return {side: c.get("oauth", {}).get("refresh_token", 0) for side, c in stack.sandbox.counters().items()}


def test_it_writes_every_change_and_payment_made_while_it_was_down_exactly_once(pulled: Stack) -> None:
    """Real: bxsync's processes stopped (SIGTERM) and started again, 200 deals changed twice each and 10
    orders paid while it is down, at cloud's limits. Simulated: the two minutes. The downtime on the wall is
    however long those changes take (the queue keeps records, not time); the portals' clocks then move on
    two minutes, so the records are two minutes old when bxsync is back, and before the changes they move
    to a minute before bxsync's access tokens expire (an hour after they were issued), so the tokens expire
    during the outage and every process of bxsync meets ``expired_token`` on its first call."""
    sb = pulled.sandbox
    pairs = pulled.seed_linked(CHANGED_DEALS + PAYMENTS + 1)
    _wait_settled(pulled)
    moved, paid = pairs[:CHANGED_DEALS], pairs[CHANGED_DEALS:-1]
    to_pipeline = pairs[-1]
    reconciled = _reconciled(pulled)

    pulled.stop()
    sb.reset_counters()
    sb.advance_clock(max(0.0, min(sb.shop.app.access_seconds_left(), sb.crm.app.access_seconds_left()) - 60))
    for _, deal_id in moved:
        sb.crm.move_deal(deal_id, "PREPARATION", user_id=7)
        sb.crm.move_deal(deal_id, "EXECUTING", user_id=7)  # one record per deal: the queue keeps the last
    for order_id, _ in paid:
        sb.shop.pay_order(order_id)
    sb.crm.move_deal_to_pipeline(to_pipeline[1], 1, user_id=7)
    sb.advance_clock(OUTAGE_SECONDS)
    assert sb.crm.app.access_seconds_left() < 0
    assert sb.shop.app.access_seconds_left() < 0
    assert sb.crm.app.depth() == CHANGED_DEALS + 1

    starting = time.monotonic()
    pulled.serve()
    back = time.monotonic()
    wait_for(
        lambda: all(sb.crm.get_deal(d)["STAGE_ID"] == "PREPAYMENT_INVOICE" for _, d in paid),
        timeout=30,
        interval=0.05,
        what="the paid orders' deals at the paid stage",
    )
    payments_seconds = time.monotonic() - back
    from_start = time.monotonic() - starting
    _wait_settled(pulled, timeout=180)
    settled_seconds = time.monotonic() - back

    assert all(sb.shop.get_order(o)["statusId"] == "D" for o, _ in moved)
    # Exactly once: one write per changed deal's order and per paid order's deal, and no reconciliation.
    writes = _writes(pulled)
    assert sum(writes["shop"].values()) == CHANGED_DEALS, writes
    assert sum(writes["crm"].values()) == PAYMENTS, writes
    assert _reconciled(pulled) == reconciled
    # The expired tokens: renewed once per portal, however many processes met them at once.
    assert _renewals(pulled) == {"shop": 1, "crm": 1}
    link_pipeline = pulled.query(
        "SELECT pipeline_id FROM statussync_link WHERE deal_id = ?", str(to_pipeline[1])
    )
    assert link_pipeline == [(1,)]
    requests_made = {side: c.get("rest_requests", 0) for side, c in sb.counters().items()}
    print(
        f"writes {writes}; requests {requests_made}; payments synced {payments_seconds:.2f} s after "
        f"bxsync answered, {from_start:.2f} s after its start; all changes in {settled_seconds:.1f} s"
    )
    assert payments_seconds < 1


def test_it_makes_no_echo_of_a_bulk_edit(pulled: Stack) -> None:
    sb = pulled.sandbox
    pairs = pulled.seed_linked(20)
    _wait_settled(pulled)
    before = pulled.query("SELECT count(*) FROM statussync_inboundevent")[0][0]
    sb.reset_counters()

    sb.crm.bulk_move([deal for _, deal in pairs], "WON", user_id=7)
    wait_for(lambda: all(sb.shop.get_order(o)["statusId"] == "F" for o, _ in pairs), timeout=60)
    _wait_settled(pulled)

    # 20 deal records read, 20 orders written, and the shop queued none of bxsync's writes: no echo to read.
    events = pulled.query("SELECT side, count(*) FROM statussync_inboundevent GROUP BY side")
    assert sum(n for _, n in events) - before == len(pairs)
    assert sb.shop.metrics.get("offline", "suppressed", "ONSALEORDERSAVED") == len(pairs)
    calls = sb.counters()["shop"]["rest_calls"]
    assert calls.get("sale.order.list", 0) <= 2  # the run's read of the 20 orders (and the read-back)


def test_it_writes_a_payment_well_under_a_second_when_the_portal_wakes_it(pulled: Stack) -> None:
    sb = pulled.sandbox
    [(order_id, deal_id)] = pulled.seed_linked(1)
    _wait_settled(pulled)
    woken = sb.shop.metrics.get("app_events", "sent")

    paid_at = time.monotonic()
    sb.shop.pay_order(order_id)
    wait_for(
        lambda: sb.crm.get_deal(deal_id)["STAGE_ID"] == "PREPAYMENT_INVOICE",
        timeout=POLL_SECONDS / 2,
        interval=0.02,
        what="the paid order's deal at the paid stage",
    )
    latency = time.monotonic() - paid_at

    assert sb.shop.metrics.get("app_events", "sent") > woken  # the portal's ONOFFLINEEVENT
    print(f"payment written {latency:.2f} s after it was made, the queue polled every {POLL_SECONDS} s")
    assert latency < 1


def test_it_syncs_a_pipeline_move_within_seconds(pulled: Stack) -> None:
    sb = pulled.sandbox
    [(order_id, deal_id)] = pulled.seed_linked(1)
    _wait_settled(pulled)

    moved_at = time.monotonic()
    sb.crm.move_deal_to_pipeline(deal_id, 1, user_id=7)
    wait_for(
        lambda: (
            pulled.query("SELECT pipeline_id FROM statussync_link WHERE order_id = ?", str(order_id))
            == [(1,)]
        ),
        timeout=15,
        interval=0.1,
        what="the link to follow the deal into pipeline 1",
    )
    assert time.monotonic() - moved_at < 5

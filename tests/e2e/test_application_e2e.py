"""Both portals connected as Bitrix24 applications in pull mode, end to end with real processes: bxsync down
while people change deals and customers pay, then back — every change and payment written exactly once from
the portals' offline queues, without a reconciliation; a bulk edit makes no echo; a pipeline move (an
application-only event) is synced within seconds.

Spec: api-reference/events/offline-events.md, settings/oauth/index.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from bitrix_sandbox.rest import Portal
from tests.e2e.stack import Stack, running_stack
from tests.support.legs import leg
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

PAIRS = 60
DOWN_SECONDS = 10

_CONNECT = """
from statussync.applications import application_connect_start
print(application_connect_start(portal={side!r}, address={address!r}, client_id={client_id!r},
      client_secret={secret!r}, oauth_server={address!r}))
"""
_FINISH = (
    "from statussync.applications import application_connect_finish as f; f(state={state!r}, code={code!r})"
)


def _connect(stack: Stack, portal: Portal, side: str) -> None:
    """The manager's Connect, the browser's sign-in on the portal and the way back, as the admin does it."""
    portal.app.configure(redirect_uri=f"{stack.url}/admin/statussync/connectedportal/connect/done/")
    app = portal.app
    script = _CONNECT.format(
        side=side, address=portal.base_url, client_id=app.client_id, secret=app.client_secret
    )
    sign_in = stack.manage("shell", "-c", script).stdout.strip().splitlines()[-1]
    back = requests.get(sign_in, allow_redirects=False, timeout=5).headers["Location"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}
    stack.manage("shell", "-c", _FINISH.format(state=query["state"], code=query["code"]))


@pytest.fixture(scope="module")
def pulled(tmp_path_factory) -> Iterator[Stack]:
    """A stack with no webhook at all: both portals connected as applications in pull mode."""
    workdir = tmp_path_factory.mktemp(f"e2e-app-{leg()}")
    with running_stack(leg(), workdir, BXSYNC_CMS_REST_URL="", BXSYNC_CRM_REST_URL="") as stack:
        stack.sandbox.configure_events(shop_handler="", crm_handler="")  # no outgoing webhooks
        _connect(stack, stack.sandbox.shop, "cms")
        _connect(stack, stack.sandbox.crm, "crm")
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


def test_it_writes_every_change_and_payment_made_while_it_was_down_exactly_once(pulled: Stack) -> None:
    sb = pulled.sandbox
    pairs = pulled.seed_linked(PAIRS)
    _wait_settled(pulled)
    sb.reset_counters()
    reconciled = _reconciled(pulled)
    moved, paid, to_pipeline = pairs[:30], pairs[30:40], pairs[40]

    pulled.stop()
    started = time.monotonic()
    for _, deal_id in moved:
        sb.crm.move_deal(deal_id, "PREPARATION", user_id=7)
        sb.crm.move_deal(deal_id, "EXECUTING", user_id=7)  # one record per deal: the queue keeps the last
    for order_id, _ in paid:
        sb.shop.pay_order(order_id)
    sb.crm.move_deal_to_pipeline(to_pipeline[1], 1, user_id=7)
    time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - started)))

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
    _wait_settled(pulled)

    assert all(sb.shop.get_order(o)["statusId"] == "D" for o, _ in moved)
    # Exactly once: one write per changed order or deal, whatever was queued, and no reconciliation ran.
    assert sb.rest_writes() == len(moved) + len(paid)
    assert _reconciled(pulled) == reconciled
    link_pipeline = pulled.query(
        "SELECT pipeline_id FROM statussync_link WHERE deal_id = ?", str(to_pipeline[1])
    )
    assert link_pipeline == [(1,)]
    print(
        f"payments synced {payments_seconds:.2f} s after bxsync answered, {from_start:.2f} s after its start"
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

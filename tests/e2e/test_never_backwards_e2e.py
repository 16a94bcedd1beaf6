"""Never backwards, end to end (issue 14): a payment for a deal at a stage the CRM no longer lists holds the
deal where it is and the link says why, on either leg."""

from __future__ import annotations

import json

import pytest

from tests.e2e.stack import Stack
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def test_it_never_moves_a_deal_back_from_a_deleted_stage_and_the_link_says_why(e2e: Stack):
    [(order_id, deal_id)] = e2e.seed_linked(1)
    crm = e2e.sandbox.crm
    # A stage added after the paid one (PREPAYMENT_INVOICE, 30), the deal moved there unseen by bxsync, then
    # the stage deleted: the deal keeps an id no stage list has.
    packed = crm.add_stage(0, "UC_PACKED_E2E", "Упакован", 45)
    e2e.sandbox.set_faults("crm", drop_rate=1.0)
    crm.move_deal(deal_id, packed, user_id=7)
    e2e.sandbox.clear_faults("crm")
    crm.delete_stage(packed)
    e2e.sandbox.reset_counters()

    e2e.sandbox.shop.pay_order(order_id)

    def attention() -> dict:
        rows = e2e.query("SELECT attention FROM statussync_link WHERE order_id = ?", str(order_id))
        value = rows[0][0] if rows else None
        return (json.loads(value) if isinstance(value, str) else value) or {}

    wait_for(lambda: attention().get("code") == "payment_held", timeout=30, what="the link to say why")
    e2e.wait_idle()
    assert crm.get_deal(deal_id)["STAGE_ID"] == packed
    assert e2e.sandbox.rest_writes() == 0
    outcomes = {
        o for (o,) in e2e.query("SELECT outcome FROM statussync_auditentry WHERE deal_id = ?", str(deal_id))
    }
    assert "regression_blocked" in outcomes
    assert "payment_applied" not in outcomes

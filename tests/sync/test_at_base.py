"""A payment's deal checked at its base and written in one CRM call (statussync/sync/at_base.py): the deal
moves only if it still stands where both sides last agreed; otherwise the check's read-back is the run's read
of the deal, and the payment is decided from what it shows."""

from __future__ import annotations

from statussync.jobs import job_request
from statussync.models import AuditEntry, JobKind, Link
from tests.support.sandbox import linked_pair, pay, run_worker


def _crm_requests(sb) -> int:
    return sb.counters()["crm"].get("rest_requests", 0)


def _customer_pays(sb, order_id: str) -> None:
    """The customer pays; the payment's run is counted from here on."""
    payment_id = pay(sb, order_id)
    sb.reset_counters()
    job_request(kind=JobKind.PAYMENT, entity_id=payment_id)
    run_worker("payments")


def test_it_says_which_stage_the_deal_was_moved_from_when_it_stood_at_its_base(sb):
    order_id, deal_id = linked_pair(sb)

    _customer_pays(sb, order_id)

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPAYMENT_INVOICE"
    assert _crm_requests(sb) == 1
    assert sb.counters()["crm"]["writes"]["rest"] == {"crm.deal.update": 1}
    entry = AuditEntry.objects.get(order_id=order_id, outcome="payment_applied")
    assert entry.before["deal_stage"] == "NEW"
    assert entry.after["deal_stage"] == "PREPAYMENT_INVOICE"
    link = Link.objects.get(order_id=order_id)
    assert (link.base_deal_stage, link.base_paid, link.intent_side) == ("PREPAYMENT_INVOICE", True, "")


def test_it_leaves_a_deal_moved_past_the_paid_stage_since_the_base_where_it_is(sb):
    order_id, deal_id = linked_pair(sb)
    sb.crm.move_deal(int(deal_id), "EXECUTING")  # its event not yet handled: the base still says NEW

    _customer_pays(sb, order_id)

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "EXECUTING"
    assert not sb.counters()["crm"].get("writes", {}).get("rest")  # nothing written to the CRM
    # The check found no deal at NEW, so the update named none; its read-back was the run's read of the deal.
    assert sb.counters()["crm"]["rest_calls"]["crm.deal.update"] == 1
    assert _crm_requests(sb) == 1
    entry = AuditEntry.objects.filter(order_id=order_id).latest("id")
    assert entry.outcome != "payment_applied"
    assert entry.before["deal_stage"] == "EXECUTING"
    assert Link.objects.get(order_id=order_id).intent_side == ""


def test_it_still_moves_a_deal_moved_elsewhere_before_the_paid_stage_in_the_write_round(sb):
    order_id, deal_id = linked_pair(sb)
    sb.crm.move_deal(int(deal_id), "PREPARATION")  # moved since the base, still before the paid stage

    _customer_pays(sb, order_id)

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPAYMENT_INVOICE"
    # The check (its read-back the run's read), then the write: what reading and writing cost before.
    assert _crm_requests(sb) == 2
    entry = AuditEntry.objects.get(order_id=order_id, outcome="payment_applied")
    assert entry.before["deal_stage"] == "PREPARATION"

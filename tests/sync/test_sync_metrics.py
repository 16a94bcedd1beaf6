"""/metrics after real sync runs against the sandbox portals: REST requests and limiter waits per portal,
decisions and writes by outcome, and the payment latency histogram."""

from __future__ import annotations

from statussync.jobs import job_request
from statussync.models import JobKind
from tests.support.sandbox import linked_pair, pay, run_worker
from tests.support.scrape import scrape, value


def test_it_counts_rest_requests_and_limiter_waits_per_portal(sb, client):
    order_id, _ = linked_pair(sb)
    sb.shop.set_order_status(int(order_id), "P")
    before = scrape(client)

    job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()
    after = scrape(client)

    def requests(portal: str) -> float:
        return sum(
            v - before.get(k, 0.0)
            for k, v in after.items()
            if k[0] == "bxsync_rest_requests_total"
            and ("portal", portal) in k[1]
            and ("result", "200") in k[1]
        )

    assert requests("cms") >= 1
    assert requests("crm") >= 1
    waited = value(after, "bxsync_limiter_wait_seconds_count", portal="crm") - value(
        before, "bxsync_limiter_wait_seconds_count", portal="crm"
    )
    assert waited == requests("crm")  # every request went through the limiter


def test_it_counts_decisions_and_writes_by_outcome(sb, client):
    order_id, deal_id = linked_pair(sb)
    sb.shop.set_order_status(int(order_id), "P")
    before = scrape(client)

    job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()
    job_request(kind=JobKind.DEAL, entity_id=deal_id)  # the echo of our write
    run_worker()
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("bxsync_decisions_total", outcome="applied") == 1
    assert delta("bxsync_decisions_total", outcome="echo") == 1
    assert delta("bxsync_writes_total", portal="crm", result="took effect") == 1
    assert delta("bxsync_writes_total", portal="cms", result="took effect") == 0


def test_it_records_a_payments_latency_from_event_to_deal_update(sb, client):
    order_id, deal_id = linked_pair(sb)
    payment_id = pay(sb, order_id)
    before = scrape(client)

    job_request(kind=JobKind.PAYMENT, entity_id=payment_id)
    run_worker("payments")
    after = scrape(client)

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPAYMENT_INVOICE"
    count = "bxsync_payment_latency_seconds_count"
    assert value(after, count) - value(before, count) == 1
    assert (
        value(after, "bxsync_payment_latency_seconds_bucket", le="+Inf")
        - value(before, "bxsync_payment_latency_seconds_bucket", le="+Inf")
        == 1
    )
    assert (
        value(after, "bxsync_payment_latency_seconds_sum")
        - value(before, "bxsync_payment_latency_seconds_sum")
        < 30
    )

"""Reads at the floor: a run reads its orders, deals, payments and link candidates with list commands of up to
50 ids, packed 50 to a `batch` call, and still tells a missing entity from a hidden one and sees every deal
naming an order [docs/bitrix.md "Lists"]."""

from __future__ import annotations

import pytest
from django.utils import timezone

from statussync import portals
from statussync.jobs import job_request, jobs_claim
from statussync.models import AuditEntry, Job, JobKind, JobState, Link, LinkState
from statussync.sync import items_for, items_sync, jobs_handle, read
from tests.support.sandbox import pay, run_worker


def commands(sb, method: str) -> int:
    return sum(c.get("rest_calls", {}).get(method, 0) for c in sb.counters().values())


def requests_to(sb, portal: str) -> int:
    return sb.counters()[portal].get("rest_requests", 0)


def linked(sb, n: int) -> list[tuple[str, str]]:
    pairs = sb.seed(n, pipeline_share=0, orders_without_deal=0, deals_without_order=0)
    items_sync(items=items_for(order_ids=[str(o) for o, _ in pairs]))
    assert Link.objects.filter(state=LinkState.ACTIVE).count() == n
    return [(str(o), str(d)) for o, d in pairs]


def test_it_reads_a_run_of_120_pairs_with_one_request_per_portal(sb):
    pairs = linked(sb, 120)
    sb.reset_counters()

    items_sync(items=items_for(order_ids=[o for o, _ in pairs], deal_ids=[d for _, d in pairs]))

    # 120 orders and 120 deals: 3 list commands each (50, 50, 20 ids), one batch call per portal.
    assert (commands(sb, "sale.order.list"), commands(sb, "crm.deal.list")) == (3, 3)
    assert commands(sb, "sale.order.get") == commands(sb, "crm.deal.get") == 0
    assert (requests_to(sb, "shop"), requests_to(sb, "crm")) == (1, 1)
    assert sb.rest_writes() == 0  # nothing changed: nothing written


def test_it_finds_each_order_and_deal_of_a_list_answer_whatever_its_order(sb):
    pairs = linked(sb, 3)
    order_id, deal_id = pairs[1]
    sb.shop.set_order_status(int(order_id), "P")
    sb.crm.move_deal(int(pairs[2][1]), "WON")

    results = items_sync(items=items_for(order_ids=[o for o, _ in reversed(pairs)]))

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPARATION"
    assert sb.shop.get_order(int(pairs[2][0]))["statusId"] == "F"
    assert sorted(r.outcome for r in results) == ["applied", "applied", "no_change"]


def test_it_asks_alone_for_an_id_the_list_left_out_and_closes_only_a_deleted_deals_link(sb):
    pairs = linked(sb, 3)
    gone_order, gone_deal = pairs[0]
    sb.crm.delete_deal(int(gone_deal))
    sb.reset_counters()

    items_sync(items=items_for(deal_ids=[d for _, d in pairs]))

    # The list of 3 deals answers 2 rows; the third is asked for by itself, and "Not found" closes its link.
    assert commands(sb, "crm.deal.list") == 1
    assert commands(sb, "crm.deal.get") == 1
    assert Link.objects.get(order_id=gone_order).state == LinkState.CLOSED
    assert Link.objects.filter(state=LinkState.ACTIVE).count() == 2


def test_it_does_not_take_a_deal_a_list_leaves_out_for_a_deleted_one(sb, monkeypatch):
    pairs = linked(sb, 2)
    hidden_order, hidden_deal = pairs[0]
    sb.crm.move_deal(int(hidden_deal), "PREPARATION")
    # A list answers only what the webhook's user may see (stand-in: the command leaves the deal out).
    real = portals.deals_read
    monkeypatch.setattr(portals, "deals_read", lambda ids: real([d for d in ids if d != hidden_deal]))

    items_sync(items=items_for(deal_ids=[d for _, d in pairs]))

    # The single read finds the deal: the link stays, and the deal's change reaches the shop.
    assert Link.objects.get(order_id=hidden_order).state == LinkState.ACTIVE
    assert sb.shop.get_order(int(hidden_order))["statusId"] == "P"


def test_it_sees_every_deal_naming_its_orders_across_pages(sb):
    # 60 orders never linked; then a second deal names each of the first 30 (ids after all the first
    # deals), so the first command of 50 orders answers 80 rows: 50 on its first page, 30 on the next.
    pairs = sb.seed(60, pipeline_share=0, orders_without_deal=0, deals_without_order=0)
    twins = {
        order_id: sb.crm.add_deal(
            {"TITLE": "twin", sb.crm.order_field: order_id}, actor=1, source="seed", emit=False
        )
        for order_id, _ in pairs[:30]
    }
    sb.reset_counters()

    results = items_sync(items=items_for(order_ids=[str(o) for o, _ in pairs]))

    by_order = {r.item.order_id: r for r in results}
    for order_id, deal_id in pairs[:30]:
        assert by_order[str(order_id)].outcome == "ambiguous"
        message = by_order[str(order_id)].message
        assert str(deal_id) in message
        assert str(twins[order_id]) in message
    assert Link.objects.filter(state=LinkState.ACTIVE).count() == 30
    assert set(Link.objects.values_list("order_id", flat=True)) == {str(o) for o, _ in pairs[30:]}
    # Two commands for 60 orders, and one more for the second page of the first.
    assert commands(sb, "crm.deal.list") == 3
    assert sb.counters()["crm"]["rest_calls"] == {"batch": 1, "crm.deal.list": 3, "crm.status.list": 1}


def test_it_reads_a_run_of_payments_and_their_orders_in_one_request(sb):
    pairs = linked(sb, 3)
    payment_ids = [pay(sb, order_id) for order_id, _ in pairs]
    sb.reset_counters()
    for payment_id in payment_ids:
        job_request(kind=JobKind.PAYMENT, entity_id=payment_id)

    run_worker("payments")

    # Each order read by its payment's `orderId` in the same batch (settings/how-to-call-rest-api/batch.md
    # "Linked Calls"), not by a list after the payments' answer.
    assert sb.counters()["shop"]["rest_calls"] == {"batch": 1, "sale.payment.get": 3, "sale.order.get": 3}
    assert all(sb.crm.get_deal(int(d))["STAGE_ID"] == "PREPAYMENT_INVOICE" for _, d in pairs)


def test_it_costs_a_payment_two_requests(sb):
    (order_id, deal_id), *_ = linked(sb, 1)
    payment_id = pay(sb, order_id)
    sb.reset_counters()
    job_request(kind=JobKind.PAYMENT, entity_id=payment_id)

    run_worker("payments")

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPAYMENT_INVOICE"
    # The shop: the payment and its order in one batch. The CRM: the deal checked at its base, its stage
    # written and read back, in one batch (statussync/sync/at_base.py).
    assert (requests_to(sb, "shop"), requests_to(sb, "crm")) == (1, 1)
    assert sb.counters()["crm"]["rest_calls"] == {"crm.deal.list": 2, "batch": 1, "crm.deal.update": 1}


def test_it_reads_a_payments_order_again_under_the_lock_when_another_run_may_have_written_it(sb, monkeypatch):
    (order_id, _), *_ = linked(sb, 1)
    payment_id = pay(sb, order_id)
    attach = read.links_attach

    def another_run_writes_the_order_meanwhile(run):
        attach(run)
        # As a run of the default queue holding the order would: write it, then confirm the write.
        sb.shop.set_order_status(int(order_id), "D")
        Link.objects.filter(order_id=order_id).update(last_write_at=timezone.now())

    monkeypatch.setattr(read, "links_attach", another_run_writes_the_order_meanwhile)
    sb.reset_counters()
    job_request(kind=JobKind.PAYMENT, entity_id=payment_id)

    run_worker("payments")

    assert commands(sb, "sale.order.get") == 1  # with its payment, before the lock
    assert commands(sb, "sale.order.list") == 1  # again, under the lock
    assert Link.objects.get(order_id=order_id).last_order_status == "D"


def test_it_reads_one_by_one_what_a_refused_list_command_named(sb):
    # More payments than one batch holds with their orders: they are read by list.
    pairs = linked(sb, 26)
    payment_ids = [pay(sb, order_id) for order_id, _ in pairs]
    sb.reset_counters()
    # The list method held by the operating-time limit (settings/performance/limits.md): the command fails
    # inside its batch, sale.payment.get still answers.
    sb.set_limits("shop", rate=1000, burst=1000, operating_limits={"sale.payment.list": -1})
    for payment_id in payment_ids:
        job_request(kind=JobKind.PAYMENT, entity_id=payment_id)

    try:
        while jobs := jobs_claim(queue="payments", limit=100):
            jobs_handle(jobs)
    finally:
        sb.set_limits("shop", rate=1000, burst=1000, operating_limits={})

    assert commands(sb, "sale.payment.get") == 26
    assert all(sb.crm.get_deal(int(d))["STAGE_ID"] == "PREPAYMENT_INVOICE" for _, d in pairs)
    assert not Job.objects.filter(state=JobState.DEAD).exists()


def test_it_closes_the_link_of_an_order_sale_order_get_calls_not_found(sb):
    pairs = linked(sb, 2)
    gone_order, _ = pairs[0]
    sb.shop.delete_order(int(gone_order))
    sb.reset_counters()

    items_sync(items=items_for(order_ids=[o for o, _ in pairs]))

    # The list leaves the order out; sale.order.get answers 201240400001, the code its page's table gives
    # (api-reference/sale/order/sale-order-get.md): "not found" as much as its example's 200540400001.
    assert commands(sb, "sale.order.get") == 1
    assert Link.objects.get(order_id=gone_order).state == LinkState.CLOSED
    assert not Job.objects.filter(state=JobState.DEAD).exists()


def test_it_ignores_a_payment_that_does_not_exist(sb):
    job_request(kind=JobKind.PAYMENT, entity_id="987654")

    run_worker("payments")

    entry = AuditEntry.objects.get()
    assert entry.outcome == "ignored"
    assert "987654" in entry.message


@pytest.mark.parametrize(
    ("read", "ids", "method", "condition"),
    [
        (portals.deals_read, ["1", "2"], "crm.deal.list", {"@ID": ["1", "2"]}),
        (portals.orders_read, ["7"], "sale.order.list", {"@id": ["7"]}),
        # api-reference/sale/payment/sale-payment-list.md: `=` "works with arrays as well"; no `@` listed.
        (portals.payments_read, ["9", "8"], "sale.payment.list", {"=id": ["9", "8"]}),
        (portals.deals_naming_orders, ["5"], "crm.deal.list", {"UF_CRM_ORDER_ID": "5"}),
        (portals.deals_naming_orders, ["5", "6"], "crm.deal.list", {"@UF_CRM_ORDER_ID": ["5", "6"]}),
    ],
)
def test_it_names_up_to_fifty_ids_in_a_list_command(settings, read, ids, method, condition):
    settings.BXSYNC_DEAL_ORDER_FIELD = "UF_CRM_ORDER_ID"
    command = read(ids).command()
    assert (command[0], command[1]["filter"]) == (method, condition)
    assert read([str(n) for n in range(50)]).command()[1]["filter"]
    with pytest.raises(ValueError, match="1 to 50 ids"):
        read([str(n) for n in range(51)])
    with pytest.raises(ValueError, match="1 to 50 ids"):
        read([])


@pytest.mark.parametrize(
    ("read", "answer", "rows"),
    [
        (portals.deals_read(["1"]), [{"ID": "1"}], [{"ID": "1"}]),
        (portals.deals_read(["1"]), [], []),
        (portals.orders_read(["1"]), {"orders": [{"id": 1}]}, [{"id": 1}]),
        (portals.orders_read(["1"]), {"orders": []}, []),
        (portals.orders_read(["1"]), [], []),  # PHP's empty array where an object is documented
        (portals.payments_read(["1"]), {"payments": [{"id": 1, "orderId": 4}]}, [{"id": 1, "orderId": 4}]),
    ],
)
def test_it_finds_the_rows_of_a_list_answer(read, answer, rows):
    assert read.rows(answer) == rows


def test_it_pages_a_list_by_id_after_the_last_row():
    read = portals.orders_read(["1", "2"])
    after = read.after({"id": 2})
    assert after.command()[1]["filter"] == {"@id": ["1", "2"], ">id": 2}
    assert after.command()[1]["order"] == {"id": "asc"}
    assert read.command()[1]["filter"] == {"@id": ["1", "2"]}  # the first page's command is unchanged


def test_it_syncs_a_bulk_edit_of_300_deals_in_one_run_of_nine_requests(sb, settings):
    pairs = linked(sb, 300)
    sb.crm.bulk_move([int(d) for _, d in pairs], "PREPARATION")
    sb.reset_counters()
    for _, deal_id in pairs:
        job_request(kind=JobKind.DEAL, entity_id=deal_id)

    jobs = jobs_claim(queue="default", limit=settings.BXSYNC_JOB_BATCH)
    jobs_handle(jobs)

    assert len(jobs) == 300  # one run (BXSYNC_JOB_BATCH is 2,500)
    assert all(sb.shop.get_order(int(o))["statusId"] == "P" for o, _ in pairs)
    counters = sb.counters()
    # Reads: 6 deal lists in one CRM call, 6 order lists in one shop call; writes: 300 updates, 6 shop calls
    # of 50 (each update answers with the saved order). The stage list may be read once more.
    assert counters["shop"]["rest_requests"] == 7
    assert counters["crm"]["rest_requests"] <= 2
    assert counters["shop"]["rest_calls"]["sale.order.update"] == 300
    assert commands(sb, "sale.order.list") == commands(sb, "crm.deal.list") == 6

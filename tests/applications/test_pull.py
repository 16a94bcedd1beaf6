"""Pull mode: the CRM's offline-event queue read into the intake table, cleared only once stored.

Spec: api-reference/events/offline-events.md, event-offline-get.md, event-offline-clear.md,
event-offline-error.md; the loop breaker: offline-events.md "How to Avoid Cycles".
"""

from __future__ import annotations

import pytest

from statussync import intake_pull
from statussync.intake_pull import offline_events_pull, pull_round
from statussync.jobs import job_request
from statussync.models import AuditEntry, ConnectedPortal, InboundEvent, Job, JobKind, Link
from statussync.reconcile import reconcile_run
from tests.applications.support import connect
from tests.support.sandbox import linked_pair, pay, run_worker


def _crm_events() -> list[tuple[str, str]]:
    return list(InboundEvent.objects.filter(side="crm").values_list("event", "entity_id").order_by("id"))


def test_it_stores_each_queued_change_as_an_event_and_clears_what_it_stored(sb) -> None:
    connect(sb.crm, "crm")
    deals = [deal for _, deal in sb.seed(3, pipeline_share=0.0, orders_without_deal=0, deals_without_order=0)]
    for deal in deals:
        sb.crm.move_deal(deal, "PREPARATION")
        sb.crm.move_deal(deal, "EXECUTING")  # one record per deal: the queue keeps the latest

    result = offline_events_pull(portal="crm")

    assert (result.read, result.stored, result.failed) == (3, 3, 0)
    assert sorted(_crm_events()) == sorted(("ONCRMDEALUPDATE", str(deal)) for deal in deals)
    assert sorted(Job.objects.filter(kind=JobKind.DEAL).values_list("entity_id", flat=True)) == sorted(
        str(deal) for deal in deals
    )
    assert sb.crm.app.depth() == 0
    assert offline_events_pull(portal="crm").read == 0


def test_it_reads_the_reserved_batch_again_after_a_crash_and_loses_nothing(sb, monkeypatch) -> None:
    connect(sb.crm, "crm")
    [(_, deal)] = sb.seed(1, pipeline_share=0.0, orders_without_deal=0, deals_without_order=0)
    sb.crm.move_deal(deal, "PREPARATION")
    real = intake_pull.event_receive

    def crash(**kwargs):
        raise RuntimeError("the process died while storing")

    monkeypatch.setattr(intake_pull, "event_receive", crash)
    with pytest.raises(RuntimeError):
        offline_events_pull(portal="crm")
    assert ConnectedPortal.objects.get(portal="crm").process_id
    assert sb.crm.app.depth() == 1  # reserved, not cleared
    monkeypatch.setattr(intake_pull, "event_receive", real)

    assert offline_events_pull(portal="crm").stored == 1

    assert _crm_events() == [("ONCRMDEALUPDATE", str(deal))]
    assert sb.crm.app.depth() == 0
    assert ConnectedPortal.objects.get(portal="crm").process_id == ""


def test_it_sets_aside_a_record_it_cannot_read_and_clears_the_rest(sb) -> None:
    connect(sb.crm, "crm")
    [(_, deal)] = sb.seed(1, pipeline_share=0.0, orders_without_deal=0, deals_without_order=0)
    sb.crm.app.event_happened("ONCRMDEALUPDATE", {"FIELDS": {"ID": "not a number"}})
    sb.crm.move_deal(deal, "PREPARATION")

    result = offline_events_pull(portal="crm")

    assert (result.stored, result.failed) == (1, 1)
    [left] = sb.crm.app.info()["queue"]
    assert left["error"] is True
    assert offline_events_pull(portal="crm").read == 0


def test_it_syncs_a_deal_change_read_from_the_queue_and_its_own_write_queues_no_echo(sb) -> None:
    connect(sb.crm, "crm")
    order_id, deal_id = linked_pair(sb)
    sb.crm.move_deal(int(deal_id), "WON")
    offline_events_pull(portal="crm")
    run_worker()
    assert sb.shop.get_order(int(order_id))["statusId"] == "F"

    sb.shop.set_order_status(int(order_id), "P")
    job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPARATION"
    assert sb.crm.app.depth() == 0  # bxsync's own write carried auth_connector: nothing queued
    assert sb.crm.metrics.get("offline", "suppressed", "ONCRMDEALUPDATE") == 1


def test_it_hears_a_pipeline_move_only_an_application_is_told_of(sb) -> None:
    connect(sb.crm, "crm")
    order_id, deal_id = linked_pair(sb)
    sb.crm.move_deal_to_pipeline(int(deal_id), 1)

    offline_events_pull(portal="crm")
    run_worker()

    assert _crm_events() == [("ONCRMDEALMOVETOCATEGORY", deal_id)]
    assert Link.objects.get(order_id=order_id).pipeline_id == 1


def test_it_makes_no_echo_reads_after_a_bulk_edit(sb) -> None:
    connect(sb.crm, "crm")
    pairs = [linked_pair(sb) for _ in range(5)]
    for order_id, _ in pairs:
        sb.shop.set_order_status(int(order_id), "P")
        job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()
    assert all(sb.crm.get_deal(int(deal))["STAGE_ID"] == "PREPARATION" for _, deal in pairs)
    sb.reset_counters()

    assert offline_events_pull(portal="crm").read == 0
    assert run_worker() == 0
    assert sb.crm.metrics.get("rest_calls", "crm.deal.list") == 0


def test_it_reads_and_clears_at_once_without_the_extended_feature_and_recognises_echoes(sb) -> None:
    sb.crm.app.configure(features={"rest_offline_extended": False})
    assert connect(sb.crm, "crm").offline_extended is False
    order_id, deal_id = linked_pair(sb)
    sb.shop.set_order_status(int(order_id), "P")
    job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()

    # Without the feature the portal queues bxsync's own write too: read, cleared at once, and an echo.
    assert offline_events_pull(portal="crm").stored == 1
    assert sb.crm.app.depth() == 0
    run_worker()
    assert AuditEntry.objects.filter(deal_id=deal_id).values_list("outcome", flat=True)[0] == "echo"
    assert sb.rest_writes() == 1


def test_it_checks_and_repairs_its_bindings_when_the_pull_process_starts(sb) -> None:
    connect(sb.crm, "crm")
    sb.crm.app.bindings.clear()  # an application update drops them (event-bind.md)

    pull_round(checked=set())

    assert len(sb.crm.app.info()["bindings"]) == 4


def test_it_puts_a_payment_read_from_the_shops_queue_on_the_payments_queue(sb, settings) -> None:
    connect(sb.crm, "crm")
    order_id, deal_id = linked_pair(sb)
    settings.BXSYNC_CMS_REST_URL = ""
    connect(sb.shop, "cms")
    payment_id = pay(sb, order_id)

    offline_events_pull(portal="cms")

    assert Job.objects.get(kind=JobKind.PAYMENT).entity_id == payment_id
    run_worker("payments")
    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPAYMENT_INVOICE"  # the paid stage
    assert sb.shop.app.depth() == sb.crm.app.depth() == 0


def _pull_all(portal: str) -> int:
    read = 0
    while result := offline_events_pull(portal=portal):
        read += result.read
        if not result.full:
            return read
    return read


def _reads(sb) -> dict[str, dict[str, int]]:
    """REST calls by method, batch commands included, writes and the queue's own methods left out."""
    counters = sb.counters()
    return {
        side: {
            method: n
            for method, n in counters[side]["rest_calls"].items()
            if method not in sb.shop.WRITE_METHODS | sb.crm.WRITE_METHODS and not method.startswith("event.")
        }
        for side in ("shop", "crm")
    }


# About 35 s on these cores (bxsync records 2,000 items: the linking pass and the run), and what it proves
# is the portal's and the client's, not the database's: one leg.
@pytest.mark.only_leg("embedded", reason="the echo is the portal's matter; 35 s is enough once")
def test_it_reads_no_echo_of_a_thousand_deal_bulk_edit(sb, settings) -> None:
    settings.BXSYNC_CMS_REST_URL = ""
    connect(sb.crm, "crm")
    connect(sb.shop, "cms")
    pairs = sb.seed(1000, pipeline_share=0.0, orders_without_deal=0, deals_without_order=0)
    reconcile_run()
    assert Link.objects.count() == 1000
    sb.reset_counters()

    sb.crm.bulk_move([deal for _, deal in pairs], "WON", user_id=7)
    assert _pull_all("crm") == 1000
    run_worker()
    assert all(sb.shop.get_order(order)["statusId"] == "F" for order, _ in pairs)
    reads = _reads(sb)

    # bxsync's 1,000 writes carried its auth_connector: the shop queued none of them, so there is nothing
    # to read back: no record, no event, no job, no REST read.
    assert sb.shop.metrics.get("offline", "suppressed", "ONSALEORDERSAVED") == 1000
    assert sb.shop.app.depth() == 0
    assert _pull_all("cms") == 0
    assert run_worker() == 0
    assert _reads(sb) == reads
    assert not InboundEvent.objects.filter(side="cms").exists()
    print(f"reads of the bulk edit: {reads}")

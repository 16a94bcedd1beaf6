"""Nothing moves backwards (issue 14): a payment never moves a deal from a stage bxsync cannot place, and a
stage write the CRM answers `true` to without moving the deal is a failure, not a success."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.utils import timezone

from statussync.bitrix import client_for
from statussync.jobs import job_request
from statussync.mapping.catalog_refresh import catalog_refresh
from statussync.models import AuditEntry, Job, JobKind, JobState, Link
from statussync.sync.stages import STAGES_REREAD_SECONDS, mapping_with_stages
from tests.support.sandbox import linked_pair, pay, run_worker


@pytest.fixture(autouse=True)
def _stages_forgotten(db):
    """Stage lists cached by another test would spare the CRM call these tests are about."""
    cache.delete_many(
        [f"bxsync:pipeline-stages{what}:{p}" for what in ("", "-reread") for p in (0, 1)]
        + ["bxsync:catalog-refresh-soon"]
    )


def _status_list_calls(sb) -> int:
    return int(sb.crm.counters()["rest_calls"].get("crm.status.list", 0))


def test_it_reads_a_stage_added_since_the_catalog_and_never_moves_the_deal_back_from_it(sb):
    order_id, deal_id = linked_pair(sb)
    catalog_refresh()
    # A stage added in the CRM after the catalog's hourly read, after the paid stage (PREPAYMENT_INVOICE, 30).
    packed = sb.crm.add_stage(0, "UC_PACKED", "Упакован", 45)
    sb.crm.move_deal(int(deal_id), packed)
    payment_id = pay(sb, order_id)

    job_request(kind=JobKind.PAYMENT, entity_id=payment_id)
    run_worker("payments")

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == packed
    assert sb.rest_writes() == 0
    assert Link.objects.get(order_id=order_id).base_paid is True


def test_it_holds_the_payment_of_a_deal_at_a_stage_the_crm_no_longer_lists_and_says_why(sb):
    order_id, deal_id = linked_pair(sb)
    packed = sb.crm.add_stage(0, "UC_PACKED", "Упакован", 45)
    sb.crm.move_deal(int(deal_id), packed)
    sb.crm.delete_stage(packed)  # the deal keeps the deleted stage's id
    payment_id = pay(sb, order_id)

    job_request(kind=JobKind.PAYMENT, entity_id=payment_id)
    run_worker("payments")

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == packed
    assert sb.rest_writes() == 0
    link = Link.objects.get(order_id=order_id)
    assert (link.needs_attention, link.attention["code"], link.base_paid) == (True, "payment_held", False)
    entry = AuditEntry.objects.filter(order_id=order_id).latest("id")
    assert entry.outcome == "regression_blocked"
    assert "left where it is" in entry.message


def test_it_reads_an_unknown_stage_again_at_most_once_a_minute(sb, settings):
    linked_pair(sb)
    catalog_refresh()
    from statussync.sync.run import SyncRun

    def run_once():
        run = SyncRun(items=[], cms=client_for("cms"), crm=client_for("crm"))
        return mapping_with_stages(run, pipelines={0}, stages_seen={0: {"UC_NOWHERE"}})

    before = _status_list_calls(sb)
    for _ in range(3):
        mapping, errors = run_once()
        assert errors == {}
        assert mapping.pipelines[0].reached("UC_NOWHERE", "PREPAYMENT_INVOICE") is None

    assert 1 <= _status_list_calls(sb) - before <= 2
    assert STAGES_REREAD_SECONDS <= 60


def test_it_retries_a_payment_when_the_crm_cannot_list_the_stages_instead_of_moving_the_deal(sb, monkeypatch):
    from bitrix_sandbox.rest import RestError

    order_id, deal_id = linked_pair(sb)
    sb.crm.move_deal(int(deal_id), "EXECUTING")  # after the paid stage; the catalog was never read
    payment_id = pay(sb, order_id)

    def busy(params, ctx):
        raise RestError(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")

    monkeypatch.setitem(sb.crm._methods, "crm.status.list", busy)
    cache.delete("bxsync:pipeline-stages:0")  # the list read while linking has expired
    job_request(kind=JobKind.PAYMENT, entity_id=payment_id)
    run_worker("payments")

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "EXECUTING"
    assert sb.rest_writes() == 0
    assert Job.objects.get(kind=JobKind.PAYMENT).state == JobState.PENDING  # retried later
    assert Link.objects.get(order_id=order_id).needs_attention is False


def test_it_fails_a_write_the_crm_took_without_moving_the_deal_and_keeps_the_base(sb):
    order_id, deal_id = linked_pair(sb)
    catalog_refresh()
    sb.crm.delete_stage("PREPARATION")  # the mapping's stage for P, deleted after the catalog's read
    sb.shop.set_order_status(int(order_id), "P")

    job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "NEW"
    link = Link.objects.get(order_id=order_id)
    assert (link.base_order_status, link.base_deal_stage) == ("N", "NEW")
    assert (link.needs_attention, link.attention["code"]) == (True, "write_no_effect_stage")
    assert AuditEntry.objects.filter(order_id=order_id).latest("id").outcome == "failed"
    assert Job.objects.filter(kind=JobKind.ORDER, entity_id=order_id).latest("id").state == JobState.PENDING

    # The next deal event must not push the deal's old stage (NEW → N) back onto the order, and with the
    # catalog read again the rule to the deleted stage sends nothing more.
    catalog_refresh()
    writes = sb.rest_writes()
    Job.objects.filter(entity_id=order_id).update(not_before=timezone.now())
    job_request(kind=JobKind.DEAL, entity_id=deal_id)
    run_worker()

    assert sb.shop.get_order(int(order_id))["statusId"] == "P"
    assert sb.rest_writes() == writes
    link = Link.objects.get(order_id=order_id)
    assert (link.needs_attention, link.attention["code"]) == (True, "mapping_stage_gone")


def test_it_decides_even_when_the_catalog_refresh_cannot_be_queued(
    sb, monkeypatch, django_capture_on_commit_callbacks
):
    def broker_down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr("django_q.tasks.async_task", broker_down)
    order_id, deal_id = linked_pair(sb)
    catalog_refresh()
    packed = sb.crm.add_stage(0, "UC_PACKED", "Упакован", 45)
    sb.crm.move_deal(int(deal_id), packed)
    payment_id = pay(sb, order_id)

    job_request(kind=JobKind.PAYMENT, entity_id=payment_id)
    with django_capture_on_commit_callbacks(execute=True) as queued:
        run_worker("payments")

    assert queued  # the refresh was asked for
    assert Link.objects.get(order_id=order_id).base_paid is True
    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == packed

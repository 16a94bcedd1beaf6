"""Explaining bxsync in the CRM: a comment on the deal's timeline when bxsync blocks or overrides a person's
change — batched with the run's CRM writes, never in the way of sync, off unless enabled."""

from __future__ import annotations

import pytest

from bitrix_sandbox.rest import RestError
from statussync.jobs import job_request
from statussync.mapping.catalog_refresh import catalog_refresh
from statussync.mapping.store import mapping_import
from statussync.models import AuditEntry, Job, JobState, Link, Pipeline, PortalHealth
from statussync.models import JobKind as K
from tests.support.mappings import two_pipelines
from tests.support.sandbox import before_writes, linked_pair, pay, run_worker


@pytest.fixture
def comments_on(settings):
    settings.BXSYNC_CRM_COMMENTS = True
    settings.BXSYNC_CRM_COMMENT_LANGUAGE = "en"
    return settings


def comments(sb, deal_id: str) -> list[str]:
    return [c["COMMENT"] for c in sb.crm.deal_comments(int(deal_id))]


def crm_requests(sb) -> int:
    return sb.crm.counters().get("rest_requests", 0)


def paid_pair(sb) -> tuple[str, str]:
    order_id, deal_id = linked_pair(sb)
    job_request(kind=K.PAYMENT, entity_id=pay(sb, order_id))
    run_worker("payments")
    return order_id, deal_id


def regression_run(sb, deal_id: str) -> int:
    """A manager drags a paid order's deal back to NEW; returns the CRM requests the run made."""
    sb.crm.move_deal(int(deal_id), "NEW")
    before = crm_requests(sb)
    job_request(kind=K.DEAL, entity_id=deal_id)
    run_worker()
    return crm_requests(sb) - before


def conflict_run(sb, order_id: str, deal_id: str) -> int:
    """The order and the deal change at once under a shop-wins policy; returns the CRM requests of the run."""
    sb.crm.move_deal(int(deal_id), "LOSE")
    sb.shop.set_order_status(int(order_id), "F")
    before = crm_requests(sb)
    job_request(kind=K.ORDER, entity_id=order_id)
    run_worker()
    return crm_requests(sb) - before


def test_it_says_nothing_in_the_crm_unless_enabled(sb):
    _, deal_id = paid_pair(sb)

    regression_run(sb, deal_id)

    assert comments(sb, deal_id) == []


def test_it_explains_a_blocked_regression_on_the_deal_in_one_extra_batch_after_the_writes(sb, settings):
    _, quiet_deal = paid_pair(sb)
    without = regression_run(sb, quiet_deal)
    settings.BXSYNC_CRM_COMMENTS = True
    settings.BXSYNC_CRM_COMMENT_LANGUAGE = "en"
    order_id, deal_id = paid_pair(sb)

    with_comment = regression_run(sb, deal_id)

    [comment] = comments(sb, deal_id)
    assert f"bxsync did not pass this stage on to order {order_id}: the order is paid" in comment
    assert "Why: deal moved to NEW, which would put paid order back to N." in comment
    assert with_comment == without + 1  # one batch request of its own: the run had no CRM write
    assert sb.crm.counters()["rest_calls"]["crm.timeline.comment.add"] == 1


def test_it_explains_a_lost_conflict_once_the_read_back_shows_the_deal_moved(sb, settings):
    Pipeline.objects.filter(pipeline_id=0).update(conflict_policy="cms_wins")
    order_a, deal_a = linked_pair(sb)
    without = conflict_run(sb, order_a, deal_a)
    settings.BXSYNC_CRM_COMMENTS = True
    settings.BXSYNC_CRM_COMMENT_LANGUAGE = "en"
    order_id, deal_id = linked_pair(sb)

    with_comment = conflict_run(sb, order_id, deal_id)

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "WON"
    [comment] = comments(sb, deal_id)
    assert "the order and the deal changed at the same time, and the order's change won" in comment
    assert "the shop wins" in comment
    # One request after the write's: a comment riding with the write could not know whether the write landed.
    assert with_comment == without + 1


def test_it_does_not_claim_a_move_the_crm_did_not_make(sb, comments_on, monkeypatch):
    """crm.deal.update of a stage of the deal's former pipeline answers true and changes nothing: the comment
    saying bxsync moved the deal would be false, so there is none."""
    mapping = two_pipelines()
    mapping["pipelines"][0]["conflict_policy"] = "cms_wins"
    mapping_import(data=mapping)
    order_id, deal_id = linked_pair(sb)
    sb.crm.move_deal(int(deal_id), "LOSE")
    sb.shop.set_order_status(int(order_id), "F")
    job_request(kind=K.ORDER, entity_id=order_id)
    before_writes(monkeypatch, lambda: sb.crm.move_deal_to_pipeline(int(deal_id), 1))

    run_worker()

    # The write changed nothing, and the run said so.
    assert AuditEntry.objects.filter(order_id=order_id, outcome="failed").exists()
    assert not any("bxsync moved this deal" in comment for comment in comments(sb, deal_id))


def test_it_explains_an_unmapped_stage_once_however_often_the_deal_is_saved(sb, comments_on):
    _, deal_id = linked_pair(sb)
    sb.crm.move_deal(int(deal_id), "EXECUTING")  # no order status is mapped to it

    for _ in range(3):
        job_request(kind=K.DEAL, entity_id=deal_id)
        run_worker()
        sb.crm.edit_deal(int(deal_id), {"TITLE": "edited again"})

    [comment] = comments(sb, deal_id)
    assert "no order status is mapped to it" in comment
    assert Link.objects.get(deal_id=deal_id).attention["code"] == "stage_unmapped"


def test_it_keeps_syncing_when_the_comment_method_fails(sb, comments_on, monkeypatch):
    def refuse(params, ctx):
        raise RestError(403, "ACCESS_DENIED", "Access denied.")

    monkeypatch.setitem(sb.crm._methods, "crm.timeline.comment.add", refuse)
    Pipeline.objects.filter(pipeline_id=0).update(conflict_policy="cms_wins")
    order_id, deal_id = linked_pair(sb)

    conflict_run(sb, order_id, deal_id)

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "WON"
    link = Link.objects.get(order_id=order_id)
    assert (link.base_order_status, link.base_deal_stage) == ("F", "WON")
    assert AuditEntry.objects.filter(order_id=order_id).first().outcome == "conflict_resolved"
    assert not Job.objects.exclude(state=JobState.DONE).exists()
    assert comments(sb, deal_id) == []


@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "QUERY_LIMIT_EXCEEDED"), (403, "insufficient_scope"), (500, "INTERNAL_SERVER_ERROR")],
)
def test_it_keeps_syncing_when_a_comments_own_batch_fails(sb, comments_on, monkeypatch, status, code):
    def refuse(params, ctx):
        raise RestError(status, code, "refused")

    monkeypatch.setitem(sb.crm._methods, "crm.timeline.comment.add", refuse)
    order_id, deal_id = paid_pair(sb)

    regression_run(sb, deal_id)

    assert AuditEntry.objects.filter(order_id=order_id).first().outcome == "regression_blocked"
    assert not Job.objects.exclude(state=JobState.DONE).exists()
    assert Link.objects.get(order_id=order_id).needs_attention
    health = PortalHealth.objects.get(portal="crm")
    assert (health.failing_since, health.auth_failed) == (None, False)  # health is about sync, not comments


def test_it_renders_the_comment_in_the_portals_language(sb, settings):
    settings.BXSYNC_CRM_COMMENTS = True
    settings.BXSYNC_CRM_COMMENT_LANGUAGE = "ru"
    order_id, deal_id = paid_pair(sb)
    catalog_refresh()  # the stage and the status by the names the manager knows them by

    regression_run(sb, deal_id)

    [comment] = comments(sb, deal_id)
    assert comment.startswith(f"bxsync не передал эту стадию в заказ {order_id}: заказ оплачен")
    assert (
        "Причина: сделку перевели на стадию Новая (NEW), что вернуло бы оплаченный заказ в статус "
        "Принят, ожидается оплата (N)."
    ) in comment


def test_it_explains_a_held_payment_as_held_not_as_a_blocked_regression(sb, comments_on):
    order_id, deal_id = linked_pair(sb)
    packed = sb.crm.add_stage(0, "UC_PACKED", "Упакован", 45)
    sb.crm.move_deal(int(deal_id), packed)
    sb.crm.delete_stage(packed)

    job_request(kind=K.PAYMENT, entity_id=pay(sb, order_id))
    run_worker("payments")

    [comment] = comments(sb, deal_id)
    assert comment.startswith(f"bxsync did not move this deal to the paid stage of order {order_id}")
    assert "backwards" in comment
    assert "would put it back to awaiting payment" not in comment

"""The sync run against the sandbox portals: each rule of the behaviour, end to end in one process."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from statussync import portals
from statussync.jobs import job_request, jobs_claim, jobs_recover
from statussync.models import AuditEntry, Job, JobKind, JobState, Link, LinkState, PortalHealth, UnmappedValue
from statussync.outage import outage_hold
from statussync.reconcile import reconcile_run
from tests.support.sandbox import linked_pair, new_pair, pay, run_worker


def test_it_links_a_new_pair_without_writing_when_they_already_agree(sb):
    order_id, deal_id = linked_pair(sb)

    link = Link.objects.get(order_id=order_id)
    assert link.deal_id == deal_id
    assert (link.base_order_status, link.base_deal_stage) == ("N", "NEW")
    assert sb.rest_writes() == 0


def test_it_moves_the_deal_when_the_order_status_changes_and_ignores_the_echo(sb):
    order_id, deal_id = linked_pair(sb)
    sb.shop.set_order_status(int(order_id), "P")

    job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()
    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPARATION"
    assert sb.crm.get_deal(int(deal_id))["MODIFY_BY_ID"] == "1"  # the webhook user
    assert sb.rest_writes() == 1

    # The echo: Bitrix fires ONCRMDEALUPDATE for bxsync's own crm.deal.update.
    job_request(kind=JobKind.DEAL, entity_id=deal_id)
    run_worker()
    assert sb.rest_writes() == 1
    outcomes = list(AuditEntry.objects.filter(order_id=order_id).values_list("outcome", flat=True))
    assert outcomes[:2] == ["echo", "applied"]
    applied = AuditEntry.objects.get(order_id=order_id, outcome="applied")
    assert applied.before["order_status"] == "P"
    assert applied.after["deal_stage"] == "PREPARATION"
    assert applied.rest_calls >= 3


def test_it_sets_the_order_status_when_the_deal_moves(sb):
    order_id, deal_id = linked_pair(sb)
    sb.crm.move_deal(int(deal_id), "WON")

    job_request(kind=JobKind.DEAL, entity_id=deal_id)
    run_worker()

    assert sb.shop.get_order(int(order_id))["statusId"] == "F"
    link = Link.objects.get(order_id=order_id)
    assert (link.base_order_status, link.base_deal_stage) == ("F", "WON")


def test_it_uses_the_mapping_of_the_deals_own_pipeline(sb):
    order_id, deal_id = linked_pair(sb, pipeline=1)
    sb.shop.set_order_status(int(order_id), "P")

    job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "C1:PREPARATION"


def test_it_moves_a_paid_orders_deal_to_the_paid_stage_on_the_payment_queue(sb):
    order_id, deal_id = linked_pair(sb)
    payment_id = pay(sb, order_id)  # the shop also sets status P (status_on_paid)

    job = job_request(kind=JobKind.PAYMENT, entity_id=payment_id)
    assert job.queue == "payments"
    assert run_worker("default") == 0
    run_worker("payments")

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPAYMENT_INVOICE"
    # The order event of the same save (status N → P) and the deal's echo change nothing more.
    job_request(kind=JobKind.ORDER, entity_id=order_id)
    job_request(kind=JobKind.DEAL, entity_id=deal_id)
    run_worker()
    assert sb.rest_writes() == 1
    assert AuditEntry.objects.filter(order_id=order_id, outcome="payment_applied").count() == 1


# Every order in which the three jobs of a payment on a never-seen pair can run: the payment, the order's own
# event (ONSALEORDERSAVED of the same save) and a deal event (any edit of the deal).
ARRIVAL_ORDERS = [
    ("payment", "order", "deal"),
    ("order", "payment", "deal"),
    ("order", "deal", "payment"),
    ("deal", "order", "payment"),
    ("deal", "payment", "order"),
    ("payment", "deal", "order"),
    ("order",),  # the payment event was lost
    ("deal",),
    ("reconcile",),  # every event was lost
]


@pytest.mark.parametrize("status_on_paid", ["P", None], ids=["status-on-paid", "status-unchanged"])
@pytest.mark.parametrize("arrival", ARRIVAL_ORDERS, ids="-then-".join)
def test_it_moves_the_deal_of_a_pair_paid_before_bxsync_saw_it_whatever_arrives_first(
    sb, arrival, status_on_paid
):
    # Bitrix shops often set a status on payment (the kernel option status_on_paid); some leave it at N.
    sb.shop.set_options(status_on_paid=status_on_paid)
    status = status_on_paid or "N"
    order_id, deal_id = new_pair(sb)
    payment_id = pay(sb, order_id)

    for kind in arrival:
        if kind == "reconcile":
            call_command("reconcile", stdout=StringIO())
            continue
        entity = {"payment": payment_id, "order": order_id, "deal": deal_id}[kind]
        job_request(kind=kind, entity_id=entity)
        run_worker("payments")
        run_worker()

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPAYMENT_INVOICE"
    assert sb.rest_writes() == 1
    assert AuditEntry.objects.filter(order_id=order_id, outcome="payment_applied").count() == 1
    link = Link.objects.get(order_id=order_id)
    assert (link.base_order_status, link.base_deal_stage) == (status, "PREPAYMENT_INVOICE")
    assert link.base_paid
    # The echo of that write, and a reconciliation afterwards, write nothing more.
    job_request(kind=JobKind.DEAL, entity_id=deal_id)
    run_worker()
    call_command("reconcile", stdout=StringIO())
    assert sb.rest_writes() == 1


def test_it_moves_a_deal_created_after_its_order_was_paid_to_the_paid_stage(sb):
    order_id = str(sb.shop.create_order(price=100)["id"])
    payment_id = pay(sb, order_id)
    job_request(kind=JobKind.PAYMENT, entity_id=payment_id)
    job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker("payments")
    run_worker()
    assert AuditEntry.objects.filter(order_id=order_id, outcome="unlinked").exists()

    deal_id = str(sb.crm.create_deal(title="late deal", order_id=order_id)["ID"])  # ONCRMDEALADD
    job_request(kind=JobKind.DEAL, entity_id=deal_id)
    run_worker()

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPAYMENT_INVOICE"
    assert sb.shop.get_order(int(order_id))["statusId"] == "P"
    assert sb.rest_writes() == 1
    assert AuditEntry.objects.get(deal_id=deal_id, outcome="payment_applied").order_id == order_id


def test_it_leaves_a_paid_pairs_deal_alone_when_it_is_past_the_paid_stage(sb):
    order_id, deal_id = new_pair(sb)
    pay(sb, order_id)
    sb.crm.move_deal(int(deal_id), "WON")
    sb.shop.set_order_status(int(order_id), "F")

    call_command("reconcile", stdout=StringIO())

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "WON"
    assert sb.rest_writes() == 0
    assert Link.objects.get(order_id=order_id).base_paid


def test_it_blocks_a_deal_move_that_would_unpay_a_paid_order(sb):
    order_id, deal_id = linked_pair(sb)
    job_request(kind=JobKind.PAYMENT, entity_id=pay(sb, order_id))
    run_worker("payments")
    sb.crm.move_deal(int(deal_id), "NEW")

    job_request(kind=JobKind.DEAL, entity_id=deal_id)
    run_worker()

    assert sb.shop.get_order(int(order_id))["statusId"] == "P"
    link = Link.objects.get(order_id=order_id)
    assert link.needs_attention
    assert "paid order" in link.attention_reason
    assert AuditEntry.objects.filter(order_id=order_id, outcome="regression_blocked").exists()


def test_it_records_an_order_without_a_deal_as_unlinked(sb):
    order_id = str(sb.shop.create_order(price=100)["id"])

    job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()

    assert not Link.objects.exists()
    assert AuditEntry.objects.get(order_id=order_id).outcome == "unlinked"


def test_it_writes_nothing_when_two_deals_name_the_same_order(sb):
    order_id, _ = sb.seed(1, pipeline_share=0, orders_without_deal=0, deals_without_order=0)[0]
    sb.crm.create_deal(title="duplicate", category_id=0, stage_id="WON", order_id=order_id)
    sb.shop.set_order_status(order_id, "P")

    job_request(kind=JobKind.ORDER, entity_id=str(order_id))
    run_worker()

    assert not Link.objects.exists()
    assert AuditEntry.objects.get(order_id=str(order_id)).outcome == "ambiguous"
    assert sb.rest_writes() == 0


def test_it_lists_a_status_without_a_rule_as_unmapped(sb):
    order_id, _ = linked_pair(sb)
    sb.shop.set_order_status(int(order_id), "D")

    job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()

    assert UnmappedValue.objects.get(side="cms", value="D").pipeline_id == 0
    assert sb.rest_writes() == 0


def test_it_closes_the_link_of_a_deleted_deal(sb):
    order_id, deal_id = linked_pair(sb)
    sb.crm.delete_deal(int(deal_id))

    job_request(kind=JobKind.DEAL, entity_id=deal_id)
    run_worker()

    assert Link.objects.get(order_id=order_id).state == LinkState.CLOSED


def test_it_syncs_a_bulk_edit_in_a_few_batch_calls(sb):
    pairs = sb.seed(120, pipeline_share=0, orders_without_deal=0, deals_without_order=0)
    for order_id, _ in pairs:
        job_request(kind=JobKind.ORDER, entity_id=str(order_id))
    run_worker()
    sb.reset_counters()
    deal_ids = [d for _, d in pairs]
    sb.crm.bulk_move(deal_ids, "PREPARATION")

    for deal_id in deal_ids:
        job_request(kind=JobKind.DEAL, entity_id=str(deal_id))
    run_worker()

    assert all(sb.shop.get_order(o)["statusId"] == "P" for o, _ in pairs)
    counters = sb.counters()
    http_calls = counters["shop"]["rest_requests"] + counters["crm"]["rest_requests"]
    # 120 deals = 3 runs of at most 50; each run: one CRM read, one shop read, one shop write.
    assert http_calls <= 10
    assert counters["shop"]["rest_calls"]["sale.order.update"] == 120


def test_it_waits_out_a_portal_outage_however_many_attempts_it_takes(sb, settings):
    settings.BXSYNC_JOB_MAX_ATTEMPTS = 2
    order_id, deal_id = linked_pair(sb)
    sb.set_faults("crm", outage_seconds=600)
    sb.shop.set_order_status(int(order_id), "P")
    job_request(kind=JobKind.ORDER, entity_id=order_id)
    for _ in range(5):
        Job.objects.filter(state=JobState.PENDING).update(not_before=timezone.now())
        # A portal that flaps: each retry finds it answering a probe, then down again.
        PortalHealth.objects.update(failing_since=None)
        run_worker()

    job = Job.objects.get(kind="order", entity_id=order_id, state=JobState.PENDING)
    assert job.attempts == 5
    assert AuditEntry.objects.filter(order_id=order_id, outcome="retried").count() == 5

    sb.clear_faults()
    assert outage_hold() is False  # a probe finds the CRM back and releases the job
    run_worker()
    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPARATION"


def test_it_dead_letters_a_job_once_a_portal_outage_outlasts_the_give_up_time(sb, settings):
    settings.BXSYNC_JOB_GIVE_UP_HOURS = 24
    order_id, _ = linked_pair(sb)
    sb.set_faults("crm", outage_seconds=600)
    job = job_request(kind=JobKind.ORDER, entity_id=order_id)
    Job.objects.filter(id=job.id).update(created_at=timezone.now() - timedelta(hours=25))

    run_worker()

    assert Job.objects.get(id=job.id).state == JobState.DEAD
    assert AuditEntry.objects.filter(order_id=order_id, outcome="failed").exists()


def test_it_dead_letters_a_job_that_fails_on_its_own_after_its_last_attempt(sb, settings, monkeypatch):
    """A bug met on one order (here: an answer we cannot parse) fails that order alone, up to its last
    attempt; the other orders of the same run are synced."""
    settings.BXSYNC_JOB_MAX_ATTEMPTS = 2
    (bad, _), (good, good_deal) = linked_pair(sb), linked_pair(sb)
    for order_id in (bad, good):
        sb.shop.set_order_status(int(order_id), "P")
    real = portals.order_from_rest

    def broken(result):
        if str(result.get("order", result)["id"]) == bad:
            raise KeyError("statusId")
        return real(result)

    monkeypatch.setattr(portals, "order_from_rest", broken)
    job_request(kind=JobKind.ORDER, entity_id=bad)
    job_request(kind=JobKind.ORDER, entity_id=good)
    for _ in range(2):
        Job.objects.filter(state=JobState.PENDING).update(not_before=timezone.now())
        run_worker()

    assert Job.objects.get(kind="order", entity_id=bad, state=JobState.DEAD).attempts == 2
    assert "KeyError" in AuditEntry.objects.filter(order_id=bad, outcome="failed").get().message
    assert sb.crm.get_deal(int(good_deal))["STAGE_ID"] == "PREPARATION"
    assert Job.objects.filter(kind="order", entity_id=good).latest("id").state == JobState.DONE


def test_it_turns_health_red_and_does_not_storm_on_an_auth_error(sb, settings, client):
    order_id, _ = linked_pair(sb)
    settings.BXSYNC_CRM_REST_URL = settings.BXSYNC_CRM_REST_URL.replace("/rest/1/", "/rest/1/wrong")

    job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()

    job = Job.objects.get(kind="order", entity_id=order_id, state=JobState.PENDING)
    assert job.not_before > timezone.now() + timedelta(seconds=250)
    health = client.get("/api/health/")
    assert health.status_code == 503
    assert health.json()["portals"]["crm"]["auth_failed"] is True
    assert "wrong" not in json.dumps(health.json())  # the webhook code is a secret


def test_it_holds_the_work_of_a_closed_portal_rather_than_dead_letter_it(sb, client, monkeypatch):
    order_id, _ = linked_pair(sb)
    # _includes/system-errors.md: 500 PORTAL_DELETED, "the public part of the site is closed" (boxed: an
    # administrator reopens it), so it is the portal's state, not this request's [docs/bitrix.md "Errors"].
    closed = {"error": "PORTAL_DELETED", "error_description": "Portal was deleted"}
    monkeypatch.setattr(sb.crm, "handle_rest", lambda *args: (500, closed))

    job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()

    job = Job.objects.filter(kind="order", entity_id=order_id).latest("id")
    assert job.state == JobState.PENDING
    assert job.not_before > timezone.now() + timedelta(seconds=250)
    assert client.get("/api/health/").json()["portals"]["crm"]["failing"] is True


def test_it_holds_only_the_method_the_portal_refused_until_it_may_go(sb):
    order_id, deal_id = linked_pair(sb)
    other_order, other_deal = linked_pair(sb)
    # settings/performance/limits.md: a method past its operating time answers 429 OPERATION_TIME_LIMIT,
    # "other applications, webhooks, and methods continue to function".
    sb.set_limits("crm", rate=1000, burst=1000, operating_limits={"crm.deal.update": -1})
    sb.shop.set_order_status(int(order_id), "P")  # needs crm.deal.update
    sb.crm.move_deal(int(other_deal), "WON")  # needs sale.order.update
    job_request(kind=JobKind.ORDER, entity_id=order_id)
    job_request(kind=JobKind.DEAL, entity_id=other_deal)

    try:
        run_worker()
        run_worker()  # nothing due: the refused job waits for the method, not a backoff step
    finally:
        sb.set_limits("crm", rate=1000, burst=1000, operating_limits={})

    assert sb.shop.get_order(int(other_order))["statusId"] == "F"
    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "NEW"
    job = Job.objects.filter(kind="order", entity_id=order_id).latest("id")
    assert job.state == JobState.PENDING
    assert job.not_before > timezone.now() + timedelta(seconds=50)  # no reset time known: a minute
    assert "OPERATION_TIME_LIMIT" in job.last_error
    assert sb.counters()["crm"]["rest_rejected"] == {"operating_limit": 1}


def test_it_follows_a_renamed_portal_and_says_so_in_the_admin(support, sb, settings, client):
    order_id, deal_id = linked_pair(sb)
    # settings/how-to-call-rest-api/change-domen.md: the old address redirects every call to the new one.
    new_base = sb.crm.move_address()
    sb.shop.set_order_status(int(order_id), "P")
    job_request(kind=JobKind.ORDER, entity_id=order_id)

    run_worker()

    # The run read the deal there first (our webhook code answers: the same portal), then wrote there.
    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPARATION"
    health = client.get("/api/health/").json()["portals"]["crm"]
    assert health["moved_to"] == new_base
    assert settings.BXSYNC_CRM_REST_URL.split("/rest/")[1] not in json.dumps(health)  # never the code
    client.force_login(support)
    dashboard = client.get("/admin/dashboard/").content.decode()
    assert f"moved to {new_base}" in dashboard


def test_it_picks_up_the_jobs_of_a_worker_that_died(sb):
    order_id, deal_id = linked_pair(sb)
    sb.shop.set_order_status(int(order_id), "P")
    job_request(kind=JobKind.ORDER, entity_id=order_id)
    claimed = jobs_claim(queue="default", limit=50)  # ... and the worker dies here
    Job.objects.filter(id__in=[j.id for j in claimed]).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )

    assert jobs_recover() == 1
    run_worker()

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPARATION"


def test_it_reconciles_changes_whose_events_never_arrived(sb):
    pairs = sb.seed(3, pipeline_share=0, orders_without_deal=0, deals_without_order=0)
    (o1, d1), (o2, d2), (_, d3) = pairs
    sb.advance_clock(60)  # whole seconds after creation, so "latest" can tell the changes apart
    sb.shop.set_order_status(o1, "P")  # never linked before, event lost
    sb.crm.move_deal(d2, "LOSE")  # never linked before, event lost

    dry = StringIO()
    call_command("reconcile", "--dry-run", stdout=dry)
    assert sb.rest_writes() == 0
    assert not Link.objects.exists()
    assert "would write 2 change(s)" in dry.getvalue()

    out = StringIO()
    call_command("reconcile", stdout=out)

    assert sb.crm.get_deal(d1)["STAGE_ID"] == "PREPARATION"
    assert sb.shop.get_order(o2)["statusId"] == "C"
    assert sb.crm.get_deal(d3)["STAGE_ID"] == "NEW"
    assert Link.objects.filter(state=LinkState.ACTIVE).count() == 3
    assert sb.rest_writes() == 2


def test_it_follows_a_deal_moved_to_another_pipeline_with_that_pipelines_mapping(sb):
    order_id, deal_id = linked_pair(sb)
    sb.crm.move_deal_to_pipeline(int(deal_id), 1, "C1:WON")

    job_request(kind=JobKind.DEAL, entity_id=deal_id, event="ONCRMDEALMOVETOCATEGORY")
    run_worker()

    assert sb.shop.get_order(int(order_id))["statusId"] == "F"
    assert Link.objects.get(order_id=order_id).pipeline_id == 1


def test_it_sees_a_pipeline_move_no_outgoing_webhook_hears_of_at_the_next_reconciliation(sb):
    # api-reference/crm/deals/events/index.md: only an application can bind ONCRMDEALMOVETOCATEGORY, and a
    # move fires no ONCRMDEALUPDATE; the move does change DATE_MODIFY, which the change feed reads.
    order_id, deal_id = linked_pair(sb)
    reconcile_run(process_inline=False)  # a pass before the move: the watermark is now
    run_worker()
    sb.advance_clock(5)
    sb.crm.move_deal_to_pipeline(int(deal_id), 1, "C1:WON")

    report = reconcile_run(process_inline=False)
    run_worker()

    assert deal_id in report.deals
    assert sb.shop.get_order(int(order_id))["statusId"] == "F"
    assert Link.objects.get(order_id=order_id).pipeline_id == 1


def test_it_keeps_webhook_secrets_out_of_the_audit_and_the_jobs(sb, settings):
    order_id, _ = linked_pair(sb)
    secret = settings.BXSYNC_CRM_REST_URL.rstrip("/").rsplit("/", 1)[1]
    sb.set_faults("crm", outage_seconds=60)
    sb.shop.set_order_status(int(order_id), "P")
    job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()
    settings.BXSYNC_CRM_REST_URL = "http://127.0.0.1:1/rest/1/" + secret + "/"  # nothing listens there
    Job.objects.filter(state=JobState.PENDING).update(not_before=timezone.now())
    PortalHealth.objects.update(failing_since=None)  # as if a probe had got through in between
    run_worker()

    texts = [str(v) for v in AuditEntry.objects.values_list("message", "before", "after")]
    texts += list(Job.objects.values_list("last_error", flat=True))
    texts += list(PortalHealth.objects.values_list("last_error", flat=True))
    assert any("crm" in t for t in texts)
    assert not any(secret in t for t in texts)


def test_it_names_the_echo_when_both_sides_events_land_in_one_run(sb):
    order_id, deal_id = linked_pair(sb)
    sb.shop.set_order_status(int(order_id), "P")
    job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()

    # Our deal write's echo, and a late duplicate of the shop's own event, handled together.
    job_request(kind=JobKind.DEAL, entity_id=deal_id)
    job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()

    assert AuditEntry.objects.filter(order_id=order_id).first().outcome == "echo"
    assert sb.rest_writes() == 1


def test_it_keeps_syncing_when_the_portal_refuses_the_stage_list(sb, monkeypatch):
    monkeypatch.setattr("statussync.portals.stage_list", lambda pipeline: ("crm.status.nosuchmethod", {}))
    order_id, deal_id = linked_pair(sb)
    sb.crm.move_deal(int(deal_id), "WON")
    job_request(kind=JobKind.DEAL, entity_id=deal_id)
    run_worker()
    assert sb.shop.get_order(int(order_id))["statusId"] == "F"

    # Paid while at the success stage: the deal's own STAGE_SEMANTIC_ID says so; it stays at WON.
    job_request(kind=JobKind.PAYMENT, entity_id=pay(sb, order_id))
    run_worker("payments")

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "WON"
    assert sb.rest_writes() == 1


def test_it_never_reverts_an_order_because_an_unlinked_deals_title_was_edited(sb):
    [(order_id, deal_id)] = sb.seed(1, pipeline_share=0, orders_without_deal=0, deals_without_order=0)
    sb.advance_clock(60)
    sb.shop.set_order_status(order_id, "P")  # its event is still on the way ...
    sb.advance_clock(5)
    sb.crm.edit_deal(deal_id, {"TITLE": "Order 42, delivery"})  # ... when this ONCRMDEALUPDATE arrives

    job_request(kind=JobKind.DEAL, entity_id=str(deal_id))
    run_worker()

    assert sb.shop.get_order(order_id)["statusId"] == "P"
    assert sb.crm.get_deal(deal_id)["STAGE_ID"] == "PREPARATION"

"""Exactly one write per change when things break mid-run: lost replies, runs that outlive their lock, two
workers on one new pair, a deal that changes pipeline between read and write (issue: fenced leases, write
intents). Each test breaks the run at one point on purpose and counts the writes the portals received."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from statussync import leases
from statussync.bitrix import BitrixClient, TransientError
from statussync.jobs import job_request, jobs_claim, jobs_process
from statussync.mapping.store import mapping_import
from statussync.models import AuditEntry, Job, JobKind, JobState, Link, Queue, SyncLock
from statussync.sync import jobs_handle, locks, write
from tests.support.mappings import two_pipelines
from tests.support.sandbox import before_writes, linked_pair, new_pair, pay, run_worker
from tests.support.waiting import wait_for

DEMO_MAPPING = two_pipelines()
# The demo's mapping: a manager's move to the prepayment-invoice stage means "awaiting payment" (N), so a
# paid stage that maps back to a status, where a second write would be a regression.
DEMO_MAPPING["pipelines"][0]["rules"].insert(
    1, {"order_status": "N", "deal_stage": "PREPAYMENT_INVOICE", "direction": "to_cms"}
)


def lose_replies(monkeypatch, *, portal: str, times: int = 1) -> list[str]:
    """The next `times` batch calls to `portal` reach it and are applied, but their reply is lost (a
    timeout after Bitrix committed). Returns the list the lost calls are noted in."""
    real = BitrixClient.batch
    lost: list[str] = []

    def batch(self, commands, **kwargs):
        result = real(self, commands, **kwargs)
        if (
            self.portal == portal
            and len(lost) < times
            and any(m.endswith(".update") for m, _ in commands.values())
        ):
            lost.append(portal)
            raise TransientError(portal=portal, method="batch", code="timeout", description="read timed out")
        return result

    monkeypatch.setattr(BitrixClient, "batch", batch)
    return lost


def expire_claims() -> None:
    """The paused run outlived its lease: its lock and its jobs' leases have run out."""
    past = timezone.now() - timedelta(seconds=1)
    SyncLock.objects.update(until=past)
    Job.objects.filter(state=JobState.RUNNING).update(lease_until=past)


def test_it_adopts_a_write_whose_reply_was_lost_instead_of_sending_it_again(sb, monkeypatch):
    order_id, deal_id = linked_pair(sb)
    sb.shop.set_order_status(int(order_id), "P")
    lost = lose_replies(monkeypatch, portal="crm")

    job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()
    assert lost == ["crm"]
    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPARATION"  # it landed
    assert Link.objects.get(order_id=order_id).intent_value == "PREPARATION"

    Job.objects.filter(state=JobState.PENDING).update(not_before=timezone.now())
    run_worker()  # the retry
    job_request(kind=JobKind.DEAL, entity_id=deal_id)  # the echo of the write
    run_worker()

    assert sb.rest_writes() == 1
    link = Link.objects.get(order_id=order_id)
    assert (link.base_order_status, link.base_deal_stage, link.intent_value) == ("P", "PREPARATION", "")
    assert AuditEntry.objects.filter(order_id=order_id, message__contains="landed, though its reply was lost")


@pytest.mark.parametrize("first_sight", [False, True], ids=["linked", "never-seen"])
def test_it_writes_a_payment_once_when_its_reply_is_lost_with_a_paid_stage_that_maps_back(
    sb, monkeypatch, first_sight
):
    """With PREPAYMENT_INVOICE → N, a rerun that did not know its write landed would see a manager's move to
    an awaiting-payment stage: a regression flagged, and the next event moving the deal off the paid stage."""
    mapping_import(data=DEMO_MAPPING)
    order_id, deal_id = new_pair(sb) if first_sight else linked_pair(sb)
    payment_id = pay(sb, order_id)
    lose_replies(monkeypatch, portal="crm")

    job_request(kind=JobKind.PAYMENT, entity_id=payment_id)
    run_worker("payments")
    Job.objects.filter(state=JobState.PENDING).update(not_before=timezone.now())
    run_worker("payments")
    job_request(kind=JobKind.DEAL, entity_id=deal_id)  # the echo
    job_request(kind=JobKind.ORDER, entity_id=order_id)  # the order's own save event
    run_worker()

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPAYMENT_INVOICE"
    assert sb.shop.get_order(int(order_id))["statusId"] == "P"
    assert sb.rest_writes() == 1
    link = Link.objects.get(order_id=order_id)
    assert not link.needs_attention
    assert not AuditEntry.objects.filter(outcome="regression_blocked").exists()


def test_it_sends_nothing_from_a_run_that_outlived_its_lock_while_another_worker_took_over(sb, monkeypatch):
    order_id, deal_id = linked_pair(sb)
    sb.shop.set_order_status(int(order_id), "P")
    job_request(kind=JobKind.ORDER, entity_id=order_id)
    taken_over = []

    def second_worker():
        expire_claims()
        taken_over.extend(jobs_claim(queue=Queue.DEFAULT, limit=50))  # the expired job, with a new claim
        jobs_handle(taken_over)

    before_writes(monkeypatch, second_worker)
    run_worker()

    assert len(taken_over) == 1
    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPARATION"
    assert sb.rest_writes() == 1  # the second worker's; the stale run sent nothing
    job = Job.objects.get(id=taken_over[0].id)
    assert (job.state, job.claim_token) == (JobState.DONE, taken_over[0].claim_token)
    assert not Job.objects.filter(state__in=[JobState.PENDING, JobState.RUNNING]).exists()
    assert Link.objects.get(order_id=order_id).base_deal_stage == "PREPARATION"


def test_it_records_nothing_from_a_run_that_lost_its_lock_after_its_write(sb, monkeypatch):
    """The stale run's write went out; the worker that took over finds it on the link as an intent, sees it
    landed, and adopts it: still one write, and the stale run's late record changes nothing."""
    order_id, _deal_id = linked_pair(sb)
    sb.shop.set_order_status(int(order_id), "P")
    job_request(kind=JobKind.ORDER, entity_id=order_id)
    real = write.writes_send
    stale = []

    def write_then_lose_the_lock(run):
        real(run)
        if not stale:  # only the first run is paused here; the worker taking over runs through
            stale.append(run)
            expire_claims()
            jobs_handle(jobs_claim(queue=Queue.DEFAULT, limit=50))

    monkeypatch.setattr(write, "writes_send", write_then_lose_the_lock)
    run_worker()

    assert sb.rest_writes() == 1
    link = Link.objects.get(order_id=order_id)
    assert (link.base_deal_stage, link.intent_value) == ("PREPARATION", "")
    applied = AuditEntry.objects.filter(order_id=order_id).exclude(outcome="no_change")
    assert [e.outcome for e in applied] == ["applied"]  # the stale run recorded nothing


def test_it_lets_one_worker_decide_a_pair_never_seen_before_when_an_order_and_a_deal_job_race(
    sb, monkeypatch
):
    order_id, deal_id = new_pair(sb)
    sb.advance_clock(5)  # the status change is the later one: the order job's decision is a write
    sb.shop.set_order_status(int(order_id), "P")
    job_request(kind=JobKind.ORDER, entity_id=order_id)
    order_jobs = jobs_claim(queue=Queue.DEFAULT, limit=50)

    def deal_worker():
        job_request(kind=JobKind.DEAL, entity_id=deal_id)
        jobs_handle(jobs_claim(queue=Queue.DEFAULT, limit=50))

    before_writes(monkeypatch, deal_worker)
    jobs_handle(order_jobs)

    assert sb.rest_writes() == 1
    deal_job = Job.objects.get(kind="deal", entity_id=deal_id)
    assert deal_job.state == JobState.PENDING  # given back: the order was busy in the other worker
    Job.objects.filter(state=JobState.PENDING).update(not_before=timezone.now())
    run_worker()
    assert sb.rest_writes() == 1
    assert Link.objects.filter(order_id=order_id).count() == 1


def test_it_keeps_the_base_when_the_deal_changed_pipeline_before_the_write(sb, monkeypatch):
    """crm.deal.update with a stage of the deal's former pipeline answers true and changes nothing; the base
    must not record a stage the deal never reached. The pair is decided again with the new pipeline."""
    mapping = two_pipelines()
    mapping["pipelines"][1]["conflict_policy"] = "cms_wins"  # the move is newer; the order change wins anyway
    mapping_import(data=mapping)
    order_id, deal_id = linked_pair(sb)
    sb.shop.set_order_status(int(order_id), "P")
    job_request(kind=JobKind.ORDER, entity_id=order_id)
    before_writes(monkeypatch, lambda: sb.crm.move_deal_to_pipeline(int(deal_id), 1))

    run_worker()  # the no-op write, then the pair decided again with pipeline 1's mapping

    failed = AuditEntry.objects.get(order_id=order_id, outcome="failed")
    assert "moved to pipeline 1" in failed.message
    assert "base" not in failed.after  # the base never recorded a stage the deal did not reach
    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "C1:PREPARATION"
    link = Link.objects.get(order_id=order_id)
    assert (link.base_order_status, link.base_deal_stage, link.pipeline_id) == ("P", "C1:PREPARATION", 1)
    assert sb.rest_writes() == 2  # the one that changed nothing, and the one that did


def test_it_takes_over_payments_left_waiting_even_with_no_work_of_its_own(sb, settings):
    order_id, deal_id = linked_pair(sb)
    job = job_request(kind=JobKind.PAYMENT, entity_id=pay(sb, order_id))
    Job.objects.filter(id=job.id).update(not_before=timezone.now() - timedelta(seconds=60))
    assert not Job.objects.filter(queue=Queue.DEFAULT, state=JobState.PENDING).exists()

    handled = jobs_process(queue=Queue.DEFAULT, handle=jobs_handle, max_seconds=10)

    assert handled == 1
    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPAYMENT_INVOICE"


def test_it_leaves_another_workers_claim_alone_when_a_run_that_outlived_its_lease_fails(sb, monkeypatch):
    """Finding 5: a run that fails after its lease ran out and another worker claimed its jobs must not put
    those jobs back to pending (or into the dead-letter list) under the other worker's claim."""
    order_id, _deal_id = linked_pair(sb)
    sb.shop.set_order_status(int(order_id), "P")
    job_request(kind=JobKind.ORDER, entity_id=order_id)
    taken_over = []

    def second_worker_then_fail():
        expire_claims()
        taken_over.extend(jobs_claim(queue=Queue.DEFAULT, limit=50))
        raise RuntimeError("the stale run breaks")

    before_writes(monkeypatch, second_worker_then_fail)
    run_worker()

    assert len(taken_over) == 1
    job = Job.objects.get(id=taken_over[0].id)
    assert (job.state, job.claim_token) == (JobState.RUNNING, taken_over[0].claim_token)
    assert job.last_error == ""


def test_it_keeps_a_live_runs_jobs_and_orders_while_it_waits_longer_than_a_lease(
    sb, transactional_db, monkeypatch, settings
):
    """Leases are short so that a dead worker's work comes back within seconds; a live run whose call takes
    several leases keeps its claims by its heartbeat, and no other worker takes its order."""
    settings.BXSYNC_JOB_LEASE_SECONDS = 1
    monkeypatch.setattr(leases, "HEARTBEAT_SECONDS", 0.2)
    order_id, deal_id = linked_pair(sb)
    sb.shop.set_order_status(int(order_id), "P")
    job_request(kind=JobKind.ORDER, entity_id=order_id)
    others = []

    def slow_call():  # the run waits three leases for its portal; meanwhile another worker looks for work
        claimed = Job.objects.get(state=JobState.RUNNING).lease_until
        wait_for(
            lambda: Job.objects.get(state=JobState.RUNNING).lease_until > claimed + timedelta(seconds=3),
            timeout=10,
            what="the heartbeat to renew the run's lease past three leases",
        )
        others.extend(jobs_claim(queue=Queue.DEFAULT, limit=50))
        assert SyncLock.objects.get(order_id=order_id).until > timezone.now()

    before_writes(monkeypatch, slow_call)
    run_worker()

    assert others == []
    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPARATION"
    assert sb.rest_writes() == 1
    assert set(Job.objects.values_list("state", flat=True)) == {JobState.DONE}


def test_it_decides_from_the_base_as_it_stands_once_the_order_is_locked(sb, monkeypatch):
    """Finding 9: the run attached its links before taking the order locks and never read them again. A
    run that finished meanwhile had moved the base; decided from the old one, a person's later change looked
    like a conflict, and under `cms_wins` it was reverted."""
    mapping = two_pipelines()
    mapping["pipelines"][0]["conflict_policy"] = "cms_wins"
    mapping_import(data=mapping)
    order_id, deal_id = linked_pair(sb)
    real = locks.orders_lock
    moved = []

    def another_run_finishes_first(run, items):
        if not moved:
            moved.append(True)
            sb.shop.set_order_status(int(order_id), "P")  # a person; the other run wrote the deal
            sb.crm.move_deal(int(deal_id), "PREPARATION")
            Link.objects.filter(order_id=order_id).update(
                base_order_status="P", base_deal_stage="PREPARATION"
            )
            sb.advance_clock(5)
            sb.crm.move_deal(int(deal_id), "WON", user_id=8)  # then a manager wins the deal
        real(run, items)

    monkeypatch.setattr(locks, "orders_lock", another_run_finishes_first)
    job_request(kind=JobKind.DEAL, entity_id=deal_id)
    run_worker()

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "WON"  # the manager's change stands
    assert sb.shop.get_order(int(order_id))["statusId"] == "F"  # ... and reaches the shop
    assert not Link.objects.get(order_id=order_id).needs_attention


def test_it_lets_a_payment_take_its_order_over_from_a_run_of_the_default_queue(sb):
    """Finding 6: a payment waited behind the default run holding its order (4.94 s in the scaled bulk
    edit), reading its payment every second meanwhile. It takes the order over; the default run's
    fenced write round drops the order it lost."""
    order_id, deal_id = linked_pair(sb)
    SyncLock.objects.create(
        order_id=order_id, token="a bulk edit's run", until=timezone.now() + timedelta(seconds=60)
    )
    payment_id = pay(sb, order_id)
    sb.reset_counters()

    job_request(kind=JobKind.PAYMENT, entity_id=payment_id)
    run_worker("payments")

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPAYMENT_INVOICE"
    assert sb.counters()["shop"]["rest_calls"]["sale.payment.get"] == 1
    assert set(Job.objects.values_list("state", flat=True)) == {JobState.DONE}

"""A run's read covers the pending jobs whose events came before it (statussync/sync/covered.py): the shop's
order event beside a payment, read by the payment's run, starts no run of its own."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from statussync.admin.timeline import decision_step
from statussync.jobs import job_request
from statussync.models import AuditEntry, Job, JobKind, JobState, SyncLock
from statussync.sync import covered
from tests.support.sandbox import before_writes, linked_pair, pay, run_worker


def _came_in_a_second_ago(job: Job, *, due: bool = True) -> Job:
    """The job's event came in a second ago (before any read of this test's run); not yet due unless `due`."""
    earlier = timezone.now() - timedelta(seconds=1)
    not_before = earlier if due else timezone.now() + timedelta(minutes=5)
    Job.objects.filter(id=job.id).update(created_at=earlier, updated_at=earlier, not_before=not_before)
    return Job.objects.get(id=job.id)


def _customer_pays_with_order_event(sb, order_id: str, *, wins: str = "") -> Job:
    """The customer pays: the shop's order event came in first, then the payment's, whose run is started.
    The order's job is stamped as the webhook stamps it; no margin for two hosts' clocks (one host here)."""
    payment_id = pay(sb, order_id)
    order_job = job_request(kind=JobKind.ORDER, entity_id=order_id, event="ONSALEORDERSAVED", wins=wins)
    job_request(kind=JobKind.PAYMENT, entity_id=payment_id, event="ONPAYMENTENTITYSAVED")
    sb.reset_counters()
    run_worker("payments")
    return order_job


def test_it_finishes_the_order_job_whose_event_came_before_the_payment_run_read_the_order(sb, monkeypatch):
    monkeypatch.setattr(covered, "CLOCK_MARGIN", timedelta(0))
    order_id, deal_id = linked_pair(sb)

    order_job = _customer_pays_with_order_event(sb, order_id)

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPAYMENT_INVOICE"
    order_job.refresh_from_db()
    assert order_job.state == JobState.DONE
    assert order_job.last_error.startswith("covered: its events came before the read sent at")
    entry = AuditEntry.objects.get(order_id=order_id, outcome="payment_applied")
    assert [(c["job"], c["event"]) for c in entry.after["covered"]] == [(order_job.id, "ONSALEORDERSAVED")]
    assert decision_step(entry).covered == "ONSALEORDERSAVED"  # the link's timeline says so
    requests = sb.counters()["shop"]["rest_requests"] + sb.counters()["crm"]["rest_requests"]
    assert run_worker() == 0  # nothing left for the default queue to read
    assert sb.counters()["shop"]["rest_requests"] + sb.counters()["crm"]["rest_requests"] == requests


def test_it_runs_a_job_whose_event_came_after_the_read(sb, monkeypatch):
    order_id, _ = linked_pair(sb)
    payment_id = pay(sb, order_id)
    job_request(kind=JobKind.PAYMENT, entity_id=payment_id, event="ONPAYMENTENTITYSAVED")
    later: list[Job] = []
    before_writes(
        monkeypatch,
        lambda: later.append(job_request(kind=JobKind.ORDER, entity_id=order_id, event="ONSALEORDERSAVED")),
    )

    run_worker("payments")

    assert Job.objects.get(id=later[0].id).state == JobState.PENDING
    entry = AuditEntry.objects.get(order_id=order_id, outcome="payment_applied")
    assert "covered" not in entry.after
    assert run_worker() == 1  # read in a run of its own
    assert Job.objects.get(id=later[0].id).state == JobState.DONE


def test_it_never_covers_a_job_carrying_a_managers_choice(sb, monkeypatch):
    monkeypatch.setattr(covered, "CLOCK_MARGIN", timedelta(0))
    order_id, _ = linked_pair(sb)

    order_job = _customer_pays_with_order_event(sb, order_id, wins="crm")

    order_job.refresh_from_db()
    assert (order_job.state, order_job.wins) == (JobState.PENDING, "crm")
    assert "covered" not in AuditEntry.objects.get(order_id=order_id, outcome="payment_applied").after


def test_it_covers_nothing_when_the_item_fails(sb, monkeypatch):
    from bitrix_sandbox.rest import RestError

    order_id, deal_id = linked_pair(sb)
    deal_job = _came_in_a_second_ago(
        job_request(kind=JobKind.DEAL, entity_id=deal_id, event="ONCRMDEALUPDATE"), due=False
    )
    sb.shop.set_order_status(int(order_id), "P")
    job_request(kind=JobKind.ORDER, entity_id=order_id, event="ONSALEORDERSAVED")

    def busy(params, ctx):
        raise RestError(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")

    monkeypatch.setitem(sb.crm._methods, "crm.deal.update", busy)
    run_worker()

    assert Job.objects.get(id=deal_job.id).state == JobState.PENDING
    assert Job.objects.filter(kind=JobKind.ORDER, entity_id=order_id).latest("id").state == JobState.PENDING


def test_it_covers_nothing_when_another_run_holds_the_order(sb):
    order_id, deal_id = linked_pair(sb)
    deal_job = _came_in_a_second_ago(
        job_request(kind=JobKind.DEAL, entity_id=deal_id, event="ONCRMDEALUPDATE"), due=False
    )
    SyncLock.objects.create(
        order_id=order_id, token="another run", until=timezone.now() + timedelta(minutes=1)
    )
    job_request(kind=JobKind.ORDER, entity_id=order_id, event="ONSALEORDERSAVED")

    run_worker()

    assert Job.objects.get(id=deal_job.id).state == JobState.PENDING
    order_job = Job.objects.filter(kind=JobKind.ORDER, entity_id=order_id).latest("id")
    assert order_job.last_error == "order busy in another worker"


def test_it_finishes_the_deal_job_of_a_change_the_order_run_read(sb):
    order_id, deal_id = linked_pair(sb)
    sb.crm.move_deal(int(deal_id), "PREPARATION")
    deal_job = _came_in_a_second_ago(
        job_request(kind=JobKind.DEAL, entity_id=deal_id, event="ONCRMDEALUPDATE"), due=False
    )
    job_request(kind=JobKind.ORDER, entity_id=order_id, event="ONSALEORDERSAVED")

    run_worker()

    assert Job.objects.get(id=deal_job.id).state == JobState.DONE
    assert sb.shop.get_order(int(order_id))["statusId"] == "P"  # the deal's move, read by the order's run

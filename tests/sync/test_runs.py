"""Runs sized for list reads: a worker lets due jobs gather while a burst of events is still arriving, up to a
full run, and never makes a trickle or a payment wait long (statussync.jobs.BATCH_WINDOW_SECONDS)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from statussync import jobs
from statussync.jobs import job_request
from statussync.models import Job, JobKind, SyncLock
from statussync.sync import items_for, items_sync, write


@pytest.fixture
def clock(monkeypatch):
    """Sleeping moves every job's times back instead (as if that long had passed); the sleeps are recorded."""
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        for job in Job.objects.all():
            Job.objects.filter(id=job.id).update(
                created_at=job.created_at - timedelta(seconds=seconds),
                updated_at=job.updated_at - timedelta(seconds=seconds),
                not_before=job.not_before - timedelta(seconds=seconds),
            )

    monkeypatch.setattr(jobs.time, "sleep", sleep)
    return slept


def age(seconds: float) -> None:
    for job in Job.objects.all():
        Job.objects.filter(id=job.id).update(
            created_at=job.created_at - timedelta(seconds=seconds),
            updated_at=job.updated_at - timedelta(seconds=seconds),
        )


def test_it_starts_a_run_at_once_when_the_burst_is_over(db, clock):
    for n in range(jobs.HANDFUL_JOBS):
        job_request(kind=JobKind.ORDER, entity_id=str(n))
    age(0.5)

    jobs._batch_window(queue="default")

    assert clock == []


def test_it_waits_for_jobs_still_coming_due_but_not_longer_than_the_quiet_time(db, clock):
    for n in range(jobs.HANDFUL_JOBS):
        job_request(kind=JobKind.ORDER, entity_id=str(n))

    jobs._batch_window(queue="default")

    assert 0 < sum(clock) <= jobs.BATCH_WINDOW_SECONDS["default"]["quiet"] + 0.05


def test_it_lets_a_handful_of_jobs_wait_a_bounded_moment_for_more(db, clock):
    for n in range(3):
        job_request(kind=JobKind.ORDER, entity_id=str(n))
    age(0.5)  # quiet for longer than the quiet time: a full run would start now

    jobs._batch_window(queue="default")

    settle = jobs.BATCH_WINDOW_SECONDS["default"]["settle"]
    assert settle - 0.5 - 0.2 <= sum(clock) <= settle - 0.5 + 0.05  # until the oldest is 1 s old


def test_it_starts_a_run_once_the_oldest_job_waited_long_enough_in_a_steady_stream(db, clock):
    job_request(kind=JobKind.ORDER, entity_id="old")
    age(jobs.BATCH_WINDOW_SECONDS["default"]["max"])
    job_request(kind=JobKind.ORDER, entity_id="new")  # a job just came due: the stream goes on

    jobs._batch_window(queue="default")

    assert clock == []


def test_it_starts_a_full_run_at_once(db, clock, settings):
    settings.BXSYNC_JOB_BATCH = 3
    for n in range(3):
        job_request(kind=JobKind.ORDER, entity_id=str(n))

    jobs._batch_window(queue="default")

    assert clock == []


def test_it_never_makes_a_payment_wait(db, clock):
    job_request(kind=JobKind.PAYMENT, entity_id="1")

    jobs._batch_window(queue="payments")

    assert clock == []


def test_it_drops_the_writes_of_orders_another_worker_took_while_a_long_write_round_went_on(
    sb, monkeypatch, settings
):
    # A run of the default queue checks before every call: a payment may take an order at any moment.
    pairs = sb.seed(60, pipeline_share=0, orders_without_deal=0, deals_without_order=0)
    items_sync(items=items_for(order_ids=[str(o) for o, _ in pairs]))
    sb.crm.bulk_move([d for _, d in pairs], "PREPARATION")
    taken = [str(o) for o, _ in pairs[50:]]  # the orders of the second call of 50 writes
    renewals = []
    real = write.locks_renew

    def renew(run):
        renewals.append(run)
        if len(renewals) == 3:  # before the second call: the run's lease ran out, another worker took these
            SyncLock.objects.filter(order_id__in=taken).update(
                token="other", until=timezone.now() + timedelta(seconds=60)
            )
        real(run)

    monkeypatch.setattr(write, "locks_renew", renew)
    sb.reset_counters()

    items_sync(items=items_for(deal_ids=[str(d) for _, d in pairs]))

    assert len(renewals) == 3  # once before the round, then before each of its two calls
    assert [sb.shop.get_order(o)["statusId"] for o, _ in pairs[:50]] == ["P"] * 50
    assert [sb.shop.get_order(o)["statusId"] for o, _ in pairs[50:]] == ["N"] * 10
    assert sb.counters()["shop"]["rest_calls"]["sale.order.update"] == 50


def test_it_gathers_a_longer_run_while_the_portals_bucket_drains(db, clock, monkeypatch, settings):
    settings.BXSYNC_RATE_PER_SECOND = 2
    monkeypatch.setattr(jobs, "limiter_level", lambda portal: 40.0 if portal == "crm" else 0.0)
    job_request(kind=JobKind.ORDER, entity_id="old")
    age(jobs.BATCH_WINDOW_SECONDS["default"]["max"])
    job_request(kind=JobKind.ORDER, entity_id="new")  # a storm goes on, and the CRM's bucket is full

    jobs._batch_window(queue="default")

    # A run now would wait for its slots anyway: the worker waits while the stream goes on (here it stops at
    # once, so the quiet time ends the wait).
    assert 0 < sum(clock) <= jobs.BATCH_WINDOW_SECONDS["default"]["quiet"] + 0.05
    monkeypatch.setattr(jobs, "limiter_level", lambda portal: 0.0)
    job_request(kind=JobKind.ORDER, entity_id="newest")
    clock.clear()
    jobs._batch_window(queue="default")
    assert clock == []  # an idle bucket: the oldest job waited its 2 s, the run starts


def test_it_checks_no_lock_between_the_calls_of_a_payment_runs_short_write_round(sb, monkeypatch):
    pairs = sb.seed(60, pipeline_share=0, orders_without_deal=0, deals_without_order=0)
    items_sync(items=items_for(order_ids=[str(o) for o, _ in pairs]))
    sb.crm.bulk_move([d for _, d in pairs], "PREPARATION")
    renewals = []
    real = write.locks_renew
    monkeypatch.setattr(write, "locks_renew", lambda run: renewals.append(run) or real(run))

    items_sync(items=items_for(deal_ids=[str(d) for _, d in pairs]), priority=True)

    # Nobody takes a payment's orders while its lease lasts, and the heartbeat keeps it: one check before
    # the intents, none between the calls of a round shorter than a beat.
    assert len(renewals) == 1
    assert [sb.shop.get_order(o)["statusId"] for o, _ in pairs] == ["P"] * 60


@pytest.fixture
def stream(monkeypatch):
    """Sleeping moves every job's times back, and then a new job comes due: events that never pause."""
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        age(seconds)
        job_request(kind=JobKind.DEAL, entity_id=f"stream-{len(slept)}")

    monkeypatch.setattr(jobs.time, "sleep", sleep)
    return slept


@pytest.mark.parametrize(("streak", "bound"), [(0, 2.0), (1, 4.0), (3, 16.0), (9, 24.0)])
def test_it_reads_a_stream_that_outlasts_its_runs_in_longer_runs_up_to_a_bound(db, stream, streak, bound):
    job_request(kind=JobKind.DEAL, entity_id="first")

    ended = jobs._batch_window(queue="default", streak=streak)

    assert ended == "max"
    first = Job.objects.get(entity_id="first")
    waited = (timezone.now() - first.created_at).total_seconds()  # slept, and the test's own time
    assert bound <= waited <= bound + 0.35


def test_it_starts_the_run_once_the_stream_pauses_however_long_it_went_on(db, clock):
    for n in range(jobs.HANDFUL_JOBS):
        job_request(kind=JobKind.DEAL, entity_id=str(n))

    ended = jobs._batch_window(queue="default", streak=9)

    assert ended == "quiet"
    assert 0 < sum(clock) <= jobs.BATCH_WINDOW_SECONDS["default"]["quiet"] + 0.05


def test_it_counts_a_streak_only_while_runs_are_started_by_a_stream(db, monkeypatch):
    endings = iter(["max", "max", "quiet", "max"])
    streaks: list[int] = []

    def window(*, queue: str, streak: int) -> str:
        streaks.append(streak)
        return next(endings, "none")

    monkeypatch.setattr(jobs, "_batch_window", window)
    calls = iter([True, True, True, True])
    monkeypatch.setattr(jobs, "jobs_claim", lambda **kw: [object()] if next(calls, False) else [])
    monkeypatch.setattr(jobs, "_next_due", lambda **kw: None)

    jobs.jobs_process(queue="default", handle=lambda batch: None)

    assert streaks == [0, 1, 2, 0, 1]

"""Runs sized for list reads: a worker lets due jobs gather while a burst of events is still arriving, up to a
full run, and never makes a trickle or a payment wait long (statussync.jobs.BATCH_WINDOW_SECONDS)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
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


def test_it_does_not_hold_a_run_back_for_a_bucket_that_has_room_for_its_reads(
    db, clock, monkeypatch, settings
):
    # After a first run's 20 writes and 2 reads the CRM's bucket holds 22 of bxsync's 40 (30 for ordinary
    # work): the next run's read goes out at once, so the stage moves that missed the first run need not wait
    # for the bucket to drain.
    settings.BXSYNC_RATE_PER_SECOND = 2
    monkeypatch.setattr(jobs, "limiter_level", lambda portal: 22.0 if portal == "crm" else 0.0)
    job_request(kind=JobKind.ORDER, entity_id="old")
    age(jobs.BATCH_WINDOW_SECONDS["default"]["max"])
    job_request(kind=JobKind.ORDER, entity_id="new")  # the stream goes on

    assert jobs._batch_window(queue="default") == "max"
    assert clock == []


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


@pytest.mark.parametrize(("streak", "bound"), [(0, 2.0), (1, 4.0), (2, 8.0), (9, 8.0)])
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


def test_it_does_not_take_a_pause_made_by_its_own_run_for_the_end_of_a_burst(db, clock):
    # While another worker's run records its items, webhooks wait for the database: the stream seems to pause.
    running = job_request(kind=JobKind.DEAL, entity_id="in another run")
    Job.objects.filter(id=running.id).update(
        state="running", claim_token="other", lease_until=timezone.now() + timedelta(seconds=20)
    )
    for n in range(jobs.HANDFUL_JOBS):
        job_request(kind=JobKind.DEAL, entity_id=str(n))
    age(0.5)

    ended = jobs._batch_window(queue="default")

    assert ended == "max"  # not "quiet": the run starts at the stream's bound, with what came meanwhile
    waited = (timezone.now() - Job.objects.get(entity_id="0").created_at).total_seconds()
    assert (
        jobs.BATCH_WINDOW_SECONDS["default"]["max"]
        <= waited
        <= jobs.BATCH_WINDOW_SECONDS["default"]["max"] + 0.35
    )
    Job.objects.filter(id=running.id).update(state="done")
    clock.clear()
    job_request(kind=JobKind.DEAL, entity_id="later")
    age(0.5)
    assert jobs._batch_window(queue="default") == "quiet"  # with no run going on, a pause ends the burst


def test_it_carries_a_streams_growth_from_one_worker_to_the_next(db, monkeypatch):
    # A second worker woken by the stream goes on where the first left off, rather than at 2 s beside it.
    streaks: list[int] = []
    endings = iter(["max", "max", "none", "none"])

    def window(*, queue: str, streak: int) -> str:
        streaks.append(streak)
        return next(endings)

    monkeypatch.setattr(jobs, "_batch_window", window)
    claims = iter([[object()], [object()], []])
    monkeypatch.setattr(jobs, "jobs_claim", lambda **kw: next(claims, []))
    monkeypatch.setattr(jobs, "_next_due", lambda **kw: None)
    first_worker_handles = []

    def handle(batch):
        if not first_worker_handles:  # while the first worker runs its first batch, a second one is woken
            first_worker_handles.append(batch)
            jobs.jobs_process(queue="default", handle=lambda batch: None)

    jobs.jobs_process(queue="default", handle=handle)

    # The first worker's run, the second worker's two windows (the stream goes on, then stops), the first's.
    assert streaks == [0, 1, 2, 0]


def test_it_lets_one_worker_gather_a_run_at_a_time(db, monkeypatch):
    other = "another worker's claim"
    cache.set(jobs._gathering_key("default"), other)
    gathered: list[str] = []
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:  # the other worker has claimed its run
            cache.delete(jobs._gathering_key("default"))

    monkeypatch.setattr(jobs.time, "sleep", sleep)

    with jobs._gathering(queue="default"):
        gathered.append("default")
        assert cache.get(jobs._gathering_key("default")) not in (None, other)
    with jobs._gathering(queue="payments"):  # payments never wait for anyone
        gathered.append("payments")

    assert sleeps == [jobs.GATHER_POLL_SECONDS] * 3
    assert gathered == ["default", "payments"]
    assert cache.get(jobs._gathering_key("default")) is None


def test_it_forgets_a_gatherer_that_died_with_its_instance(db):
    cache.set(jobs._gathering_key("default"), "a worker killed while gathering")

    jobs.queue_wake_flags_clear()

    assert cache.get(jobs._gathering_key("default")) is None

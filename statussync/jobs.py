"""Pending work: request, claim, finish, retry and the wake-up of workers.

The Job table is the record of pending work; django-q2 only wakes a worker. A worker that dies leaves its jobs
`running` with an expired lease, and `jobs_recover` (run by the sweeper schedule) puts them back to pending.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F, Min, Q
from django.utils import timezone

from statussync.models import Job, JobKind, JobState, Queue

logger = logging.getLogger(__name__)

WAKE_FLAG_SECONDS = 30
# A worker that finds nothing due waits this long for work coming due soon (a retry backoff) rather than
# leaving it to the once-a-minute sweeper.
HOLD_SECONDS = 5.0
# Events of a bulk edit arrive over a few seconds. Letting the oldest due job wait this long before a run
# that would not be full turns a trickle of one-job runs into runs of 50 (one batch call instead of 50),
# at the price of this much latency. Payment jobs never wait.
BATCH_WINDOW_SECONDS = {"default": 0.3, "payments": 0.0}
PAYMENT_TAKEOVER_SECONDS = 15.0


def job_request(*, kind: str, entity_id: str, origin: str = "event", event: str = "") -> Job:
    """Ask for `kind` `entity_id` to be synced; coalesces into the pending job for it, if there is one."""
    queue = Queue.PAYMENTS if kind == JobKind.PAYMENT else Queue.DEFAULT
    now = timezone.now()
    for _ in range(3):
        updated = Job.objects.filter(kind=kind, entity_id=entity_id, state=JobState.PENDING).update(
            events_coalesced=F("events_coalesced") + 1, updated_at=now
        )
        if updated:
            job = Job.objects.get(kind=kind, entity_id=entity_id, state=JobState.PENDING)
            break
        try:
            with transaction.atomic():
                job = Job.objects.create(
                    kind=kind, entity_id=entity_id, queue=queue, origin=origin, event=event, not_before=now
                )
            break
        except IntegrityError:
            # Another request created the pending job between our update and insert: coalesce into it.
            continue
    else:  # pragma: no cover - three lost races in a row
        raise RuntimeError(f"could not request a job for {kind} {entity_id}")
    # robust: the job is committed by now, so a failing wake-up must not fail the caller (a webhook whose
    # event is stored answers 200 all the same); the sweeper wakes every queue with due work each minute.
    transaction.on_commit(lambda: queue_wake(queue=job.queue), robust=True)
    return job


def queue_wake(*, queue: str) -> None:
    """Enqueue one worker run for `queue` unless one is already on its way (a bulk edit of 10,000 deals
    must not become 10,000 broker messages).

    Never raises: the jobs are in the database already, and the sweeper wakes every queue with due work
    each minute, so a cache or broker that fails now (Redis down, "database is locked" on the ORM broker's
    insert) costs at most that minute. It is logged.
    """
    from django_q.tasks import async_task

    key = _wake_key(queue)
    try:
        if not cache.add(key, 1, timeout=WAKE_FLAG_SECONDS):
            return
    except Exception as exc:
        # The class name only, here and below: connection errors can name hosts of the cache or broker URL.
        logger.warning("could not wake the %s queue (cache: %s); the sweeper will", queue, type(exc).__name__)
        return
    options = {"cluster": queue} if queue != Queue.DEFAULT else {}
    try:
        async_task("statussync.tasks.jobs_run", queue, task_name=f"jobs-{queue}", q_options=options)
    except Exception as exc:
        logger.warning(
            "could not wake the %s queue (broker: %s); the sweeper will", queue, type(exc).__name__
        )
        # So that the next event tries again rather than trust a wake-up that never left; should the cache
        # fail too, the flag expires by itself.
        with contextlib.suppress(Exception):
            cache.delete(key)


def jobs_claim(*, queue: str, limit: int) -> list[Job]:
    """Take up to `limit` due pending jobs of `queue` for this worker (compare-and-set, no row locks, so it
    works the same on SQLite and PostgreSQL)."""
    now = timezone.now()
    due = Q(queue=queue)
    if queue == Queue.DEFAULT:
        # Payment jobs left waiting mean the payments worker is down or stuck: the default workers take them
        # over rather than let a payment wait for an operator.
        due |= Q(queue=Queue.PAYMENTS, not_before__lte=now - timedelta(seconds=PAYMENT_TAKEOVER_SECONDS))
    ids = list(
        Job.objects.filter(due, state=JobState.PENDING, not_before__lte=now)
        .order_by("not_before", "id")
        .values_list("id", flat=True)[:limit]
    )
    if not ids:
        return []
    token = uuid.uuid4().hex
    lease = now + timedelta(seconds=settings.BXSYNC_JOB_LEASE_SECONDS)
    Job.objects.filter(id__in=ids, state=JobState.PENDING).update(
        state=JobState.RUNNING,
        claim_token=token,
        lease_until=lease,
        attempts=F("attempts") + 1,
        updated_at=now,
    )
    return list(Job.objects.filter(claim_token=token, state=JobState.RUNNING).order_by("id"))


def jobs_finish(*, jobs: list[Job]) -> None:
    """Mark jobs done."""
    now = timezone.now()
    Job.objects.filter(id__in=[j.id for j in jobs], state=JobState.RUNNING).update(
        state=JobState.DONE, finished_at=now, lease_until=None, updated_at=now
    )


def job_retry(*, job: Job, error: str, delay: float | None = None, final: bool = False) -> str:
    """Put a failed job back with exponential backoff and jitter, or into the dead-letter list once it has
    used its attempts (at once when `final`: an error that retrying cannot cure). Returns the new state."""
    now = timezone.now()
    if final or job.attempts >= settings.BXSYNC_JOB_MAX_ATTEMPTS:
        Job.objects.filter(id=job.id).update(
            state=JobState.DEAD, last_error=error[:2000], lease_until=None, finished_at=now, updated_at=now
        )
        return JobState.DEAD
    if delay is None:
        delay = retry_delay(attempt=job.attempts)
    if Job.objects.filter(kind=job.kind, entity_id=job.entity_id, state=JobState.PENDING).exists():
        # A newer event already queued this entity again; that job will re-read it.
        Job.objects.filter(id=job.id).update(
            state=JobState.DONE, last_error=f"superseded; {error}"[:2000], finished_at=now, updated_at=now
        )
        return JobState.DONE
    try:
        with transaction.atomic():
            Job.objects.filter(id=job.id).update(
                state=JobState.PENDING,
                not_before=now + timedelta(seconds=delay),
                last_error=error[:2000],
                lease_until=None,
                claim_token="",
                updated_at=now,
            )
    except IntegrityError:
        Job.objects.filter(id=job.id).update(state=JobState.DONE, finished_at=now, updated_at=now)
        return JobState.DONE
    return JobState.PENDING


def job_release(*, job: Job, delay: float = 1.0) -> None:
    """Give a claimed job back without counting an attempt (its link is busy in another worker)."""
    job.attempts = max(job.attempts - 1, 0)
    Job.objects.filter(id=job.id).update(attempts=job.attempts)
    job_retry(job=job, error="link busy in another worker", delay=delay)


def retry_delay(*, attempt: int) -> float:
    """Exponential backoff with full jitter between half and the whole step."""
    step = min(
        settings.BXSYNC_RETRY_MAX_SECONDS, settings.BXSYNC_RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0)
    )
    return step * random.uniform(0.5, 1.0)


def jobs_replay(*, job_ids: list[int]) -> int:
    """Give dead-letter jobs a fresh set of attempts (a manager's "replay"). Returns how many were queued."""
    replayed = 0
    for job in Job.objects.filter(id__in=job_ids, state=JobState.DEAD):
        job_request(kind=job.kind, entity_id=job.entity_id, origin="admin", event=job.event)
        Job.objects.filter(id=job.id).update(
            state=JobState.DONE, last_error=f"replayed; {job.last_error}"[:2000]
        )
        replayed += 1
    return replayed


def jobs_recover() -> int:
    """Return jobs whose worker died (lease expired while running) to pending. Returns how many."""
    now = timezone.now()
    recovered = 0
    for job in Job.objects.filter(state=JobState.RUNNING, lease_until__lt=now):
        if job_retry(job=job, error="worker stopped before finishing", delay=0) == JobState.PENDING:
            recovered += 1
    return recovered


def jobs_process(*, queue: str, handle: Callable[[list[Job]], None], max_seconds: float | None = None) -> int:
    """Claim and handle batches of due jobs until none is left, or until `max_seconds` have passed and a fresh
    task takes over. Returns how many jobs were handled."""
    cache.delete(_wake_key(queue))  # from here on, a new event wakes another run rather than relying on us
    started = time.monotonic()
    handled = 0
    while True:
        if max_seconds is not None and time.monotonic() - started >= max_seconds:
            queue_wake(queue=queue)  # a successor, unless an event already woke one
            break
        _batch_window(queue=queue)
        jobs = jobs_claim(queue=queue, limit=settings.BXSYNC_JOB_BATCH)
        if jobs:
            handle(jobs)
            handled += len(jobs)
            continue
        next_due = Job.objects.filter(queue=queue, state=JobState.PENDING).aggregate(t=Min("not_before"))["t"]
        if next_due is None:
            break
        wait = (next_due - timezone.now()).total_seconds()
        if wait > HOLD_SECONDS:
            break
        time.sleep(max(wait, 0.05))
    return handled


def _batch_window(*, queue: str) -> None:
    """Wait (briefly) for a run to fill up, unless it is full already or its oldest job waited enough."""
    window = BATCH_WINDOW_SECONDS.get(queue, 0.0)
    if window <= 0:
        return
    now = timezone.now()
    due = Job.objects.filter(queue=queue, state=JobState.PENDING, not_before__lte=now)
    if due[settings.BXSYNC_JOB_BATCH - 1 : settings.BXSYNC_JOB_BATCH].exists():
        return
    oldest = due.aggregate(t=Min("created_at"))["t"]
    if oldest is not None:
        time.sleep(min(max(window - (now - oldest).total_seconds(), 0.0), window))


def _wake_key(queue: str) -> str:
    return f"bxsync:wake:{queue}"


def jobs_sweep() -> dict[str, int]:
    """Recover jobs of dead workers, then wake every queue that has due work."""
    recovered = jobs_recover()
    woken = 0
    due = (
        Job.objects.filter(state=JobState.PENDING, not_before__lte=timezone.now())
        .values_list("queue", flat=True)
        .distinct()
    )
    for queue in due:
        # Clear a stale flag first: a wake message can be lost (the Redis broker has no receipts).
        cache.delete(_wake_key(queue))
        queue_wake(queue=queue)
        woken += 1
    return {"recovered": recovered, "queues_woken": woken}

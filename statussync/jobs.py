"""Pending work: request, claim, finish, retry and the wake-up of workers.

The Job table is the record of pending work; django-q2 only wakes a worker. A worker that dies leaves its jobs
`running` with an expired lease, and `jobs_recover` (run by the sweeper schedule) puts them back to pending.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connections, transaction
from django.db.models import F, Max, Min, Q, QuerySet
from django.utils import timezone

from statussync.bitrix import AuthError, BitrixError, OperatingLimitError, TransientError, portal_unreachable
from statussync.bitrix.ratelimit import bucket_share, limiter_level, priority_reserve
from statussync.models import (
    AuditEntry,
    Job,
    JobKind,
    JobState,
    Link,
    LinkState,
    Outcome,
    PortalHealth,
    Queue,
    Side,
)
from statussync.reasons import why
from statussync.upsert import Upsert, upserts_run

logger = logging.getLogger(__name__)

WAKE_FLAG_SECONDS = 30
# A worker that finds nothing due waits this long for work coming due soon (a retry backoff) rather than
# leaving it to the once-a-minute sweeper.
HOLD_SECONDS = 5.0
# Events of a bulk edit arrive over a few seconds, a few hundred a second. A run reads up to BXSYNC_JOB_BATCH
# entities for the price of one (list commands of 50 ids, 50 commands to a batch call), so a worker lets due
# jobs gather while they are still arriving: it starts a run once the batch is full, or no job has come due
# for QUIET seconds (the burst is over), or the oldest due job has waited MAX seconds (a steady stream never
# starves). A trickle pays at most QUIET in latency; a bulk edit of 1,000 deals becomes a few runs instead of
# dozens. Payment jobs never wait.
# While the portals' rate-limit bucket has no room for a run's reads, a run started now would wait for its
# slot anyway: the longest wait grows by the time the fuller bucket takes to make that room (up to "room"
# seconds). A bucket with room does not hold a run back: after a first run's 20 writes the bucket is half
# full, and waiting for it to drain made the stage moves that missed that run wait 11 s more.
# A run of a handful of jobs costs a portal as many requests as a run of a full list command (one list of 50
# ids per portal, one batch call): such a run waits until its oldest job is "settle" seconds old, so the
# stragglers of a burst (the echoes of the last writes, a payment's order event) join one run instead of
# starting one each. Bounded: a lone change waits at most that second.
# A stream that outlasts its run (a storm, a bulk edit arriving slower than a run fills) is read in runs that
# grow: each run the stream starts by the "max" bound doubles the next one's, up to "stream" seconds, and the
# burst's end (the quiet time) resets it. The streak is the queue's, not a worker's (`_streak`), and one
# worker gathers at a time (`_gathering`): a second worker woken by the stream would otherwise start over at
# 2 s beside the first and split its runs. Bounded: a change waits at most "stream" seconds for its run, the
# age of the oldest job, while events keep arriving without a pause; a storm of a minute is still read in a
# dozen runs.
BATCH_WINDOW_SECONDS = {
    "default": {"quiet": 0.3, "max": 2.0, "room": 10.0, "settle": 1.0, "stream": 8.0},
    "payments": None,
}
HANDFUL_JOBS = 50
PAYMENT_TAKEOVER_SECONDS = 15.0
# A claim takes its jobs this many at a time, each chunk a statement of its own. On SQLite a statement that
# writes holds the database's one write lock throughout, and every webhook waits: one UPDATE of 2,500 jobs
# held it 16 ms on an idle machine and 20-64 ms beside 1,000 webhooks a second (bench/intake_bench.py's
# slowest answers came in those moments); 250 jobs hold it about 2 ms.
CLAIM_CHUNK = 250
# While jobs wait for a portal that is down, a worker stays and looks this often for the portal's return
# (`statussync.outage` probes it every few seconds): a released backlog is claimed at once.
OUTAGE_POLL_SECONDS = 0.5


def job_request(*, kind: str, entity_id: str, origin: str = "event", event: str = "", wins: str = "") -> Job:
    """Ask for `kind` `entity_id` to be synced; coalesces into the pending job for it, if there is one.
    `wins` ("cms" or "crm") is a manager's forced decision: that side's value wins (it joins a pending job
    too, the latest choice counting)."""
    job_id = job_request_id(kind=kind, entity_id=entity_id, origin=origin, event=event, wins=wins)
    return Job.objects.get(id=job_id)


def job_request_id(
    *, kind: str, entity_id: str, origin: str = "event", event: str = "", wins: str = ""
) -> int:
    """`job_request` in one statement, for the webhook's hot path: returns the pending job's id only."""
    upsert = job_upsert(kind=kind, entity_id=entity_id, origin=origin, event=event, wins=wins)
    job_id = upserts_run([upsert])[0]
    job_requested(kind=kind)
    return job_id


def job_upsert(
    *, kind: str, entity_id: str, origin: str = "event", event: str = "", wins: str = ""
) -> Upsert:
    """The statement of `job_request_id`, for a caller that sends it with another (`events.event_receive`);
    the caller then calls `job_requested`.

    One INSERT ... ON CONFLICT against the partial unique index of pending jobs, rather than update, select
    and insert with a retry: no race to lose between the update and the insert, and one round trip (the
    intake profile in docs/benchmarks.md). SQLite (3.24+) and PostgreSQL both take a conflict target with
    the partial index's WHERE (https://www.sqlite.org/lang_upsert.html,
    https://www.postgresql.org/docs/current/sql-insert.html#SQL-ON-CONFLICT).
    """
    now = timezone.now()
    row = {
        "kind": kind,
        "entity_id": entity_id,
        "queue": _queue_of(kind),
        "state": JobState.PENDING,
        "origin": origin,
        "event": event,
        "events_coalesced": 1,
        "attempts": 0,
        "not_before": now,
        "claim_token": "",
        "last_error": "",
        "wins": wins,
        "created_at": now,
        "updated_at": now,
    }
    return Upsert(
        model=Job,
        row=row,
        conflict="(kind, entity_id) WHERE state = 'pending'",
        # A manager's choice joins a pending job (the latest counting); an event's empty one keeps it.
        update="events_coalesced = {table}.events_coalesced + 1, updated_at = excluded.updated_at, "
        "wins = CASE WHEN excluded.wins = '' THEN {table}.wins ELSE excluded.wins END",
        returning="id",
    )


def job_requested(*, kind: str) -> None:
    """Once a job of `kind` is requested: wake its queue when the transaction commits."""
    queue = _queue_of(kind)
    # robust: the job is committed by now, so a failing wake-up must not fail the caller (a webhook whose
    # event is stored answers 200 all the same); the sweeper wakes every queue with due work each minute.
    transaction.on_commit(lambda: queue_wake_soon(queue=queue), robust=True)


def _queue_of(kind: str) -> str:
    return Queue.PAYMENTS if kind == JobKind.PAYMENT else Queue.DEFAULT


_wake_lock = threading.Lock()
_wake_last: dict[str, float] = {}
_wake_trailing: dict[str, threading.Timer] = {}
_wake_sending: set[str] = set()  # queues whose wake-up is on its way from a thread of its own
_wake_again: set[str] = set()  # ...and which asked for another one meanwhile


def queue_wake_soon(*, queue: str) -> None:
    """`queue_wake`, coalesced within this process: the first event wakes the queue at once (a lone payment
    never waits), later ones within BXSYNC_WAKE_COALESCE_SECONDS share one trailing wake-up at the
    interval's end. In the web server (BXSYNC_WAKE_FROM_THREAD) the wake-up leaves from a thread of its own:
    a webhook whose event is stored answers at once, even while the cache or the broker does not answer.

    Best effort like `queue_wake`: the jobs are committed already, workers also poll, and the sweeper wakes
    every queue with due work each minute (a process killed with a trailing wake-up pending loses it)."""
    interval = settings.BXSYNC_WAKE_COALESCE_SECONDS
    now = time.monotonic()
    with _wake_lock:
        last = _wake_last.get(queue)
        if last is not None and now - last < interval:
            if queue not in _wake_trailing:
                timer = threading.Timer(interval - (now - last), _queue_wake_trailing, (queue,))
                # Not a daemon: a short-lived process (a management command requesting jobs) waits the
                # fraction of a second for it at exit rather than leave its last jobs to the sweeper.
                timer.daemon = False
                _wake_trailing[queue] = timer
                timer.start()
            return
        _wake_last[queue] = now
        if settings.BXSYNC_WAKE_FROM_THREAD:
            _wake_from_thread(queue)
            return
    if not queue_wake(queue=queue):
        with _wake_lock:  # the next event tries again rather than trust a wake-up that never left
            _wake_last.pop(queue, None)


def _wake_from_thread(queue: str) -> None:
    """Send `queue`'s wake-up from a thread (called holding `_wake_lock`); while one is on its way, however
    long an unreachable Redis keeps it (redis-py's timeouts), the next waits for it: one thread per queue."""
    if queue in _wake_sending:
        _wake_again.add(queue)
        return
    _wake_sending.add(queue)
    threading.Thread(target=_wake_send, args=(queue,), name=f"bxsync-wake-{queue}", daemon=True).start()


def _wake_send(queue: str) -> None:
    try:
        while True:
            sent = queue_wake(queue=queue)
            with _wake_lock:
                if not sent:
                    _wake_last.pop(queue, None)  # the next event tries again
                if queue not in _wake_again:
                    _wake_sending.discard(queue)
                    return
                _wake_again.discard(queue)
    except BaseException:
        with _wake_lock:
            _wake_sending.discard(queue)
        raise
    finally:
        connections.close_all()  # this thread's own connection (the ORM broker, the database cache)


def _wake_busy() -> bool:
    """Whether a wake-up of this process is still on its way (for tests)."""
    with _wake_lock:
        return bool(_wake_sending or _wake_trailing)


def _queue_wake_trailing(queue: str) -> None:
    with _wake_lock:
        _wake_trailing.pop(queue, None)
        _wake_last[queue] = time.monotonic()
        if settings.BXSYNC_WAKE_FROM_THREAD:
            _wake_from_thread(queue)  # one thread per queue, however long the cache keeps it
            return
    try:
        queue_wake(queue=queue)
    finally:
        # This thread's own database connection (the ORM broker's insert, the database cache): it ends here.
        connections.close_all()


def queue_wake(*, queue: str) -> bool:
    """Enqueue one worker run for `queue` unless one is already on its way (a bulk edit of 10,000 deals
    must not become 10,000 broker messages).

    Returns False if the wake-up could not be sent. Never raises: the jobs are in the database already, and
    the sweeper wakes every queue with due work each minute, so a cache or broker that fails now (Redis down,
    "database is locked" on the ORM broker's insert) costs at most that minute. It is logged.
    """
    from django_q.tasks import async_task

    key = _wake_key(queue)
    try:
        if not cache.add(key, 1, timeout=WAKE_FLAG_SECONDS):
            return True
    except Exception as exc:
        # The class name only, here and below: connection errors can name hosts of the cache or broker URL.
        logger.warning("could not wake the %s queue (cache: %s); the sweeper will", queue, type(exc).__name__)
        return False
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
        return False
    return True


def _claimable(*, queue: str, now: datetime) -> Q:
    """The jobs a worker of `queue` may take: due pending ones, and running ones whose worker's lease ran out
    (it died or stalled: fencing keeps whatever it still does from counting)."""
    mine = Q(queue=queue)
    if queue == Queue.DEFAULT:
        # Payment jobs left waiting mean the payments worker is down or stuck: the default workers take them
        # over rather than let a payment wait for an operator.
        mine |= Q(queue=Queue.PAYMENTS, not_before__lte=now - timedelta(seconds=PAYMENT_TAKEOVER_SECONDS))
    due = Q(state=JobState.PENDING, not_before__lte=now) | Q(state=JobState.RUNNING, lease_until__lt=now)
    # Jobs that failed on a portal still down wait for it, whatever their backoff says: no storm of retries.
    return mine & due & ~Q(waiting_for_portal__in=portals_down())


def portals_down() -> QuerySet[PortalHealth, Mapping[str, object]]:
    """The portals failing for a reason other than their credentials (a subquery of their names): jobs that
    failed on one of them wait until a call to it succeeds."""
    return PortalHealth.objects.filter(failing_since__isnull=False, auth_failed=False).values("portal")


def jobs_release_waiting(*, portal: str) -> int:
    """The portal answers again: every job waiting for it is due now, and the workers are woken.
    Returns how many were released."""
    now = timezone.now()
    waiting = Job.objects.filter(state=JobState.PENDING, waiting_for_portal=portal)
    queues = set(waiting.values_list("queue", flat=True).distinct())
    released = waiting.update(not_before=now, waiting_for_portal="", updated_at=now)
    for queue in sorted(queues):
        transaction.on_commit(partial(queue_wake, queue=queue), robust=True)
    return released


def jobs_claim(*, queue: str, limit: int) -> list[Job]:
    """Take up to `limit` claimable jobs of `queue` for this worker (compare-and-set, no row locks, so it
    works the same on SQLite and PostgreSQL). Each claim gets a new token; every later update of the job
    checks it, so a worker whose claim was taken over changes nothing. The jobs are taken CLAIM_CHUNK at a
    time, each chunk compare-and-set on its own: a job another worker took between two chunks is its."""
    now = timezone.now()
    claimable = _claimable(queue=queue, now=now)
    ids = list(
        Job.objects.filter(claimable).order_by("not_before", "id").values_list("id", flat=True)[:limit]
    )
    if not ids:
        return []
    token = uuid.uuid4().hex
    lease = now + timedelta(seconds=settings.BXSYNC_JOB_LEASE_SECONDS)
    # In chunks, each a statement of its own: on SQLite, webhooks wait while any statement writes.
    for start in range(0, len(ids), CLAIM_CHUNK):
        Job.objects.filter(claimable, id__in=ids[start : start + CLAIM_CHUNK]).update(
            state=JobState.RUNNING,
            claim_token=token,
            lease_until=lease,
            attempts=F("attempts") + 1,
            waiting_for_portal="",
            updated_at=now,
        )
    return list(Job.objects.filter(claim_token=token, state=JobState.RUNNING).order_by("id"))


def jobs_finish(*, jobs: list[Job]) -> None:
    """Mark jobs done — those still held by the claim that took them."""
    now = timezone.now()
    # One statement: the recording of a run's items finishes a chunk's jobs at once.
    _held(*jobs).update(state=JobState.DONE, finished_at=now, lease_until=None, updated_at=now)


def _held(*jobs: Job) -> QuerySet[Job]:
    """The jobs that the claims which handed them to us still hold (fencing): one condition per claim, and
    a run's jobs come from one or two."""
    claims: dict[str, list[int]] = {}
    for job in jobs:
        claims.setdefault(job.claim_token, []).append(job.id)
    if not claims:
        return Job.objects.none()
    held = Q()
    for token, ids in claims.items():
        held |= Q(id__in=ids, claim_token=token)
    return Job.objects.filter(held, state=JobState.RUNNING)


def job_retry(
    *,
    job: Job,
    error: str,
    delay: float | None = None,
    final: bool = False,
    count_attempts: bool = True,
    waiting_for: str = "",
) -> str:
    """Put a failed job back with exponential backoff and jitter, or into the dead-letter list: at once when
    `final` (an error retrying cannot cure), after BXSYNC_JOB_MAX_ATTEMPTS when `count_attempts`, and in any
    case once the job is older than BXSYNC_JOB_GIVE_UP_HOURS. `waiting_for` names the portal the job failed
    on because it is down: the job waits for it (see `jobs_release_waiting`). Returns the new state."""
    now = timezone.now()
    too_old = job.created_at is not None and now - job.created_at > timedelta(
        hours=settings.BXSYNC_JOB_GIVE_UP_HOURS
    )
    if final or too_old or (count_attempts and job.attempts >= settings.BXSYNC_JOB_MAX_ATTEMPTS):
        _held(job).update(
            state=JobState.DEAD, last_error=error[:2000], lease_until=None, finished_at=now, updated_at=now
        )
        return JobState.DEAD
    if delay is None:
        delay = retry_delay(attempt=job.attempts)
    pending = Job.objects.filter(kind=job.kind, entity_id=job.entity_id, state=JobState.PENDING)
    if pending.exists():
        # A newer event already queued this entity again; that job will re-read it (and carries a manager's
        # choice of the winning side on, unless it has one of its own).
        if job.wins:
            pending.filter(wins="").update(wins=job.wins)
        _held(job).update(
            state=JobState.DONE, last_error=f"superseded; {error}"[:2000], finished_at=now, updated_at=now
        )
        return JobState.DONE
    try:
        with transaction.atomic():
            _held(job).update(
                state=JobState.PENDING,
                not_before=now + timedelta(seconds=delay),
                last_error=error[:2000],
                lease_until=None,
                claim_token="",
                waiting_for_portal=waiting_for,
                updated_at=now,
            )
    except IntegrityError:
        _held(job).update(state=JobState.DONE, finished_at=now, updated_at=now)
        return JobState.DONE
    return JobState.PENDING


def jobs_fail(*, jobs: list[Job], error: BaseException) -> list[str]:
    """The failure policy, in one place.

    - The portal busy, slow or down (a transient Bitrix error): retry with backoff for as long as
      BXSYNC_JOB_GIVE_UP_HOURS, however many attempts that takes — an outage of an hour must not fill the
      dead-letter list. A portal down (no answer, a 5xx): the job also waits for the portal, and is released
      the moment it answers again, whatever its backoff.
    - The portal refusing our credentials: hold — the longest backoff, so no storm while health is red.
    - The portal refusing this request for good (a permanent Bitrix error): the dead-letter list at once.
    - Anything else (a database hiccup, a bug): retry with backoff, then the dead-letter list after
      BXSYNC_JOB_MAX_ATTEMPTS.

    Returns each job's new state."""
    message = error_text(error)
    if isinstance(error, AuthError):
        return [
            job_retry(job=job, error=message, delay=settings.BXSYNC_RETRY_MAX_SECONDS, count_attempts=False)
            for job in jobs
        ]
    if isinstance(error, TransientError):
        # A method held by its operating-time limit until a known time, or a Retry-After: wait that long, not
        # a backoff step that would come back too early or needlessly late [docs/bitrix.md "Limits"].
        hint = error.retry_after if isinstance(error, OperatingLimitError) or error.http_status else None
        delay = min(hint, settings.BXSYNC_RETRY_MAX_SECONDS) if hint and hint > 0 else None
        # A portal that is down: the job waits for it to answer again, not for its own backoff.
        waiting_for = error.portal if portal_unreachable(error) else ""
        return [
            job_retry(job=job, error=message, delay=delay, count_attempts=False, waiting_for=waiting_for)
            for job in jobs
        ]
    if isinstance(error, BitrixError):
        return [job_retry(job=job, error=message, final=True) for job in jobs]
    return [job_retry(job=job, error=message) for job in jobs]


def error_text(error: BaseException) -> str:
    """An error as the audit and the dead-letter list show it (Bitrix errors are already redacted)."""
    return str(error) if isinstance(error, BitrixError) else f"{type(error).__name__}: {str(error)[:500]}"


def job_release(*, job: Job, delay: float = 1.0) -> None:
    """Give a claimed job back without counting an attempt (its order is held by another worker's run)."""
    job.attempts = max(job.attempts - 1, 0)
    _held(job).update(attempts=job.attempts)
    job_retry(job=job, error="order busy in another worker", delay=delay, count_attempts=False)


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
        job_request(kind=job.kind, entity_id=job.entity_id, origin="admin", event=job.event, wins=job.wins)
        Job.objects.filter(id=job.id).update(
            state=JobState.DONE, last_error=f"replayed; {job.last_error}"[:2000]
        )
        replayed += 1
    return replayed


def jobs_discard(*, job_ids: list[int], user: str) -> int:
    """Give up dead-letter jobs (a manager's "discard"): they stay in the table, marked discarded, and the
    audit says who gave up which work and what its error was. Returns how many were discarded."""
    now = timezone.now()
    discarded = 0
    for job in Job.objects.filter(id__in=job_ids, state=JobState.DEAD):
        if not Job.objects.filter(id=job.id, state=JobState.DEAD).update(
            state=JobState.DISCARDED, updated_at=now
        ):
            continue  # replayed or discarded by someone else meanwhile
        order_id = job.entity_id if job.kind == JobKind.ORDER else ""
        deal_id = job.entity_id if job.kind == JobKind.DEAL else ""
        link = None
        if order_id or deal_id:
            link = Link.objects.filter(
                state=LinkState.ACTIVE, **({"order_id": order_id} if order_id else {"deal_id": deal_id})
            ).first()
        reason = why(
            "job_discarded", user=user, kind=job.kind, entity=job.entity_id, error=job.last_error[:300]
        )
        AuditEntry.objects.create(
            side=Side.CRM if job.kind == JobKind.DEAL else Side.CMS,
            event=job.event[:64],
            order_id=link.order_id if link else order_id,
            deal_id=link.deal_id if link else deal_id,
            link=link,
            outcome=Outcome.IGNORED,
            message=str(reason),
            reason=reason.as_json(),
            origin="admin",
        )
        discarded += 1
    return discarded


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
    task takes over. While jobs wait for a portal that is down, stay, probe it and take them the moment it
    answers. Returns how many jobs were handled."""
    from statussync.outage import outage_hold  # it records the portals' health, which releases our jobs

    cache.delete(_wake_key(queue))  # from here on, a new event wakes another run rather than relying on us
    started = time.monotonic()
    handled = 0
    while True:
        if max_seconds is not None and time.monotonic() - started >= max_seconds:
            queue_wake(queue=queue)  # a successor, unless an event already woke one
            break
        if BATCH_WINDOW_SECONDS.get(queue):
            jobs = _gathered_claim(queue=queue)
        else:
            jobs = jobs_claim(queue=queue, limit=settings.BXSYNC_JOB_BATCH)  # payments never wait
        if jobs:
            handle(jobs)
            handled += len(jobs)
            continue
        if outage_hold():
            time.sleep(OUTAGE_POLL_SECONDS)
            continue
        next_due = _next_due(queue=queue)
        if next_due is None:
            break
        wait = (next_due - timezone.now()).total_seconds()
        if wait > HOLD_SECONDS:
            break
        time.sleep(max(wait, 0.05))
    return handled


def _gathered_claim(*, queue: str) -> list[Job]:
    """Claim a run of a queue with a batch window once its jobs have gathered (see BATCH_WINDOW_SECONDS)."""
    with _gathering(queue=queue):
        streak = _streak(queue=queue)
        ended = _batch_window(queue=queue, streak=streak)
        _streak_set(queue=queue, streak=streak + 1 if ended in ("max", "full") else 0)
        return jobs_claim(queue=queue, limit=settings.BXSYNC_JOB_BATCH)


def _next_due(*, queue: str) -> datetime | None:
    """When the next job a worker of `queue` may take comes due (payments it would take over included)."""
    now = timezone.now()
    pending = Job.objects.filter(state=JobState.PENDING)
    next_due = pending.filter(queue=queue).aggregate(t=Min("not_before"))["t"]
    if queue == Queue.DEFAULT:
        waiting = pending.filter(queue=Queue.PAYMENTS).aggregate(t=Min("not_before"))["t"]
        if waiting is not None:
            takeover = waiting + timedelta(seconds=PAYMENT_TAKEOVER_SECONDS)
            next_due = takeover if next_due is None else min(next_due, takeover)
    running = Job.objects.filter(state=JobState.RUNNING, queue=queue).aggregate(t=Min("lease_until"))["t"]
    if running is not None and running < now:
        next_due = now
    return next_due


def _batch_window(*, queue: str, streak: int = 0) -> str:
    """Wait (briefly) for a run to fill up while jobs keep coming due (see BATCH_WINDOW_SECONDS); `streak`
    runs in a row were started by a stream's longest wait. Returns why the wait ended: "full", "quiet", "max",
    or "none" (no window, nothing due)."""
    window = BATCH_WINDOW_SECONDS.get(queue)
    if not window:
        return "none"
    batch = settings.BXSYNC_JOB_BATCH
    stream = min(window["max"] * 2 ** min(streak, 16), window["stream"])
    longest = max(stream, window["max"] + _room_seconds(cap=window["room"]))
    while True:
        now = timezone.now()
        due = Job.objects.filter(queue=queue, state=JobState.PENDING, not_before__lte=now)
        if due[batch - 1 : batch].exists():
            return "full"
        times = due.aggregate(oldest=Min("created_at"), newest=Max("updated_at"))
        if times["oldest"] is None:
            return "none"
        waited = (now - times["oldest"]).total_seconds()
        quiet = (now - times["newest"]).total_seconds()
        unsettled = window["settle"] - waited if not due[HANDFUL_JOBS - 1 : HANDFUL_JOBS].exists() else 0.0
        # A pause while another run of ours records its items is that run's doing (the webhooks wait for the
        # database meanwhile, on SQLite for its one writer), not the burst's end.
        paused = quiet >= window["quiet"] and unsettled <= 0
        if paused and not _run_going_on(queue=queue, now=now):
            return "quiet"
        if waited >= longest:
            return "max"
        wake = window["quiet"] if paused else max(window["quiet"] - quiet, unsettled)
        time.sleep(min(wake, longest - waited, window["quiet"]) + 0.01)


def _run_going_on(*, queue: str, now: datetime) -> bool:
    """Whether another worker's run of `queue` holds jobs (a live claim, not one whose worker died)."""
    return Job.objects.filter(queue=queue, state=JobState.RUNNING, lease_until__gte=now).exists()


def _room_seconds(*, cap: float) -> float:
    """How long until the fuller of the two portals' shared buckets has room for a run's read (0 when it has,
    or when unknown): ordinary work fills a bucket only up to bxsync's share less the payments' reserve."""
    try:
        levels = [limiter_level(portal) or 0.0 for portal in ("cms", "crm")]
    except Exception as exc:  # the limiter's store is down: the run's own calls will say so
        logger.warning("could not read the rate-limit level: %s", type(exc).__name__)
        return 0.0
    rate, burst = bucket_share()
    room = burst - priority_reserve() - 1  # the level at which one more request still fits
    return min(max(max(levels) - room, 0.0) / rate, cap)


# A gatherer holds its flag at most this long: longer than any window ("max" + "room"), so a live one keeps
# it, and a worker killed while gathering holds up the others no longer than that (a restart clears it).
GATHER_FLAG_SECONDS = 30
GATHER_POLL_SECONDS = 0.1


@contextlib.contextmanager
def _gathering(*, queue: str) -> Iterator[None]:
    """Let one worker of `queue` at a time gather and claim its next run; the others wait until it has
    claimed, then the next gathers the jobs that came due since. Best effort: a cache that fails lets
    workers gather side by side, as each of them would alone."""
    key, token = _gathering_key(queue), uuid.uuid4().hex
    try:
        while not cache.add(key, token, timeout=GATHER_FLAG_SECONDS):
            time.sleep(GATHER_POLL_SECONDS)
    except Exception as exc:
        logger.warning("could not take the %s queue's gathering flag: %s", queue, type(exc).__name__)
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            if cache.get(key) == token:  # not a successor's, should ours have expired
                cache.delete(key)


def _streak(*, queue: str) -> int:
    """Runs in a row that a stream of events started by its longest wait, whichever worker ran them."""
    try:
        return int(cache.get(_streak_key(queue), 0))
    except Exception:
        return 0


def _streak_set(*, queue: str, streak: int) -> None:
    # Expires: a streak is a stream's, and a stream that nobody gathered for that long is over.
    with contextlib.suppress(Exception):
        cache.set(_streak_key(queue), streak, timeout=GATHER_FLAG_SECONDS)


def _gathering_key(queue: str) -> str:
    return f"bxsync:gathering:{queue}"


def _streak_key(queue: str) -> str:
    return f"bxsync:streak:{queue}"


def _wake_key(queue: str) -> str:
    return f"bxsync:wake:{queue}"


def queue_wake_flags_clear() -> None:
    """Forget every queue's wake-up and gathering flag: after a crash one may stand for a wake-up that died
    with a worker (the Redis broker hands a message out once), and would keep events from waking the queue
    meanwhile; or for a gatherer that died, and would keep the others waiting for it."""
    cache.delete_many([key(queue) for queue in Queue.values for key in (_wake_key, _gathering_key)])


def jobs_sweep() -> dict[str, int]:
    """Recover jobs of dead workers, then wake every queue that has due work."""
    recovered = jobs_recover()
    woken = 0
    due = (
        Job.objects.filter(state=JobState.PENDING, not_before__lte=timezone.now())
        .values_list("queue", flat=True)
        .distinct()
    )
    queues = set(due)
    takeover = timezone.now() - timedelta(seconds=PAYMENT_TAKEOVER_SECONDS)
    if Job.objects.filter(queue=Queue.PAYMENTS, state=JobState.PENDING, not_before__lte=takeover).exists():
        # Payments waiting this long have no live payments worker: wake the default workers, which take
        # them over whether or not they have work of their own.
        queues.add(Queue.DEFAULT)
    for queue in sorted(queues):
        # Clear a stale flag first: a wake message can be lost (the Redis broker has no receipts).
        cache.delete(_wake_key(queue))
        queue_wake(queue=queue)
        woken += 1
    return {"recovered": recovered, "queues_woken": woken}

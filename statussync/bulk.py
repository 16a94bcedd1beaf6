"""Admin actions on thousands of links or dead letters, worked through in the background.

A request that touched 10,000 links in one transaction would hold the database — on SQLite, every webhook's
write — for as long as it took. Above `INLINE_LIMIT` links the admin records a `BulkOperation` instead, and
a django-q2 task works through it `CHUNK` links at a time, each chunk its own short transaction that also
moves the progress the manager watches. A task that stops (its time is up, its worker died) leaves the
operation where it got to; the next task, or the sweeper, resumes it there. One task at a time: it holds the
operation with a lease its heartbeat renews, as a run holds its jobs (statussync/leases.py). A replay or
discard of dead letters runs the same way, its job ids in the operation's `link_ids`.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from statussync.jobs import jobs_discard, jobs_replay
from statussync.leases import heartbeat
from statussync.links import links_act
from statussync.models import BulkAction, BulkOperation, BulkState

logger = logging.getLogger(__name__)

# At most this many links are handled within the admin's own request; more go to the background.
INLINE_LIMIT = 100
# Links per transaction in the background: a few hundred small inserts, well under a second on SQLite.
CHUNK = 200
# An operation no task has claimed for this long lost its wake-up (a crash, a broker that failed); one whose
# task died is known by its lease.
STALLED_SECONDS = 30


def bulk_operation_start(*, action: str, link_ids: list[int], user) -> BulkOperation:
    """Record a background operation on `link_ids` and start its task once the caller's transaction
    commits."""
    operation = BulkOperation.objects.create(
        action=action, link_ids=list(link_ids), total=len(link_ids), created_by=user
    )
    transaction.on_commit(lambda: bulk_operation_enqueue(operation_id=operation.id), robust=True)
    return operation


def bulk_operation_enqueue(*, operation_id: int) -> None:
    """Hand the operation to a worker. A broker that fails now is logged; the sweeper tries again."""
    from django_q.tasks import async_task

    try:
        async_task("statussync.tasks.bulk_run", operation_id, task_name=f"bulk-{operation_id}")
    except Exception as exc:
        logger.warning("could not start background operation %s (%s); the sweeper will", operation_id, exc)


def bulk_operation_run(*, operation_id: int, max_seconds: float | None = None) -> BulkOperation:
    """Work through the operation a chunk at a time from where it stands; after `max_seconds` hand the rest
    to a fresh task. Returns the operation as it stands then.

    The task claims the operation like a job: another task (the sweeper's, the admin's) finds it held and
    returns at once; the heartbeat keeps the claim while this one works; a chunk is kept only while the claim
    still holds, so a task that stalled past its lease and lost the operation stops there."""
    started = time.monotonic()
    token = uuid.uuid4().hex
    if not _claim(operation_id=operation_id, token=token):
        return BulkOperation.objects.get(id=operation_id)
    operation = BulkOperation.objects.select_related("created_by").get(id=operation_id)
    with heartbeat(renew=lambda: _renew(operation_id, token), what=f"background operation {operation_id}"):
        _chunks_work(operation, token=token, started=started, max_seconds=max_seconds)
    operation.refresh_from_db()
    return operation


def _claim(*, operation_id: int, token: str) -> bool:
    now = timezone.now()
    return bool(
        BulkOperation.objects.filter(id=operation_id, state__in=[BulkState.QUEUED, BulkState.RUNNING])
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(
            state=BulkState.RUNNING,
            claim_token=token,
            lease_until=now + timedelta(seconds=settings.BXSYNC_JOB_LEASE_SECONDS),
            started_at=Coalesce(F("started_at"), now),
            updated_at=now,
        )
    )


def _held(operation_id: int, token: str) -> QuerySet[BulkOperation]:
    """The operation, if this task's claim still holds it (fencing)."""
    return BulkOperation.objects.filter(id=operation_id, claim_token=token, lease_until__gte=timezone.now())


def _renew(operation_id: int, token: str) -> None:
    lease = timedelta(seconds=settings.BXSYNC_JOB_LEASE_SECONDS)
    _held(operation_id, token).update(lease_until=timezone.now() + lease)


def _chunks_work(operation: BulkOperation, *, token: str, started: float, max_seconds: float | None) -> None:
    user = operation.created_by.get_username() if operation.created_by else ""
    lease = timedelta(seconds=settings.BXSYNC_JOB_LEASE_SECONDS)
    position = operation.done + operation.skipped
    try:
        while position < operation.total:
            if max_seconds is not None and time.monotonic() - started >= max_seconds:
                _held(operation.id, token).update(claim_token="", lease_until=None)
                bulk_operation_enqueue(operation_id=operation.id)
                return
            chunk = operation.link_ids[position : position + CHUNK]
            with transaction.atomic():
                # The claim first: on PostgreSQL this row stays locked until the chunk commits, so no task
                # takes the operation over meanwhile; a claim already gone keeps nothing of this chunk.
                if not _held(operation.id, token).update(lease_until=timezone.now() + lease):
                    logger.warning("background operation %s was taken over; this task stops", operation.id)
                    return
                done = _chunk_act(action=operation.action, ids=chunk, user=user)
                BulkOperation.objects.filter(id=operation.id).update(
                    done=F("done") + done,
                    skipped=F("skipped") + len(chunk) - done,
                    updated_at=timezone.now(),
                )
            position += len(chunk)
        _held(operation.id, token).update(
            state=BulkState.DONE, finished_at=timezone.now(), updated_at=timezone.now(), lease_until=None
        )
    except Exception as exc:
        # The chunks done so far stand (each committed); the manager sees where it stopped and why.
        logger.exception("background operation %s failed", operation.id)
        _held(operation.id, token).update(
            state=BulkState.FAILED,
            last_error=f"{type(exc).__name__}: {str(exc)[:500]}",
            finished_at=timezone.now(),
            updated_at=timezone.now(),
            lease_until=None,
        )


def _chunk_act(*, action: str, ids: list[int], user: str) -> int:
    """Apply the operation's action to one chunk; returns how many it acted on (the rest were closed links,
    or dead letters replayed or discarded by someone else meanwhile)."""
    if action == BulkAction.REPLAY:
        return jobs_replay(job_ids=ids)
    if action == BulkAction.DISCARD:
        return jobs_discard(job_ids=ids, user=user)
    return links_act(action=action, link_ids=ids, user=user).done


def bulk_operations_resume() -> int:
    """Start again the operations whose task died (its lease ran out) or never ran (queued with no progress
    for a while: a wake-up lost in a crash). Returns how many. A second task for an operation whose first one
    is only queued behind busy workers costs nothing: one of them claims it, the other returns."""
    now = timezone.now()
    died = Q(state=BulkState.RUNNING, lease_until__lt=now)
    unclaimed = Q(lease_until__isnull=True, updated_at__lt=now - timedelta(seconds=STALLED_SECONDS))
    ids = list(
        BulkOperation.objects.filter(state__in=[BulkState.QUEUED, BulkState.RUNNING])
        .filter(died | unclaimed)
        .values_list("id", flat=True)
    )
    for operation_id in ids:
        BulkOperation.objects.filter(id=operation_id).update(updated_at=timezone.now())
        bulk_operation_enqueue(operation_id=operation_id)
    return len(ids)

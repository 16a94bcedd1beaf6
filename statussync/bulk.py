"""Admin actions on thousands of links or dead letters, worked through in the background.

A request that touched 10,000 links in one transaction would hold the database — on SQLite, every webhook's
write — for as long as it took. Above `INLINE_LIMIT` links the admin records a `BulkOperation` instead, and
a django-q2 task works through it `CHUNK` links at a time, each chunk its own short transaction that also
moves the progress the manager watches. A task that stops (its time is up, its worker died) leaves the
operation where it got to; the next task, or the sweeper, resumes it there. A replay or discard of dead
letters runs the same way, its job ids in the operation's `link_ids`.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from statussync.jobs import jobs_discard, jobs_replay
from statussync.links import links_act
from statussync.models import BulkAction, BulkOperation, BulkState

logger = logging.getLogger(__name__)

# At most this many links are handled within the admin's own request; more go to the background.
INLINE_LIMIT = 100
# Links per transaction in the background: a few hundred small inserts, well under a second on SQLite.
CHUNK = 200
# An operation without progress for this long lost its task (a worker died, a wake-up never left).
STALLED_SECONDS = 120


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
    to a fresh task. Returns the operation as it stands then."""
    started = time.monotonic()
    operation = BulkOperation.objects.select_related("created_by").get(id=operation_id)
    if operation.state in (BulkState.DONE, BulkState.FAILED):
        return operation
    user = operation.created_by.get_username() if operation.created_by else ""
    now = timezone.now()
    BulkOperation.objects.filter(id=operation.id).update(
        state=BulkState.RUNNING, started_at=operation.started_at or now, updated_at=now
    )
    position = operation.done + operation.skipped
    try:
        while position < operation.total:
            if max_seconds is not None and time.monotonic() - started >= max_seconds:
                bulk_operation_enqueue(operation_id=operation.id)
                break
            chunk = operation.link_ids[position : position + CHUNK]
            with transaction.atomic():
                done = _chunk_act(action=operation.action, ids=chunk, user=user)
                BulkOperation.objects.filter(id=operation.id).update(
                    done=F("done") + done,
                    skipped=F("skipped") + len(chunk) - done,
                    updated_at=timezone.now(),
                )
            position += len(chunk)
        else:
            BulkOperation.objects.filter(id=operation.id).update(
                state=BulkState.DONE, finished_at=timezone.now(), updated_at=timezone.now()
            )
    except Exception as exc:
        # The chunks done so far stand (each committed); the manager sees where it stopped and why.
        logger.exception("background operation %s failed", operation.id)
        BulkOperation.objects.filter(id=operation.id).update(
            state=BulkState.FAILED,
            last_error=f"{type(exc).__name__}: {str(exc)[:500]}",
            finished_at=timezone.now(),
            updated_at=timezone.now(),
        )
    operation.refresh_from_db()
    return operation


def _chunk_act(*, action: str, ids: list[int], user: str) -> int:
    """Apply the operation's action to one chunk; returns how many it acted on (the rest were closed links,
    or dead letters replayed or discarded by someone else meanwhile)."""
    if action == BulkAction.REPLAY:
        return jobs_replay(job_ids=ids)
    if action == BulkAction.DISCARD:
        return jobs_discard(job_ids=ids, user=user)
    return links_act(action=action, link_ids=ids, user=user).done


def bulk_operations_resume() -> int:
    """Start again the operations whose task never ran or died (no progress for a while). Returns how many."""
    stalled = timezone.now() - timedelta(seconds=STALLED_SECONDS)
    ids = list(
        BulkOperation.objects.filter(
            state__in=[BulkState.QUEUED, BulkState.RUNNING], updated_at__lt=stalled
        ).values_list("id", flat=True)
    )
    for operation_id in ids:
        BulkOperation.objects.filter(id=operation_id).update(updated_at=timezone.now())
        bulk_operation_enqueue(operation_id=operation_id)
    return len(ids)

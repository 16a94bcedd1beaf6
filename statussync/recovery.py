"""A restart resumes the work of the instance that died, within a lease, with no manual step.

A process killed outright (kill -9, the OOM killer, a power cut) releases nothing: its jobs stay `running`,
its order locks and background operations stay claimed, and the wake-up it had taken from the broker is gone
(the Redis broker hands a message out once, with no receipt; the wake-up flag in the cache then keeps the next
events from sending another for WAKE_FLAG_SECONDS). Claims come back by themselves once their lease runs out
(the holder's heartbeat stopped), but only the sweeper looks for them, and django-q2's scheduler first looks
30 s after a cluster starts, then once a minute. So `serve`, right after starting the workers, does what the
sweeper would, at once and again as soon as the last claim standing at start-up has run out; and it runs a
reconciliation pass, so the changes made while bxsync was down are found without anyone running `reconcile`
(unless both portals are applications in pull mode: their offline queues kept those changes).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections
from django.db.models import Max
from django.utils import timezone

from statussync.jobs import queue_wake_flags_clear
from statussync.models import (
    BulkOperation,
    ConnectedPortal,
    ConnectionState,
    IntakeMode,
    Job,
    JobState,
    MappingChange,
    Side,
    SyncLock,
)

logger = logging.getLogger(__name__)


def work_resume(*, reconcile: bool = False) -> dict[str, int]:
    """Return work whose holder died to the workers and wake them, as the sweeper does, after clearing the
    wake-up flags a killed worker may have left; with `reconcile`, also queue a reconciliation pass."""
    from django_q.tasks import async_task

    from statussync.tasks import sweep

    queue_wake_flags_clear()
    report = sweep()
    if reconcile:
        async_task("statussync.tasks.reconcile", task_name="reconcile-after-restart")
    return report


def events_kept_while_down() -> bool:
    """Whether both portals kept what changed while bxsync was down: an application in pull mode finds it in
    its offline queue (api-reference/events/offline-events.md), while a webhook's event, or an application's
    pushed one, is sent once, to nobody while bxsync is down."""
    pulled = ConnectedPortal.objects.filter(
        state=ConnectionState.CONNECTED, intake_mode=IntakeMode.PULL
    ).values_list("portal", flat=True)
    return {Side.CMS, Side.CRM} <= set(pulled)


def claims_last_until() -> datetime | None:
    """When the last claim standing now runs out (jobs, order locks, background operations), if any."""
    times = [
        Job.objects.filter(state=JobState.RUNNING).aggregate(t=Max("lease_until"))["t"],
        SyncLock.objects.aggregate(t=Max("until"))["t"],
        BulkOperation.objects.aggregate(t=Max("lease_until"))["t"],
        MappingChange.objects.aggregate(t=Max("resync_lease_until"))["t"],
    ]
    found = [t for t in times if t is not None]
    return max(found) if found else None


def work_resume_after_restart() -> None:
    """Resume at once (and reconcile), then once more when the claims standing at start-up have run out: those
    of a predecessor that died, which no heartbeat renews any more. A live instance beside us keeps renewing
    its own, and the sweep takes only what ran out."""
    try:
        report = work_resume(reconcile=not events_kept_while_down())
        logger.info("resumed after start: %s", report)
        last = claims_last_until()
        if last is None:
            return
        cap = timezone.now() + timedelta(seconds=settings.BXSYNC_JOB_LEASE_SECONDS)
        wait = (min(last, cap) - timezone.now()).total_seconds()
        time.sleep(max(wait, 0) + 0.5)
        logger.info("resumed the claims of a stopped predecessor: %s", work_resume())
    except Exception:
        # The sweeper does the same within a minute or two; a start must not fail for it.
        logger.exception("could not resume the work left at start; the sweeper will")


def work_resume_in_background() -> threading.Thread:
    """Start `work_resume_after_restart` in a thread of its own (serve goes on starting the processes)."""

    def resume() -> None:
        try:
            work_resume_after_restart()
        finally:
            connections.close_all()  # this thread's own connection ends with it

    thread = threading.Thread(target=resume, name="resume after restart", daemon=True)
    thread.start()
    return thread

"""The dashboard's "check again": doctor run by a worker, not inside the web request.

A check reads both portals at the plan's pace (a few dozen calls, tens of seconds at 2 a second), longer than
a request should hold a web worker. The button records a `DoctorReport` in the state "checking" and a
django-q2 task, enqueued once that row is committed, claims it, runs doctor and fills the same row with the
report. The panel shows "checking…" with the time it started until then.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from statussync.models import DoctorReport

from .run import doctor_reports_prune, doctor_run

logger = logging.getLogger(__name__)

CHECKING = "checking"  # a `DoctorReport.verdict` while its check runs (fits max_length=8)
FAILED = "failed"  # its check stopped on an error of bxsync's own (doctor turns the portals' into findings)
# A check no task finished within this is abandoned (its task lost or killed): the panel stops saying
# "checking" and a manager may start another. Doctor at 2 requests a second takes well under a minute.
CHECK_STALE_SECONDS = 300


def doctor_check_running() -> DoctorReport | None:
    """The check running now, if any (started less than `CHECK_STALE_SECONDS` ago, not finished)."""
    latest = doctor_check_latest()
    return latest if latest is not None and doctor_check_is_running(latest) else None


def doctor_check_latest() -> DoctorReport | None:
    """The newest check that is running, abandoned or failed (one query: the dashboard's panel)."""
    return DoctorReport.objects.filter(verdict__in=(CHECKING, FAILED)).order_by("-created_at", "-id").first()


def doctor_check_is_running(check: DoctorReport) -> bool:
    """Whether `check` is still running: "checking", and started less than `CHECK_STALE_SECONDS` ago."""
    since = timezone.now() - timedelta(seconds=CHECK_STALE_SECONDS)
    return check.verdict == CHECKING and check.created_at >= since


def doctor_check_start(*, base_url: str, started_by: str) -> tuple[DoctorReport, bool]:
    """Start a check in the background: (the check, True), or (the one already running, False)."""
    with transaction.atomic():
        running = doctor_check_running()
        if running is not None:
            return running, False
        row = DoctorReport.objects.create(
            verdict=CHECKING, report={"base_url": base_url, "started_by": started_by}
        )
        transaction.on_commit(lambda: doctor_check_enqueue(report_id=row.id), robust=True)
    return row, True


def doctor_check_enqueue(*, report_id: int) -> None:
    """Hand the check to a worker. A broker that fails now is logged: the check is abandoned after
    `CHECK_STALE_SECONDS` and the manager may press again."""
    from django_q.tasks import async_task

    try:
        async_task("statussync.tasks.doctor_check", report_id, task_name=f"doctor-{report_id}")
    except Exception as exc:
        logger.warning("could not start portal check %s (%s)", report_id, type(exc).__name__)


def doctor_check_run(*, report_id: int) -> DoctorReport | None:
    """Claim the check `report_id`, run doctor (read-only) and fill the row with its report. None when the
    check is not there to run (already claimed by another delivery of the task, abandoned, or gone)."""
    token = uuid.uuid4().hex
    claimed = (
        DoctorReport.objects.filter(id=report_id, verdict=CHECKING)
        .exclude(report__has_key="claimed_by")
        .update(report={"claimed_by": token})
    )
    row = DoctorReport.objects.filter(id=report_id).first()
    if not claimed or row is None:
        return None
    base_url = str((row.report or {}).get("base_url", ""))
    try:
        result = doctor_run(base_url=base_url, store=False)
    except Exception as exc:
        logger.exception("portal check %s failed", report_id)
        DoctorReport.objects.filter(id=report_id).update(verdict=FAILED, report={"error": type(exc).__name__})
        raise
    DoctorReport.objects.filter(id=report_id).update(verdict=result.verdict, report=result.as_json())
    doctor_reports_prune()
    row.refresh_from_db()
    return row

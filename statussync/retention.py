"""Retention of the audit log, intake records and finished jobs: old rows are deleted in small chunks."""

from __future__ import annotations

import time
from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from statussync.models import AuditEntry, InboundEvent, Job, JobState

# Rows deleted per statement: each chunk is its own short transaction, so a purge of millions of rows never
# holds the database (on SQLite: every webhook's write) for more than a moment.
PURGE_CHUNK = 500


def records_purge(*, days: float | None = None, max_seconds: float | None = None) -> int:
    """Delete audit entries, inbound events and finished jobs older than `days` (BXSYNC_AUDIT_RETENTION_DAYS),
    a chunk at a time; stop after `max_seconds` and leave the rest to the next run. Dead-letter jobs are kept
    until a manager replays or discards them. Returns how many rows were deleted."""
    cutoff = timezone.now() - timedelta(
        days=days if days is not None else settings.BXSYNC_AUDIT_RETENTION_DAYS
    )
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    deleted = 0
    for old in (
        AuditEntry.objects.filter(created_at__lt=cutoff),
        InboundEvent.objects.filter(received_at__lt=cutoff),
        Job.objects.filter(state=JobState.DONE, updated_at__lt=cutoff),
    ):
        while (chunk := _first_ids(old)) and (deadline is None or time.monotonic() < deadline):
            deleted += old.model.objects.filter(id__in=chunk).delete()[0]
    return deleted


def _first_ids(rows: QuerySet) -> list[int]:
    return list(rows.order_by("id").values_list("id", flat=True)[:PURGE_CHUNK])

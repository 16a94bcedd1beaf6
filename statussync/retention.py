"""Retention of the audit log, intake records and finished jobs."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from statussync.models import AuditEntry, InboundEvent, Job, JobState


def records_purge(*, days: int | None = None) -> int:
    """Delete audit entries, inbound events and finished jobs older than `days`
    (BXSYNC_AUDIT_RETENTION_DAYS). Dead-letter jobs are kept until replayed or deleted by a manager."""
    cutoff = timezone.now() - timedelta(
        days=days if days is not None else settings.BXSYNC_AUDIT_RETENTION_DAYS
    )
    deleted = AuditEntry.objects.filter(created_at__lt=cutoff).delete()[0]
    deleted += InboundEvent.objects.filter(received_at__lt=cutoff).delete()[0]
    deleted += Job.objects.filter(state=JobState.DONE, updated_at__lt=cutoff).delete()[0]
    return deleted

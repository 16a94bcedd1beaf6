"""The recurring work, as django-q2 schedules created idempotently (one row each, however often we start)."""

from __future__ import annotations

from django.conf import settings
from django_q.models import Schedule

SCHEDULES = {
    "bxsync-sweep": ("statussync.tasks.sweep", 1),
    "bxsync-reconcile": ("statussync.tasks.reconcile", None),
    # Hourly, a few minutes at most each time: small chunks, never a long hold on the database.
    "bxsync-audit-purge": ("statussync.tasks.audit_purge", 60),
    # The names of statuses, pipelines and stages change rarely; the admin's button refreshes them at once.
    "bxsync-catalog-refresh": ("statussync.tasks.catalog_refresh", 60),
}


def schedules_ensure() -> None:
    """Create or update bxsync's schedules. Runs on the default cluster (cluster NULL), which always runs."""
    for name, (func, minutes) in SCHEDULES.items():
        Schedule.objects.update_or_create(
            name=name,
            defaults={
                "func": func,
                "schedule_type": Schedule.MINUTES,
                "minutes": minutes or settings.BXSYNC_RECONCILE_MINUTES,
                "repeats": -1,
            },
        )

"""Thin django-q2 entry points: they load nothing themselves and call a service."""

from __future__ import annotations


def jobs_run(queue: str) -> int:
    """Work through the due jobs of `queue` (woken by an event or the sweeper)."""
    from django.conf import settings

    from statussync.jobs import jobs_process
    from statussync.sync import jobs_handle

    return jobs_process(queue=queue, handle=jobs_handle, max_seconds=settings.BXSYNC_WORKER_TASK_SECONDS)


def sweep() -> dict[str, int]:
    """Every minute: recover jobs of dead workers, wake queues whose jobs came due, and resume background
    operations (the admin's bulk actions, a mapping change's resync) whose task never ran or died."""
    from statussync.bulk import bulk_operations_resume
    from statussync.jobs import jobs_sweep
    from statussync.mapping.impact import mapping_resyncs_resume

    report = jobs_sweep()
    report["bulk_resumed"] = bulk_operations_resume()
    report["mapping_resyncs_resumed"] = mapping_resyncs_resume()
    return report


def bulk_run(operation_id: int) -> int:
    """Work through a background operation of the admin (resync, take a side's value, rediscover links)."""
    from django.conf import settings

    from statussync.bulk import bulk_operation_run

    operation = bulk_operation_run(operation_id=operation_id, max_seconds=settings.BXSYNC_WORKER_TASK_SECONDS)
    return operation.done


def doctor_check(report_id: int) -> str:
    """The dashboard's "check again": run doctor in the background and fill its report."""
    from statussync.doctor.background import doctor_check_run

    row = doctor_check_run(report_id=report_id)
    return row.verdict if row is not None else "not run"


def reconcile() -> dict[str, int]:
    """Scheduled reconciliation: queue what changed on either portal since the watermark."""
    from django.conf import settings

    from statussync.reconcile import reconcile_run

    # Within the task timeout; a pass that stops here is resumed by the next one where it stopped.
    return reconcile_run(process_inline=False, max_seconds=settings.BXSYNC_WORKER_TASK_SECONDS).counts()


def audit_purge() -> int:
    """Hourly: drop audit entries, events and finished jobs older than the retention, in small chunks."""
    from django.conf import settings

    from statussync.retention import records_purge

    return records_purge(max_seconds=settings.BXSYNC_WORKER_TASK_SECONDS)


def catalog_refresh() -> dict[str, object]:
    """Hourly: read the names of the shop's statuses and the CRM's pipelines and stages."""
    import statussync.mapping.catalog_refresh  # the service is named like this task: imported by its module

    report = statussync.mapping.catalog_refresh.catalog_refresh()
    return {"statuses": report.statuses, "stages": report.stages, "errors": report.errors}


def mapping_resync(change_id: int) -> int:
    """Queue the resync of the links a mapping change moves, in chunks (the admin's "save and resync")."""
    from django.conf import settings

    from statussync.mapping.impact import mapping_change_resync

    return mapping_change_resync(change_id=change_id, max_seconds=settings.BXSYNC_WORKER_TASK_SECONDS)

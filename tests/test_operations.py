"""Operating bxsync: the sweeper, retention, schedules and the `serve` guard rails."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db.models import QuerySet
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.models import Schedule

from statussync import retention
from statussync.checks import lease_outlasts_the_write_round, rest_timeout_within_the_cloud_cutoff
from statussync.jobs import job_request, jobs_claim, jobs_process, jobs_sweep
from statussync.models import AuditEntry, InboundEvent, Job, JobKind, JobState
from statussync.retention import records_purge
from statussync.schedules import schedules_ensure

pytestmark = pytest.mark.django_db


def wake_ups() -> int:
    """Wake-up messages waiting for the default workers, on either broker (ORM rows or a Redis list)."""
    return get_broker().queue_size()


def test_it_creates_each_schedule_once_however_often_it_starts():
    schedules_ensure()
    schedules_ensure()

    names = sorted(Schedule.objects.values_list("name", flat=True))
    assert names == ["bxsync-audit-purge", "bxsync-catalog-refresh", "bxsync-reconcile", "bxsync-sweep"]
    assert Schedule.objects.get(name="bxsync-reconcile").minutes == 5


def test_it_sweeps_dead_workers_jobs_back_and_wakes_their_queue(django_capture_on_commit_callbacks):
    job = job_request(kind=JobKind.DEAL, entity_id="7")
    Job.objects.filter(id=job.id).update(
        state=JobState.RUNNING, lease_until=timezone.now() - timedelta(seconds=5)
    )

    with django_capture_on_commit_callbacks(execute=True):
        result = jobs_sweep()

    assert result == {"recovered": 1, "queues_woken": 1}
    assert Job.objects.get(id=job.id).state == JobState.PENDING
    assert wake_ups() == 1  # one wake-up message, not one per job


def test_it_wakes_a_queue_once_for_a_burst_of_events(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        for deal_id in range(100):
            job_request(kind=JobKind.DEAL, entity_id=str(deal_id))

    assert wake_ups() == 1


def test_it_purges_records_older_than_the_retention():
    old = timezone.now() - timedelta(days=100)
    AuditEntry.objects.create(outcome="applied")
    stale = AuditEntry.objects.create(outcome="applied")
    AuditEntry.objects.filter(id=stale.id).update(created_at=old)
    event = InboundEvent.objects.create(side="crm", event="ONCRMDEALUPDATE", dedupe_key="k")
    InboundEvent.objects.filter(id=event.id).update(received_at=old)
    dead = job_request(kind=JobKind.DEAL, entity_id="1")
    Job.objects.filter(id=dead.id).update(state=JobState.DEAD, updated_at=old)

    assert records_purge(days=90) == 2

    assert AuditEntry.objects.count() == 1
    assert Job.objects.filter(state=JobState.DEAD).count() == 1  # the dead-letter list waits for a manager


def test_it_purges_in_small_chunks_and_leaves_the_rest_for_the_next_run(monkeypatch):
    monkeypatch.setattr(retention, "PURGE_CHUNK", 10)
    AuditEntry.objects.bulk_create([AuditEntry(outcome="applied") for _ in range(35)])
    AuditEntry.objects.update(created_at=timezone.now() - timedelta(days=100))
    statements = []
    real_delete = QuerySet.delete

    def delete(self):
        statements.append(self.count())
        return real_delete(self)

    monkeypatch.setattr(QuerySet, "delete", delete)

    assert records_purge(days=90, max_seconds=0) == 0  # no time left: nothing, and nothing half-done
    assert records_purge(days=90) == 35
    assert statements == [10, 10, 10, 5]
    assert not AuditEntry.objects.exists()


def test_it_refuses_to_serve_without_a_secret_key(settings, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    settings.DEBUG = False

    with pytest.raises(CommandError, match="SECRET_KEY"):
        call_command("serve")


def test_it_hands_a_long_backlog_over_to_a_fresh_worker_task():
    for deal_id in range(3):
        job_request(kind=JobKind.DEAL, entity_id=str(deal_id))
    handled: list[int] = []

    assert jobs_process(queue="default", handle=lambda jobs: handled.append(len(jobs)), max_seconds=0) == 0

    assert handled == []
    assert Job.objects.filter(state=JobState.PENDING).count() == 3
    assert wake_ups() == 1  # the successor's wake-up


def test_it_lets_the_default_workers_take_over_payments_left_waiting():
    fresh = job_request(kind=JobKind.PAYMENT, entity_id="1001")
    stale = job_request(kind=JobKind.PAYMENT, entity_id="1002")
    Job.objects.filter(id=stale.id).update(not_before=timezone.now() - timedelta(seconds=60))

    claimed = jobs_claim(queue="default", limit=50)

    assert [job.id for job in claimed] == [stale.id]
    assert Job.objects.get(id=fresh.id).state == JobState.PENDING


def test_it_keeps_webhook_urls_off_error_pages(settings):
    from django.views.debug import get_exception_reporter_filter

    settings.BXSYNC_CRM_REST_URL = "https://crm.example.ru/rest/7/verysecretcode/"
    settings.REDIS_URL = "redis://:hunter2@127.0.0.1:6379/0"

    shown = get_exception_reporter_filter(None).get_safe_settings()

    assert "verysecretcode" not in str(shown)
    assert "hunter2" not in str(shown)


def test_it_warns_when_the_lease_could_run_out_with_a_write_in_flight(settings):
    settings.BXSYNC_JOB_LEASE_SECONDS = 10  # two heartbeats: one late renewal and a live run loses its orders

    warnings = lease_outlasts_the_write_round()

    assert [w.id for w in warnings] == ["bxsync.W001"]
    settings.BXSYNC_JOB_LEASE_SECONDS = 20  # the default: a write round of minutes is renewed as it goes
    settings.BXSYNC_RATE_MAX_WAIT = 30
    settings.BXSYNC_REST_TIMEOUT = 20
    assert lease_outlasts_the_write_round() == []


def test_it_warns_of_a_rest_timeout_longer_than_bitrix_cloud_lets_a_request_run(settings):
    # settings/performance/limits.md: "one REST request must finish within 60 seconds" in the cloud.
    settings.BXSYNC_REST_TIMEOUT = 90
    assert [w.id for w in rest_timeout_within_the_cloud_cutoff()] == ["bxsync.W002"]
    settings.BXSYNC_REST_TIMEOUT = 60
    assert rest_timeout_within_the_cloud_cutoff() == []

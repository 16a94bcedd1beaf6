"""A restart after a crash resumes the work its dead predecessor left, within a lease, with no manual step
(statussync/recovery.py; end to end: tests/e2e/test_chaos.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from statussync.jobs import job_request, jobs_claim, queue_wake
from statussync.models import ConnectedPortal, ConnectionState, IntakeMode, Job, JobKind, JobState
from statussync.recovery import events_kept_while_down, work_resume, work_resume_after_restart
from tests.support.broker import queued_tasks

pytestmark = pytest.mark.django_db


def funcs() -> list[str]:
    return [task["func"] for task in queued_tasks()]


def test_it_wakes_the_workers_at_start_despite_the_wake_flag_a_killed_worker_left():
    # The killed worker had taken the wake-up message; its flag outlives it in the cache for 30 s.
    cache.set("bxsync:wake:default", 1, timeout=30)

    work_resume()
    queue_wake(queue="default")  # the first event after the restart

    assert funcs() == ["statussync.tasks.jobs_run"]


def test_it_reconciles_at_start_so_changes_made_while_down_need_no_manual_step():
    work_resume(reconcile=True)

    assert "statussync.tasks.reconcile" in funcs()


def test_it_reconciles_at_start_only_when_a_portals_events_were_sent_to_nobody_while_down():
    # Webhooks (and pushed application events) are sent once; pulled applications keep an offline queue.
    assert not events_kept_while_down()
    for portal in ("cms", "crm"):
        ConnectedPortal.objects.create(
            portal=portal,
            address=f"https://{portal}.example.ru",
            client_id="app",
            client_secret="secret",
            intake_mode=IntakeMode.PULL,
            state=ConnectionState.CONNECTED,
        )
    assert events_kept_while_down()

    ConnectedPortal.objects.filter(portal="crm").update(intake_mode=IntakeMode.PUSH)

    assert not events_kept_while_down()


def test_it_returns_the_jobs_of_its_dead_predecessor_as_soon_as_their_lease_runs_out(settings):
    settings.BXSYNC_JOB_LEASE_SECONDS = 1
    job_request(kind=JobKind.ORDER, entity_id="1")
    [held] = jobs_claim(queue="default", limit=10)  # ... and every process is killed here; no heartbeat
    started = timezone.now()

    work_resume_after_restart()

    job = Job.objects.get(id=held.id)
    assert job.state == JobState.PENDING
    assert timezone.now() - started < timedelta(seconds=3)  # a lease and a beat, not the sweeper's minute
    assert "statussync.tasks.jobs_run" in funcs()

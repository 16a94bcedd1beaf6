"""Requesting work: the one-statement upsert into the pending job of an entity."""

from __future__ import annotations

import pytest

from statussync.jobs import job_request, job_request_id, jobs_claim
from statussync.models import Job, JobKind, JobState

pytestmark = pytest.mark.django_db


def test_it_coalesces_requests_for_one_entity_into_its_pending_job():
    ids = {job_request_id(kind=JobKind.DEAL, entity_id="7", event="ONCRMDEALUPDATE") for _ in range(3)}

    job = Job.objects.get()
    assert ids == {job.id}
    assert (job.events_coalesced, job.event, job.queue, job.state) == (
        3,
        "ONCRMDEALUPDATE",
        "default",
        "pending",
    )


def test_it_puts_payments_on_the_payments_queue():
    assert job_request(kind=JobKind.PAYMENT, entity_id="3").queue == "payments"


def test_it_keeps_a_managers_choice_when_an_event_joins_the_pending_job():
    job_request(kind=JobKind.ORDER, entity_id="5", origin="admin", wins="cms")
    job_request(kind=JobKind.ORDER, entity_id="5")

    assert Job.objects.get().wins == "cms"


def test_it_takes_the_latest_managers_choice():
    job_request(kind=JobKind.ORDER, entity_id="5", origin="admin", wins="cms")
    job_request(kind=JobKind.ORDER, entity_id="5", origin="admin", wins="crm")

    assert Job.objects.get().wins == "crm"


def test_it_queues_a_new_job_when_the_entitys_job_is_already_running():
    job_request(kind=JobKind.DEAL, entity_id="7")
    [running] = jobs_claim(queue="default", limit=10)

    job_request(kind=JobKind.DEAL, entity_id="7")

    assert Job.objects.get(state=JobState.PENDING).id != running.id
    assert Job.objects.count() == 2


def test_it_keeps_entities_of_different_kinds_apart():
    job_request(kind=JobKind.DEAL, entity_id="7")
    job_request(kind=JobKind.ORDER, entity_id="7")

    assert Job.objects.count() == 2


def test_it_claims_a_batch_larger_than_a_chunk_at_once_under_one_token(monkeypatch):
    monkeypatch.setattr("statussync.jobs.CLAIM_CHUNK", 3)
    for entity in range(8):
        job_request(kind=JobKind.DEAL, entity_id=str(entity))

    claimed = jobs_claim(queue="default", limit=7)

    assert len(claimed) == 7
    assert len({job.claim_token for job in claimed}) == 1
    assert Job.objects.filter(state=JobState.RUNNING).count() == 7
    assert Job.objects.filter(state=JobState.PENDING).count() == 1

"""GET /metrics: who may read it, the intake's counters, and the queue and reconcile gauges."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from statussync.jobs import job_request
from statussync.models import Job, JobKind, JobState, Watermark
from tests.support.scrape import scrape, value
from tests.support.webhooks import CMS_URL, CRM_TOKEN, CRM_URL, event_body

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("portals")]
FORM = "application/x-www-form-urlencoded"


def post(client, side: str, body: bytes):
    return client.post(f"/api/bitrix/{side}/", data=body, content_type=FORM)


# --- who may read it ---


@pytest.fixture(autouse=True)
def bound_to_loopback(settings):
    """The test client's requests come from 127.0.0.1, as a Prometheus beside a server bound to loopback."""
    settings.BXSYNC_METRICS_LOOPBACK = True


def test_it_refuses_every_scraper_without_the_token_unless_bound_to_loopback(client, settings):
    settings.BXSYNC_METRICS_LOOPBACK = False

    # nginx on this host forwards from 127.0.0.1 and, by default, adds no X-Forwarded-For.
    assert client.get("/metrics").status_code == 403


def test_it_answers_a_scraper_on_this_host_when_bound_to_loopback_and_no_token_is_set(client):
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert b"bxsync_queue_jobs" in response.content


def test_it_refuses_a_scraper_from_elsewhere_when_no_token_is_set(client):
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403


def test_it_refuses_a_request_a_local_proxy_forwarded_when_no_token_is_set(client):
    # A TLS proxy on this host makes every client's connection come from 127.0.0.1.
    response = client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9")

    assert response.status_code == 403


def test_it_answers_any_scraper_with_the_token(client, settings):
    settings.BXSYNC_METRICS_TOKEN = "scrape-token-0123456789"

    allowed = client.get(
        "/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer scrape-token-0123456789"
    )
    wrong = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer guessed")
    local_without = client.get("/metrics")

    assert allowed.status_code == 200
    assert wrong.status_code == 403
    assert local_without.status_code == 403  # with a token set, the token is the only way in


def test_it_refuses_to_change_anything(client):
    assert client.post("/metrics").status_code == 405


def test_it_never_shows_a_token_or_a_webhook_url(client):
    post(client, "crm", event_body("crm_deal_update"))

    body = client.get("/metrics").content.decode()

    for secret in (CRM_TOKEN, CRM_URL, CMS_URL, "crmsecretcode456", "cmssecretcode123"):
        assert secret not in body


# --- the intake ---


def test_it_counts_events_received_by_portal_event_and_what_became_of_them(client):
    before = scrape(client)
    post(client, "crm", event_body("crm_deal_update"))
    post(client, "crm", event_body("crm_deal_update"))  # Bitrix delivering it twice
    after = scrape(client)

    def delta(status: str) -> float:
        labels = {"portal": "crm", "event": "ONCRMDEALUPDATE", "status": status}
        name = "bxsync_events_received_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("stored") == 1
    assert delta("duplicate") == 1


def test_it_counts_an_event_it_does_not_know_under_other(client):
    body = event_body("crm_deal_update").replace(b"ONCRMDEALUPDATE", b"ONCRMLEADADD")
    before = scrape(client)
    post(client, "crm", body)
    after = scrape(client)

    labels = {"portal": "crm", "event": "other", "status": "ignored"}
    name = "bxsync_events_received_total"
    assert value(after, name, **labels) - value(before, name, **labels) == 1


def test_it_counts_events_it_could_not_store(client, monkeypatch):
    def locked(**kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr("statussync.api.apis.event_receive", locked)
    before = scrape(client)
    response = post(client, "cms", event_body("cms_order_saved"))
    after = scrape(client)

    assert response.status_code == 503
    name = "bxsync_events_unstored_total"
    assert value(after, name, portal="cms") - value(before, name, portal="cms") == 1


# --- the queues and reconciliation, from the database ---


def test_it_shows_each_queues_depth_and_the_age_of_its_oldest_due_job(client):
    job_request(kind=JobKind.DEAL, entity_id="1")
    job_request(kind=JobKind.DEAL, entity_id="2")
    job_request(kind=JobKind.PAYMENT, entity_id="3")
    Job.objects.filter(entity_id="1").update(created_at=timezone.now() - timedelta(seconds=90))
    Job.objects.filter(entity_id="2").update(state=JobState.RUNNING)

    samples = scrape(client)

    assert value(samples, "bxsync_queue_jobs", queue="default", state="pending") == 1
    assert value(samples, "bxsync_queue_jobs", queue="default", state="running") == 1
    assert value(samples, "bxsync_queue_jobs", queue="payments", state="pending") == 1
    assert 90 <= value(samples, "bxsync_queue_oldest_age_seconds", queue="default") < 120
    assert value(samples, "bxsync_queue_oldest_age_seconds", queue="payments") < 30


def test_it_shows_dead_letter_jobs(client):
    job_request(kind=JobKind.DEAL, entity_id="1")
    Job.objects.update(state=JobState.DEAD)

    assert value(scrape(client), "bxsync_dead_letter_jobs") == 1


def test_it_shows_how_far_behind_reconciliation_reads_each_portal(client):
    Watermark.objects.create(portal="crm", value=timezone.now() - timedelta(minutes=7))
    Watermark.objects.create(portal="cms", value=timezone.now() - timedelta(seconds=30))

    samples = scrape(client)

    assert 420 <= value(samples, "bxsync_reconcile_lag_seconds", portal="crm") < 450
    assert 30 <= value(samples, "bxsync_reconcile_lag_seconds", portal="cms") < 60


# --- serve's folder for the processes' counters ---


def test_it_gives_each_instance_its_own_emptied_metrics_folder(tmp_path, monkeypatch):
    from statussync.runner import metrics_dir_reset

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    first = metrics_dir_reset(port=8000)
    (first / "counter_123.db").write_bytes(b"left by the last run")

    again = metrics_dir_reset(port=8000)
    other = metrics_dir_reset(port=8001)

    assert again == first
    assert list(again.iterdir()) == []  # counters start at zero with the service
    assert other != first

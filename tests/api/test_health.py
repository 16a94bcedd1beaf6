"""/api/health/ and /api/health/live/: what an operator's monitor and a load balancer see."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import DatabaseError
from django.utils import timezone

from statussync.bitrix import AuthError, RateLimitedError, TransientError
from statussync.health import portal_contact_record
from statussync.models import Job, JobKind, JobState, PortalHealth
from tests.support.legs import leg

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("portals")]


def outage(portal: str = "crm") -> TransientError:
    return TransientError(portal=portal, method="batch", http_status=503, code="QUERY_LIMIT_EXCEEDED")


def test_it_reports_health_without_calling_the_portals(client):
    response = client.get("/api/health/")

    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["database"]["ok"] is True
    assert body["cache"]["ok"] is True
    assert body["broker"] == {"kind": "redis" if leg() == "scaled" else "orm", "ok": True}
    assert body["portals"]["crm"]["configured"] is True
    assert body["portals"]["crm"]["failing"] is False


def test_it_reports_unhealthy_when_a_portal_is_not_configured(client, settings):
    settings.BXSYNC_CRM_REST_URL = ""

    response = client.get("/api/health/")

    assert response.status_code == 503
    assert response.json()["portals"]["crm"]["ok"] is False


def test_it_turns_red_with_the_reason_and_since_when_while_a_portals_calls_fail(admin_client):
    client = admin_client  # the reason is for staff
    portal_contact_record(portal="crm")
    portal_contact_record(portal="crm", error=outage())
    first_failure = PortalHealth.objects.get(portal="crm").failing_since
    portal_contact_record(portal="crm", error=outage())

    response = client.get("/api/health/")

    assert response.status_code == 503
    crm = response.json()["portals"]["crm"]
    assert crm["ok"] is False
    assert crm["failing"] is True
    assert crm["failing_since"] == first_failure.isoformat()  # the first failure, not the latest
    assert "QUERY_LIMIT_EXCEEDED" in crm["last_error"]
    assert crm["last_error_at"] >= crm["failing_since"]
    assert response.json()["portals"]["cms"]["ok"] is True


def test_it_ends_no_outage_with_an_answer_from_before_it_began(client):
    # A run reads the CRM; the CRM goes down; the run records its contacts at its end.
    answered = timezone.now()
    portal_contact_record(portal="crm", error=outage())
    portal_contact_record(portal="crm", at=answered)

    crm = client.get("/api/health/").json()["portals"]["crm"]

    assert (crm["ok"], crm["failing"], crm["recovered_at"]) == (False, True, None)


def test_it_turns_green_again_after_a_success(admin_client):
    client = admin_client
    portal_contact_record(portal="crm", error=outage())
    portal_contact_record(portal="crm")

    response = client.get("/api/health/")

    assert response.status_code == 200
    crm = response.json()["portals"]["crm"]
    assert (crm["ok"], crm["failing"], crm["failing_since"]) == (True, False, None)
    assert "QUERY_LIMIT_EXCEEDED" in crm["last_error"]  # history, not a present failure


def test_it_shows_a_portals_error_text_to_staff_only(client, admin_client):
    portal_contact_record(portal="crm", error=outage())

    anonymous = client.get("/api/health/").json()["portals"]["crm"]
    staff = admin_client.get("/api/health/").json()["portals"]["crm"]

    assert (anonymous["failing"], anonymous["failing_since"]) == (staff["failing"], staff["failing_since"])
    assert anonymous["last_error"] == ""
    assert "QUERY_LIMIT_EXCEEDED" in staff["last_error"]


def test_it_keeps_an_auth_failure_red_until_a_call_succeeds(client):
    portal_contact_record(portal="cms", error=AuthError(portal="cms", method="batch", http_status=401))
    portal_contact_record(portal="cms", error=outage("cms"))  # a timeout does not prove the webhook works

    assert client.get("/api/health/").json()["portals"]["cms"]["auth_failed"] is True

    portal_contact_record(portal="cms")

    cms = client.get("/api/health/").json()["portals"]["cms"]
    assert (cms["auth_failed"], cms["ok"]) == (False, True)


def test_it_does_not_count_our_own_rate_limiter_as_a_portal_failure(client):
    portal_contact_record(portal="crm")
    portal_contact_record(portal="crm", error=RateLimitedError(portal="crm", method="batch", retry_after=40))

    assert client.get("/api/health/").json()["portals"]["crm"]["ok"] is True


def test_it_reports_a_failure_recorded_without_failing_since_too(client):
    # As rows written before `failing_since` existed: an error after the last contact.
    now = timezone.now()
    PortalHealth.objects.create(
        portal="crm", last_contact_at=now - timedelta(minutes=5), last_error="boom", last_error_at=now
    )

    crm = client.get("/api/health/").json()["portals"]["crm"]

    assert (crm["failing"], crm["failing_since"]) == (True, now.isoformat())


def test_it_reports_a_stuck_queue(client):
    Job.objects.create(
        kind=JobKind.DEAL,
        entity_id="1",
        state=JobState.PENDING,
        not_before=timezone.now() - timedelta(minutes=11),
    )

    response = client.get("/api/health/")

    assert response.status_code == 503
    assert response.json()["queue"]["default"]["ok"] is False
    assert response.json()["queue"]["default"]["oldest_due_seconds"] >= 660


def test_it_reports_a_failing_cache(client, monkeypatch):
    class BrokenCache:
        def set(self, *args, **kwargs):
            raise ConnectionError("Error 111 connecting to 10.0.0.5:6379. Connection refused.")

    monkeypatch.setattr("statussync.health.cache", BrokenCache())

    response = client.get("/api/health/")

    assert response.status_code == 503
    assert response.json()["cache"] == {"ok": False, "error": "ConnectionError"}


def test_it_pings_the_redis_broker(client, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "redis": "redis://:hunter2@127.0.0.1:1/0"}  # nothing listens

    response = client.get("/api/health/")

    assert response.status_code == 503
    assert response.json()["broker"] == {"kind": "redis", "ok": False, "error": "ConnectionError"}
    assert "hunter2" not in response.content.decode()


@contextmanager
def database_down(monkeypatch):
    class DownConnection:
        def cursor(self):
            raise DatabaseError("could not connect to server")

    monkeypatch.setattr("statussync.health.connection", DownConnection())
    yield


def test_it_reports_the_database_down(client, monkeypatch):
    with database_down(monkeypatch):
        response = client.get("/api/health/")

    assert response.status_code == 503
    assert response.json() == {"ok": False, "database": {"ok": False, "error": "DatabaseError"}}


def test_it_stays_live_for_the_load_balancer_while_a_portal_fails(client):
    portal_contact_record(portal="crm", error=outage())

    assert client.get("/api/health/").status_code == 503
    live = client.get("/api/health/live/")
    assert live.status_code == 200
    assert live.json() == {"ok": True, "database": {"ok": True}}


def test_it_is_not_live_without_the_database(client, monkeypatch):
    with database_down(monkeypatch):
        response = client.get("/api/health/live/")

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize("path", ["/api/health/", "/api/health/live/"])
def test_it_answers_405_json_for_a_post(client, path):
    response = client.post(path)

    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"

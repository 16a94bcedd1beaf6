"""The webhook endpoints: good, duplicate, forged, malformed, oversized and unknown-event requests.

Every answer of these endpoints is JSON (`post` checks it for each request).
"""

from __future__ import annotations

import json
import logging

import pytest
from django.db import OperationalError, connection
from redis.exceptions import ConnectionError as RedisConnectionError

from statussync.models import InboundEvent, Job, JobKind, JobState
from tests.support.broker import queued_tasks
from tests.support.legs import leg
from tests.support.webhooks import CRM_TOKEN, event_body

FORM = "application/x-www-form-urlencoded"
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("portals")]


def post(client, side: str, body: bytes, content_type: str = FORM, **extra):
    response = client.post(f"/api/bitrix/{side}/", data=body, content_type=content_type, **extra)
    assert response["Content-Type"] == "application/json"
    assert isinstance(response.json(), dict)
    return response


def forged(body: bytes) -> bytes:
    return body.replace(CRM_TOKEN.encode(), b"forgedforgedforgedforgedforged00")


@pytest.mark.parametrize(
    ("side", "fixture", "kind", "entity_id", "queue"),
    [
        ("crm", "crm_deal_update", JobKind.DEAL, "7405", "default"),
        ("crm", "crm_deal_update_no_handler_id", JobKind.DEAL, "7406", "default"),
        ("crm", "crm_deal_add", JobKind.DEAL, "7410", "default"),
        ("crm", "crm_deal_delete", JobKind.DEAL, "7405", "default"),
        ("crm", "crm_deal_move_to_category", JobKind.DEAL, "7405", "default"),
        ("cms", "cms_order_saved", JobKind.ORDER, "300", "default"),
        ("cms", "cms_order_deleted", JobKind.ORDER, "300", "default"),
        ("cms", "cms_payment_saved", JobKind.PAYMENT, "512", "payments"),
    ],
)
def test_it_stores_each_event_and_queues_its_job(client, side, fixture, kind, entity_id, queue):
    response = post(client, side, event_body(fixture))

    assert response.status_code == 200
    assert response.json()["status"] == "stored"
    event = InboundEvent.objects.get()
    assert event.entity_id == entity_id
    job = Job.objects.get()
    assert (job.kind, job.entity_id, job.queue, job.state) == (kind, entity_id, queue, JobState.PENDING)


def test_it_never_stores_the_application_token(client):
    post(client, "crm", event_body("crm_deal_update"))

    stored = InboundEvent.objects.get().payload
    assert CRM_TOKEN not in str(stored)
    assert stored["auth"]["domain"] == "some-domain.bitrix24.ru"
    assert stored["data"]["FIELDS"]["ID"] == "7405"


def test_it_answers_200_for_a_duplicate_and_stores_it_once(client):
    first = post(client, "crm", event_body("crm_deal_update"))
    second = post(client, "crm", event_body("crm_deal_update"))

    assert first.json()["status"] == "stored"
    assert second.status_code == 200
    assert second.json()["status"] == "duplicate"
    assert InboundEvent.objects.get().duplicates == 1
    assert Job.objects.count() == 1


def test_it_coalesces_many_events_for_one_deal_into_one_job(client):
    body = event_body("crm_deal_update").decode()
    for ts in range(1766047124, 1766047134):
        post(client, "crm", body.replace("ts=1766047124", f"ts={ts}").encode())

    job = Job.objects.get()
    assert job.events_coalesced == 10
    assert InboundEvent.objects.count() == 10


on_postgresql = pytest.mark.skipif(leg() != "scaled", reason="prepared on PostgreSQL only")


def prepared_webhook_runs() -> list[int]:
    """For each statement storing an event prepared on this connection's server session, the times it ran
    (PostgreSQL 14+ counts them as generic and custom plans)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans + custom_plans FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%INSERT INTO statussync_inboundevent%"],
        )
        return [row[0] for row in cursor.fetchall()]


@on_postgresql
def test_it_stores_webhooks_through_one_prepared_statement(client):
    body = event_body("crm_deal_update").decode()
    for ts in (1766047124, 1766047125, 1766047125):
        post(client, "crm", body.replace("ts=1766047124", f"ts={ts}").encode())

    assert [e.duplicates for e in InboundEvent.objects.order_by("ts")] == [0, 1]
    assert Job.objects.get().events_coalesced == 3
    # One statement prepared for the three webhooks, not one each.
    assert len(prepared_webhook_runs()) == 1


@on_postgresql
def test_it_prepares_nothing_when_told_a_pooler_is_in_front(client, settings):
    settings.BXSYNC_WEBHOOK_PREPARED = False
    before = prepared_webhook_runs()
    post(client, "crm", event_body("crm_deal_update"))

    assert InboundEvent.objects.count() == 1
    assert prepared_webhook_runs() == before


def test_it_queues_again_when_the_job_is_already_running(client):
    post(client, "crm", event_body("crm_deal_update"))
    Job.objects.update(state=JobState.RUNNING)
    body = event_body("crm_deal_update").decode().replace("ts=1766047124", "ts=1766047999")
    post(client, "crm", body.encode())

    assert Job.objects.filter(state=JobState.PENDING).count() == 1
    assert Job.objects.filter(state=JobState.RUNNING).count() == 1


def test_it_answers_200_for_an_event_it_ignores_and_queues_nothing(client):
    response = post(client, "crm", event_body("crm_contact_add_unrelated"))

    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert Job.objects.count() == 0
    assert "access_token" not in InboundEvent.objects.get().payload["auth"]


@pytest.mark.parametrize(
    "body",
    [
        forged(event_body("crm_deal_update")),
        event_body("crm_deal_update").replace(b"&auth%5Bapplication_token%5D=" + CRM_TOKEN.encode(), b""),
        # The shop's token is not the CRM's.
        event_body("cms_order_saved"),
    ],
    ids=["wrong-token", "missing-token", "other-portals-token"],
)
def test_it_refuses_a_forged_event_and_stores_nothing(client, body):
    response = post(client, "crm", body)

    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert "error" in response.json()
    assert InboundEvent.objects.count() == 0
    assert Job.objects.count() == 0


def test_it_refuses_everything_when_no_token_is_configured(client, settings):
    settings.BXSYNC_CRM_APP_TOKEN = ""

    assert post(client, "crm", event_body("crm_deal_update")).status_code == 403


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"", FORM),
        (b"event=ONCRMDEALUPDATE&data%5BFIELDS%5D%5BID=7&auth%5Bapplication_token%5D=x", FORM),
        (b"\xff\xfe\x00garbage", FORM),
        (b"<xml/>", "text/xml"),
        (b"{not json", "application/json"),
    ],
    ids=["empty", "broken-bracket", "not-utf8", "xml", "bad-json"],
)
def test_it_answers_400_json_for_a_malformed_body(client, body, content_type):
    response = post(client, "crm", body, content_type)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert InboundEvent.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [
        event_body("crm_deal_update").replace(b"data%5BFIELDS%5D%5BID%5D=7405&", b""),
        event_body("crm_deal_update").replace(
            b"data%5BFIELDS%5D%5BID%5D=7405", b"data%5BFIELDS%5D%5BID%5D=abc"
        ),
        event_body("crm_deal_update").replace(b"event=ONCRMDEALUPDATE&", b""),
    ],
    ids=["no-id", "non-numeric-id", "no-event"],
)
def test_it_answers_400_for_an_event_without_an_id(client, body):
    response = post(client, "crm", body)

    assert response.status_code == 400
    assert Job.objects.count() == 0


def test_it_answers_413_json_for_an_oversized_body(client, settings):
    settings.BXSYNC_MAX_EVENT_BYTES = 1024
    body = event_body("crm_deal_update") + b"&pad=" + b"x" * 2000

    response = post(client, "crm", body)

    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert InboundEvent.objects.count() == 0


def test_it_answers_json_for_a_get(client):
    response = client.get("/api/bitrix/crm/")

    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"


def test_it_accepts_json_with_the_same_shape(client):
    payload = {
        "event": "ONCRMDEALUPDATE",
        "data": {"FIELDS": {"ID": "9"}},
        "ts": "1",
        "auth": {"application_token": CRM_TOKEN},
    }

    response = client.post("/api/bitrix/crm/", data=payload, content_type="application/json")

    assert response.status_code == 200
    assert Job.objects.get().entity_id == "9"


def test_it_answers_503_json_and_not_200_when_the_event_cannot_be_stored(client, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("statussync.api.apis.event_receive", broken)

    response = post(client, "crm", event_body("crm_deal_update"))

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"


def test_it_answers_400_for_a_deeply_nested_json_body_before_the_token_check(client):
    # json.loads raises RecursionError at this depth; the body is under the size cap and its token is wrong.
    body = '{"event": "ONCRMDEALUPDATE", "auth": {"application_token": "forged"}, "x": %s}' % (
        "[" * 30_000 + "]" * 30_000
    )

    response = post(client, "crm", body.encode(), "application/json")

    assert response.status_code == 400
    assert InboundEvent.objects.count() == 0


@pytest.mark.parametrize(
    "payload",
    [
        {"x": json.loads("[" * 40 + "]" * 40)},  # deeper than the bracket codec allows
        {"x": "\u0000"},  # PostgreSQL cannot store NUL
        {"x": "\ud800"},  # nor a lone surrogate
    ],
    ids=["too-deep", "nul", "surrogate"],
)
def test_it_answers_400_for_json_no_later_step_could_handle(client, payload):
    event = {
        "event": "ONCRMDEALUPDATE",
        "data": {"FIELDS": {"ID": "1"}},
        "auth": {"application_token": CRM_TOKEN},
    }
    body = json.dumps({**event, **payload})  # a good event but for `x`

    response = post(client, "crm", body.encode(), "application/json")

    assert response.status_code == 400
    assert InboundEvent.objects.count() == 0


def test_it_answers_400_for_nan_in_json(client):
    body = f'{{"event": "ONCRMDEALUPDATE", "ts": NaN, "auth": {{"application_token": "{CRM_TOKEN}"}}}}'

    assert post(client, "crm", body.encode(), "application/json").status_code == 400


def test_it_answers_400_for_more_fields_than_bitrix_sends(client):
    body = event_body("crm_deal_update") + b"".join(b"&f%d=1" % n for n in range(200))

    assert post(client, "crm", body).status_code == 400
    assert InboundEvent.objects.count() == 0


def test_it_answers_413_on_the_declared_length_without_reading_the_body(client):
    class Unreadable:
        def read(self, *args):
            raise AssertionError("the body was read")

        readline = read

    response = post(
        client,
        "crm",
        event_body("crm_deal_update"),
        CONTENT_LENGTH=str(10**9),
        **{"wsgi.input": Unreadable()},
    )

    assert response.status_code == 413
    assert InboundEvent.objects.count() == 0


def test_it_answers_400_for_another_content_type(client):
    assert post(client, "crm", event_body("crm_deal_update"), "text/plain").status_code == 400


def test_it_answers_json_whatever_the_accept_header_asks_for(client):
    good = post(client, "crm", event_body("crm_deal_update"), HTTP_ACCEPT="text/html")
    bad = post(client, "crm", forged(event_body("crm_deal_update")), HTTP_ACCEPT="text/html")

    assert (good.status_code, bad.status_code) == (200, 403)


@pytest.mark.parametrize("method", ["put", "patch", "delete", "options"])
def test_it_answers_405_json_for_other_methods(client, method):
    response = getattr(client, method)(
        "/api/bitrix/cms/", data=event_body("cms_order_saved"), content_type=FORM
    )

    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert response["Allow"] == "POST"
    assert InboundEvent.objects.count() == 0


def test_it_answers_json_for_an_unknown_api_path(client):
    response = client.get("/api/bitrix/nowhere/")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"


def test_it_never_logs_the_application_token(client, caplog):
    given = "stolen-shop-token-0123456789abcdef"
    caplog.set_level(logging.DEBUG)

    refused = post(client, "crm", event_body("crm_deal_update").replace(CRM_TOKEN.encode(), given.encode()))
    accepted = post(client, "crm", event_body("crm_deal_update"))

    assert (refused.status_code, accepted.status_code) == (403, 200)
    assert "refused a crm event" in caplog.text
    assert given not in caplog.text
    assert CRM_TOKEN not in caplog.text


# --- the event is stored, but waking a worker fails: still 200 (the sweeper wakes queues every minute) ---


def test_it_answers_200_when_the_orm_broker_is_locked_after_the_event_is_stored(
    client, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    def locked(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr("django_q.tasks.async_task", locked)

    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, "crm", event_body("crm_deal_update"))

    assert response.status_code == 200
    assert response.json()["status"] == "stored"
    assert Job.objects.get().state == JobState.PENDING  # the sweeper's to wake
    assert "could not wake the default queue (broker: OperationalError)" in caplog.text


def test_it_answers_200_when_redis_is_down_after_the_event_is_stored(
    client, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    class RedisDown:
        def add(self, *args, **kwargs):
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr("statussync.jobs.cache", RedisDown())

    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, "cms", event_body("cms_payment_saved"))

    assert response.status_code == 200
    assert Job.objects.get().queue == "payments"
    assert "could not wake the payments queue (cache: ConnectionError)" in caplog.text


def test_it_answers_200_whatever_else_fails_after_the_event_is_stored(
    client, monkeypatch, django_capture_on_commit_callbacks
):
    def broken(**kwargs):
        raise RuntimeError("anything at all")

    monkeypatch.setattr("statussync.jobs.queue_wake", broken)

    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, "crm", event_body("crm_deal_update"))

    assert response.status_code == 200
    assert InboundEvent.objects.count() == 1


def test_it_tries_to_wake_again_on_the_next_event_after_a_failed_wake(
    client, monkeypatch, django_capture_on_commit_callbacks
):
    def locked(*args, **kwargs):
        raise OperationalError("database is locked")

    with monkeypatch.context() as patch, django_capture_on_commit_callbacks(execute=True):
        patch.setattr("django_q.tasks.async_task", locked)
        post(client, "crm", event_body("crm_deal_update"))
    with django_capture_on_commit_callbacks(execute=True):
        post(client, "crm", event_body("crm_deal_add"))

    assert len(queued_tasks()) == 1  # not held back by the flag of the wake-up that never left

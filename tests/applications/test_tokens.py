"""Connecting a portal as an application, and its tokens: renewal once for all, disconnection with a reason.

Spec: settings/oauth/index.md, settings/oauth/auto-renewal.md, api-reference/events/event-bind.md.
"""

from __future__ import annotations

import logging
import threading

import pytest
from django.db import connection

from statussync.applications import StoredTokens, application_disconnect
from statussync.bitrix import AuthError, client_for
from statussync.health import health_report
from statussync.jobs import job_request
from statussync.models import ConnectedPortal, ConnectionState, Job, JobKind, JobState
from tests.applications.support import connect
from tests.support.sandbox import before_writes, linked_pair, run_worker, sandbox_fresh


def _refreshes(sb) -> int:
    return sb.crm.metrics.get("oauth", "refresh_token")


def test_it_connects_and_binds_every_crm_event_offline_with_its_connector(sb) -> None:
    row = connect(sb.crm, "crm")

    assert row.state == ConnectionState.CONNECTED
    assert row.offline_extended is True
    bound = {(b["event"], b["offline"], b.get("connector_id")) for b in sb.crm.app.info()["bindings"]}
    assert bound == {
        (event, 1, "bxsync")
        for event in ("ONCRMDEALADD", "ONCRMDEALDELETE", "ONCRMDEALMOVETOCATEGORY", "ONCRMDEALUPDATE")
    }
    assert client_for("crm").result("crm.deal.list", {"filter": {"ID": 0}}) == []


def test_it_renews_an_expired_token_and_repeats_the_call_once(sb) -> None:
    connect(sb.crm, "crm")
    client = client_for("crm")
    sb.crm.clock.advance(3601)

    assert client.result("event.get")
    assert client.result("event.get")
    assert _refreshes(sb) == 1
    # A client built afterwards (another run) uses the stored, renewed token without renewing.
    assert client_for("crm").result("event.get")
    assert _refreshes(sb) == 1


def test_it_reuses_the_token_another_process_renewed_meanwhile(sb) -> None:
    row = connect(sb.crm, "crm")
    first, second = StoredTokens(row), StoredTokens(row)  # two processes, the same expired token
    stale = first.sign({})
    sb.crm.clock.advance(3601)

    first.renew(stale=stale)
    second.renew(stale=stale)

    assert _refreshes(sb) == 1
    assert second.sign({})["auth"] == first.sign({})["auth"] != stale["auth"]
    assert sb.crm.app.token_check(second.sign({})["auth"]) is None


@pytest.mark.only_leg("scaled", reason="two connections racing need a database with row locks")
@pytest.mark.django_db(transaction=True)
def test_it_renews_once_when_two_processes_find_the_token_expired_at_once(sandbox, settings) -> None:
    sandbox_fresh(sandbox, settings)
    settings.BXSYNC_CRM_REST_URL = ""
    connect(sandbox.crm, "crm")
    sandbox.crm.clock.advance(3601)
    start = threading.Barrier(4)
    answers: list[object] = []

    def call() -> None:
        try:
            client = client_for("crm")
            start.wait()
            answers.append(client.result("event.get"))
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(answers) == 4
    assert sandbox.crm.metrics.get("oauth", "refresh_token") == 1


def test_it_disconnects_with_the_reason_when_the_application_is_removed(sb) -> None:
    connect(sb.crm, "crm")
    client = client_for("crm")
    sb.crm.app.configure(installed=False)

    with pytest.raises(AuthError):
        client.result("event.get")

    row = ConnectedPortal.objects.get(portal="crm")
    assert row.state == ConnectionState.DISCONNECTED
    assert "invalid_token" in row.state_reason
    assert (row.access_token, row.refresh_token) == ("", "")
    # Its jobs are held like a refused webhook's, not retried against a portal that said no.
    with pytest.raises(AuthError, match="invalid_token"):
        client_for("crm")


def test_it_disconnects_when_the_renewal_is_refused_and_does_not_try_again(sb) -> None:
    connect(sb.crm, "crm")
    client = client_for("crm")
    sb.crm.app._refresh.clear()  # the refresh token was revoked
    sb.crm.clock.advance(3601)

    with pytest.raises(AuthError, match="invalid_grant"):
        client.result("event.get")
    with pytest.raises(AuthError):
        client.result("event.get")

    assert sb.crm.metrics.get("oauth", "refresh_token") == 0
    assert ConnectedPortal.objects.get(portal="crm").state == ConnectionState.DISCONNECTED


def test_it_unbinds_its_events_on_disconnect(sb) -> None:
    connect(sb.crm, "crm")

    application_disconnect(portal="crm", reason="manager disconnected")

    assert sb.crm.app.info()["bindings"] == []
    row = ConnectedPortal.objects.get(portal="crm")
    assert (row.state, row.state_reason) == (ConnectionState.DISCONNECTED, "manager disconnected")


def test_it_never_logs_or_prints_the_tokens_or_the_secret(sb, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    row = connect(sb.crm, "crm")
    client = client_for("crm")
    sb.crm.clock.advance(3601)
    client.result("event.get")
    secrets = [sb.crm.app.client_secret, *sb.crm.app._access, *sb.crm.app._refresh]
    sb.crm.app.configure(installed=False)
    with pytest.raises(AuthError) as failure:
        client.result("event.get")

    row.refresh_from_db()
    shown = [caplog.text, repr(row), str(row), repr(client), repr(client.transport.auth), str(failure.value)]
    assert len(secrets) == 4
    assert not [secret for secret in secrets if secret in "\n".join(shown)]


def test_it_reports_a_crm_connected_as_an_application_as_configured_and_not_once_disconnected(sb) -> None:
    assert health_report()["portals"]["crm"]["configured"] is False  # no webhook URL, nothing connected
    connect(sb.crm, "crm")
    assert health_report()["portals"]["crm"]["configured"] is True

    application_disconnect(portal="crm", reason="manager disconnected")

    assert health_report()["portals"]["crm"]["ok"] is False


def test_it_loses_nothing_when_the_token_expires_in_the_middle_of_a_run(sb, monkeypatch) -> None:
    connect(sb.crm, "crm")
    order_id, deal_id = linked_pair(sb)
    sb.shop.set_order_status(int(order_id), "P")
    job_request(kind=JobKind.ORDER, entity_id=order_id)
    # Read with the old token; the hour runs out before the writes.
    before_writes(monkeypatch, lambda: sb.crm.clock.advance(3601))

    run_worker()

    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPARATION"
    assert _refreshes(sb) == 1
    assert not Job.objects.exclude(state=JobState.DONE).exists()

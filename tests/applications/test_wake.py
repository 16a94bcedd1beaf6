"""ONOFFLINEEVENT: where bxsync is reachable, the portal's notice that changes wait wakes the puller at once
(api-reference/events/on-offline-event.md); the puller polls otherwise."""

from __future__ import annotations

import time
from urllib.parse import urlencode

import pytest
from django.test import Client

from statussync.models import ConnectedPortal
from statussync.pull_wake import WAKE_SOCKET_ENV, PullWaiter
from tests.applications.support import connect

PUBLIC = "https://bxsync.example.com"


@pytest.fixture
def waiter(tmp_path, monkeypatch):
    path = str(tmp_path / "pull.sock")
    monkeypatch.setenv(WAKE_SOCKET_ENV, path)
    listening = PullWaiter(path)
    yield listening
    listening.close()


def _wake(portal: str, token: str):
    """Post the notice as the portal does: a form, no data, the application's token in ``auth``."""
    body = urlencode(
        {"event": "ONOFFLINEEVENT", "ts": str(int(time.time())), "auth[application_token]": token}
    )
    return Client().post(
        f"/api/bitrix/app/wake/{portal}/", body, content_type="application/x-www-form-urlencoded"
    )


def test_it_binds_the_wake_up_where_bxsync_is_reachable_and_unbinds_it_on_disconnect(sb) -> None:
    from statussync.applications import application_disconnect

    connect(sb.crm, "crm", events_url=PUBLIC)

    [wake] = [b for b in sb.crm.app.bindings if b.event == "ONOFFLINEEVENT"]
    assert (wake.handler, wake.offline, wake.options) == (
        f"{PUBLIC}/api/bitrix/app/wake/crm/",
        False,
        {"minTimeout": 1},
    )
    assert "ONOFFLINEEVENT" in ConnectedPortal.objects.get(portal="crm").bound_events
    application_disconnect(portal="crm", reason="test")
    assert sb.crm.app.bindings == []


def test_it_polls_without_a_wake_up_where_bxsync_is_not_reachable(sb) -> None:
    connect(sb.crm, "crm")
    assert not any(b.event == "ONOFFLINEEVENT" for b in sb.crm.app.bindings)


def test_it_wakes_the_puller_when_the_portal_says_changes_wait(sb, waiter) -> None:
    connect(sb.crm, "crm", events_url=PUBLIC)
    assert waiter.wait(0) == set()

    answer = _wake("crm", sb.crm.app.application_token)

    assert answer.json() == {"status": "woken"}
    assert waiter.wait(5) == {"crm"}
    assert waiter.wait(0) == set()  # one wake-up, taken once


def test_it_refuses_a_wake_up_with_another_application_token_or_for_a_portal_not_pulled(sb, waiter) -> None:
    connect(sb.crm, "crm", events_url=PUBLIC)
    ConnectedPortal.objects.filter(portal="crm").update(application_token="the-installation-callbacks")

    assert _wake("crm", "forged").status_code == 403
    assert _wake("cms", "").status_code == 403
    assert waiter.wait(0) == set()

"""Push mode: the application's online handlers post to bxsync's event endpoint with the application's token
(api-reference/events/event-bind.md); ONAPPUNINSTALL disconnects. The token reaches bxsync only through the
installation callback, so push without it is refused rather than losing every event."""

from __future__ import annotations

import pytest
from django.test import Client

from phpquery import http_build_query
from statussync.applications import application_connect_start
from statussync.bitrix import BitrixError
from statussync.models import ConnectedPortal, ConnectionState, InboundEvent, IntakeMode
from tests.applications.support import connect
from tests.sandbox.conftest import poll


def test_it_refuses_push_without_the_application_token_instead_of_losing_events(sb) -> None:
    with pytest.raises(BitrixError, match="installation callback"):
        connect(sb.crm, "crm", intake_mode=IntakeMode.PUSH)

    row = ConnectedPortal.objects.get(portal="crm")
    assert row.state == ConnectionState.DISCONNECTED
    assert "push needs" in row.state_reason


def test_it_takes_the_applications_events_and_its_removal_in_push_mode(sb, receiver, settings) -> None:
    settings.BXSYNC_CRM_APP_TOKEN = ""  # no outgoing webhook: only the application's token
    app = sb.crm.app
    application_connect_start(
        portal="crm",
        address=sb.crm.base_url,
        client_id=app.client_id,
        client_secret=app.client_secret,
        intake_mode=IntakeMode.PUSH,
        events_url=receiver.url,  # stands in for bxsync's public address: the test replays what arrives
    )
    access, refresh, _ = app.tokens_issue()
    auth = {
        "access_token": access,
        "refresh_token": refresh,
        "client_endpoint": f"{sb.crm.base_url}/rest/",
        "application_token": app.application_token,
    }
    body = http_build_query({"event": "ONAPPINSTALL", "auth": auth})
    form = "application/x-www-form-urlencoded"
    assert Client().post("/api/bitrix/app/install/crm/", body, content_type=form).status_code == 200
    handlers = {(b["event"], b["handler"]) for b in app.info()["bindings"]}
    assert ("ONCRMDEALMOVETOCATEGORY", f"{receiver.url}/api/bitrix/crm/") in handlers
    assert ("ONAPPUNINSTALL", f"{receiver.url}/api/bitrix/crm/") in handlers

    [(_, deal)] = sb.seed(1, pipeline_share=0.0, orders_without_deal=0, deals_without_order=0)
    receiver.clear()
    sb.crm.move_deal(deal, "PREPARATION")
    [posted] = poll(lambda: receiver.events("ONCRMDEALUPDATE"))
    assert Client().post(posted.path, posted.raw, content_type=form).status_code == 200
    assert InboundEvent.objects.filter(event="ONCRMDEALUPDATE", entity_id=str(deal)).exists()

    app.configure(installed=False)
    [gone] = poll(lambda: receiver.events("ONAPPUNINSTALL"))
    assert Client().post(gone.path, gone.raw, content_type=form).status_code == 200
    assert ConnectedPortal.objects.get(portal="crm").state == ConnectionState.DISCONNECTED

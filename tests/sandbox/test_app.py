"""The CRM as a local application: OAuth round trip and renewal, app-only methods, the offline queue.

Spec: settings/oauth/index.md, settings/oauth/auto-renewal.md, api-reference/events/offline-events.md,
event-offline-get.md, event-offline-clear.md, event-offline-error.md, event-bind.md, event-get.md.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from bitrix_sandbox import Sandbox
from bitrix_sandbox.rest import Portal
from tests.sandbox.conftest import poll


def _connect(portal: Portal, redirect_uri: str = "http://bxsync.test/callback/") -> dict[str, Any]:
    """The browser's round trip and the token exchange; returns the token answer."""
    portal.app.configure(redirect_uri=redirect_uri)
    answer = requests.get(
        f"{portal.base_url}/oauth/authorize/",
        params={"client_id": portal.app.client_id, "state": "s1"},
        allow_redirects=False,
        timeout=5,
    )
    assert answer.status_code == 302
    back = urlsplit(answer.headers["Location"])
    query = {k: v[0] for k, v in parse_qs(back.query).items()}
    assert f"{back.scheme}://{back.netloc}{back.path}" == redirect_uri
    assert query["state"] == "s1"
    assert query["member_id"] == portal.app.member_id
    return _token(portal, grant_type="authorization_code", code=query["code"]).json()


def _token(portal: Portal, **params: str) -> requests.Response:
    params = {"client_id": portal.app.client_id, "client_secret": portal.app.client_secret, **params}
    return requests.get(f"{portal.base_url}/oauth/token/", params=params, timeout=5)


def _call(portal: Portal, token: str, method: str, **params: Any) -> requests.Response:
    return requests.post(f"{portal.base_url}/rest/{method}.json", json={**params, "auth": token}, timeout=5)


def _ok(portal: Portal, token: str, method: str, **params: Any) -> Any:
    answer = _call(portal, token, method, **params)
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def test_it_exchanges_the_code_once_and_calls_rest_with_the_access_token(sandbox: Sandbox) -> None:
    crm = sandbox.crm
    tokens = _connect(crm)
    assert tokens["expires_in"] == 3600
    assert tokens["client_endpoint"] == f"{crm.base_url}/rest/"
    assert _ok(crm, tokens["access_token"], "feature.get", CODE="rest_offline_extended") == {"value": "Y"}
    # A code is single-use; a wrong secret is refused.
    assert _token(crm, grant_type="authorization_code", code="nope").json()["error"] == "invalid_grant"
    assert _token(crm, grant_type="refresh_token", client_secret="x").status_code == 401


def test_it_expires_the_access_token_after_an_hour_and_replaces_the_refresh_token(sandbox: Sandbox) -> None:
    crm = sandbox.crm
    tokens = _connect(crm)
    crm.clock.advance(3601)
    expired = _call(crm, tokens["access_token"], "event.get")
    assert (expired.status_code, expired.json()["error"]) == (401, "expired_token")
    renewed = _token(crm, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).json()
    assert _call(crm, renewed["access_token"], "event.get").status_code == 200
    # The old refresh token was replaced on use.
    again = _token(crm, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert again.json()["error"] == "invalid_grant"
    assert _call(crm, "garbage", "event.get").json()["error"] == "invalid_token"


def test_it_refuses_app_only_methods_to_a_webhook(sandbox: Sandbox, rest) -> None:
    answer = rest(sandbox.crm, "event.bind", {"event": "ONCRMDEALUPDATE", "event_type": "offline"})
    assert answer.status_code == 401


def test_it_binds_lists_and_unbinds_offline_handlers(sandbox: Sandbox) -> None:
    crm, token = sandbox.crm, _connect(sandbox.crm)["access_token"]
    assert _ok(
        crm, token, "event.bind", event="ONCRMDEALMOVETOCATEGORY", event_type="offline", auth_connector="bx"
    )
    assert _call(crm, token, "event.bind", event="ONNOSUCHTHING", event_type="offline").status_code == 400
    [row] = _ok(crm, token, "event.get")
    assert (row["event"], row["offline"], row["connector_id"]) == ("ONCRMDEALMOVETOCATEGORY", 1, "bx")
    assert _ok(crm, token, "event.unbind", event="ONCRMDEALMOVETOCATEGORY", event_type="offline") == {
        "count": 1
    }
    assert _ok(crm, token, "event.get") == []


def test_it_keeps_one_record_per_deal_reserves_it_and_clears_only_what_was_reserved(sandbox: Sandbox) -> None:
    crm, token = sandbox.crm, _connect(sandbox.crm)["access_token"]
    _ok(crm, token, "event.bind", event="ONCRMDEALUPDATE", event_type="offline")
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    for stage in ("PREPARATION", "EXECUTING", "PREPARATION"):
        crm.move_deal(deal_id, stage)
    batch = _ok(crm, token, "event.offline.get", clear=0)
    [record] = batch["events"]
    assert record["EVENT_DATA"] == {"FIELDS": {"ID": deal_id}}
    assert batch["process_id"]
    # Reserved: hidden from another reader; a change meanwhile makes a new record that the clear keeps.
    assert _ok(crm, token, "event.offline.get", clear=0)["events"] == []
    crm.move_deal(deal_id, "EXECUTING")
    assert _ok(crm, token, "event.offline.clear", process_id=batch["process_id"]) is True
    [later] = _ok(crm, token, "event.offline.get", clear=1)["events"]
    assert later["ID"] != record["ID"]
    assert crm.app.depth() == 0


def test_it_sets_a_failed_record_aside(sandbox: Sandbox) -> None:
    crm, token = sandbox.crm, _connect(sandbox.crm)["access_token"]
    _ok(crm, token, "event.bind", event="ONCRMDEALUPDATE", event_type="offline")
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    crm.move_deal(deal_id, "PREPARATION")
    batch = _ok(crm, token, "event.offline.get", clear=0)
    message_id = batch["events"][0]["MESSAGE_ID"]
    _ok(crm, token, "event.offline.error", process_id=batch["process_id"], message_id=[message_id])
    assert _ok(crm, token, "event.offline.get", clear=0)["events"] == []
    assert [r["MESSAGE_ID"] for r in _ok(crm, token, "event.offline.get", error=1)["events"]] == [message_id]


def test_it_does_not_queue_the_applications_own_write_carrying_its_connector(sandbox: Sandbox) -> None:
    crm, token = sandbox.crm, _connect(sandbox.crm)["access_token"]
    _ok(crm, token, "event.bind", event="ONCRMDEALUPDATE", event_type="offline", auth_connector="bxsync")
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    fields = {"STAGE_ID": "PREPARATION"}
    _ok(crm, token, "crm.deal.update", id=deal_id, fields=fields, auth_connector="bxsync")
    batch = {"cmd": {"a": f"crm.deal.update?id={deal_id}&fields[STAGE_ID]=EXECUTING&auth_connector=bxsync"}}
    _ok(crm, token, "batch", **batch)
    assert _ok(crm, token, "event.offline.get", auth_connector="bxsync")["events"] == []
    # Without the connector (another application, a person) the change is queued.
    _ok(crm, token, "crm.deal.update", id=deal_id, fields={"STAGE_ID": "PREPARATION"})
    assert len(_ok(crm, token, "event.offline.get", auth_connector="bxsync")["events"]) == 1


def test_it_queues_pipeline_moves_for_the_application(sandbox: Sandbox) -> None:
    crm, token = sandbox.crm, _connect(sandbox.crm)["access_token"]
    _ok(crm, token, "event.bind", event="ONCRMDEALMOVETOCATEGORY", event_type="offline")
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    crm.move_deal_to_pipeline(deal_id, crm.pipelines()[1])
    [record] = _ok(crm, token, "event.offline.get")["events"]
    assert record["EVENT_NAME"] == "ONCRMDEALMOVETOCATEGORY"
    assert record["EVENT_DATA"]["FIELDS"]["ID"] == deal_id


def test_it_reads_and_clears_at_once_without_the_extended_feature(sandbox: Sandbox) -> None:
    crm, token = sandbox.crm, _connect(sandbox.crm)["access_token"]
    crm.app.configure(features={"rest_offline_extended": False})
    assert _ok(crm, token, "feature.get", CODE="rest_offline_extended") == {"value": "N"}
    _ok(crm, token, "event.bind", event="ONCRMDEALUPDATE", event_type="offline")
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    crm.move_deal(deal_id, "PREPARATION")
    assert _call(crm, token, "event.offline.get", clear=0).status_code == 403
    assert len(_ok(crm, token, "event.offline.get")["events"]) == 1
    assert crm.app.depth() == 0


def test_it_wakes_an_online_handler_and_says_when_the_application_is_removed(
    sandbox: Sandbox, receiver
) -> None:
    crm, token = sandbox.crm, _connect(sandbox.crm)["access_token"]
    _ok(crm, token, "event.bind", event="ONCRMDEALUPDATE", event_type="offline")
    _ok(crm, token, "event.bind", event="ONOFFLINEEVENT", handler=f"{receiver.url}/wake")
    _ok(crm, token, "event.bind", event="ONAPPUNINSTALL", handler=f"{receiver.url}/gone")
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    crm.move_deal(deal_id, "PREPARATION")
    [wake] = poll(lambda: receiver.events("ONOFFLINEEVENT"))
    assert wake.fields["auth[application_token]"] == crm.app.application_token
    crm.app.configure(installed=False)
    poll(lambda: receiver.events("ONAPPUNINSTALL"))
    assert _call(crm, token, "event.get").json()["error"] == "invalid_token"


def test_it_lists_the_queue_with_its_total_and_reserves_nothing(sandbox: Sandbox) -> None:
    crm, token = sandbox.crm, _connect(sandbox.crm)["access_token"]
    _ok(crm, token, "event.bind", event="ONCRMDEALUPDATE", event_type="offline", auth_connector="bxsync")
    deals = [deal for _, deal in sandbox.seed(60, pipeline_share=0.0)]
    for deal_id in deals:
        crm.move_deal(deal_id, "PREPARATION")
    reserved = _ok(crm, token, "event.offline.get", clear=0, limit=2, auth_connector="bxsync")

    listed = _call(crm, token, "event.offline.list", filter={"ERROR": 0}, auth_connector="bxsync").json()

    assert (listed["total"], len(listed["result"]), listed["next"]) == (60, 50, 50)
    assert sum(1 for row in listed["result"] if row["PROCESS_ID"] == reserved["process_id"]) == 2
    # Nothing reserved or deleted by the list; another source's queue is another list.
    assert len(_ok(crm, token, "event.offline.get", clear=0, auth_connector="bxsync")["events"]) == 50
    assert _call(crm, token, "event.offline.list").json()["total"] == 0


def test_it_wakes_once_per_min_timeout_or_once_per_call_with_zero(sandbox: Sandbox, receiver) -> None:
    crm, token = sandbox.crm, _connect(sandbox.crm)["access_token"]
    _ok(crm, token, "event.bind", event="ONCRMDEALUPDATE", event_type="offline")
    _ok(
        crm,
        token,
        "event.bind",
        event="ONOFFLINEEVENT",
        handler=f"{receiver.url}/w",
        options={"minTimeout": 60},
    )
    deals = [deal for _, deal in sandbox.seed(3, pipeline_share=0.0)]
    for deal_id in deals:
        crm.move_deal(deal_id, "PREPARATION")
    poll(lambda: receiver.events("ONOFFLINEEVENT"))
    time.sleep(0.3)  # a second would have been posted by now
    assert len(receiver.events("ONOFFLINEEVENT")) == 1  # then a minute's quiet

    _ok(crm, token, "event.unbind", event="ONOFFLINEEVENT", handler=f"{receiver.url}/w")
    _ok(
        crm,
        token,
        "event.bind",
        event="ONOFFLINEEVENT",
        handler=f"{receiver.url}/z",
        options={"minTimeout": 0},
    )
    commands = {f"m{d}": f"crm.deal.update?id={d}&fields[STAGE_ID]=EXECUTING" for d in deals}
    _ok(crm, token, "batch", cmd=commands)  # three records, one call
    crm.move_deal(deals[0], "PREPARATION")  # another call
    poll(lambda: len(receiver.events("ONOFFLINEEVENT")) >= 3)
    time.sleep(0.3)  # a fourth would have been posted by now
    assert len(receiver.events("ONOFFLINEEVENT")) == 3

"""Outgoing events: wire format, echo of REST writes, no retries, payment and pipeline-move semantics."""

from __future__ import annotations

import socket
from urllib.parse import unquote

import pytest
import requests

from bitrix_sandbox import Sandbox


def _idle(sandbox: Sandbox) -> None:
    assert sandbox.wait_events_idle(5.0)


def test_it_posts_events_form_encoded_with_bracket_keys_and_the_token(sandbox: Sandbox, receiver) -> None:
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    sandbox.crm.move_deal(deal_id, "PREPARATION", user_id=7)
    _idle(sandbox)
    [event] = receiver.events()
    assert event.path == "/crm"
    assert event.content_type == "application/x-www-form-urlencoded"
    # Bracket keys are percent-encoded on the wire, like Bitrix sends them [docs/bitrix.md "Events"].
    assert event.raw.startswith("event=ONCRMDEALUPDATE&event_handler_id=")
    assert f"data%5BFIELDS%5D%5BID%5D={deal_id}&ts=" in event.raw
    assert f"auth%5Bapplication_token%5D={sandbox.crm_token}" in event.raw
    assert set(event.fields) == {
        "event",
        "event_handler_id",
        "data[FIELDS][ID]",
        "ts",
        "auth[domain]",
        "auth[client_endpoint]",
        "auth[server_endpoint]",
        "auth[member_id]",
        "auth[application_token]",
    }
    assert event.fields["ts"].isdigit()
    assert event.fields["auth[client_endpoint]"] == f"{sandbox.crm.base_url}/rest/"
    assert (
        unquote(event.raw.split("auth%5Bclient_endpoint%5D=")[1].split("&")[0])
        == f"{sandbox.crm.base_url}/rest/"
    )


def test_it_echoes_a_rest_deal_update_with_the_webhook_user(sandbox: Sandbox, receiver, rest) -> None:
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    rest.ok(sandbox.crm, "crm.deal.update", {"id": deal_id, "fields": {"STAGE_ID": "WON"}})
    _idle(sandbox)
    [event] = receiver.events("ONCRMDEALUPDATE")
    assert event.entity_id == deal_id
    deal = sandbox.crm.get_deal(deal_id)
    webhook_user = str(sandbox.crm.config.user_id)
    assert (deal["STAGE_ID"], deal["STAGE_SEMANTIC_ID"], deal["CLOSED"]) == ("WON", "S", "Y")
    assert deal["MODIFY_BY_ID"] == deal["MOVED_BY_ID"] == webhook_user
    assert deal["MOVED_TIME"] == deal["DATE_MODIFY"]
    counters = sandbox.crm.counters()
    assert counters["writes"]["rest"] == {"crm.deal.update": 1}
    assert counters["events"]["delivered"] == {"ONCRMDEALUPDATE": 1}


def test_it_echoes_a_rest_order_update_with_the_webhook_user_in_emp_status_id(
    sandbox: Sandbox, receiver, rest
) -> None:
    order_id, _ = sandbox.seed(1)[0]
    rest.ok(sandbox.shop, "sale.order.update", {"id": order_id, "fields": {"statusId": "P"}})
    _idle(sandbox)
    [event] = receiver.events("ONSALEORDERSAVED")
    order = sandbox.shop.get_order(order_id)
    # [docs/bitrix.md "Events"] ID, XML_ID, ACTION=save
    assert event.fields["data[FIELDS][ID]"] == str(order_id)
    assert event.fields["data[FIELDS][XML_ID]"] == order["xmlId"]
    assert event.fields["data[FIELDS][ACTION]"] == "save"
    assert event.fields["auth[application_token]"] == sandbox.shop_token
    assert event.path == "/shop"
    assert order["empStatusId"] == sandbox.shop.config.user_id
    assert sandbox.shop.counters()["writes"]["rest"] == {"sale.order.update": 1}


def test_it_fires_update_events_for_unchanged_saves_unless_switched_off(
    sandbox: Sandbox, receiver, rest
) -> None:
    order_id, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    before = sandbox.crm.get_deal(deal_id)
    rest.ok(sandbox.crm, "crm.deal.update", {"id": deal_id, "fields": {"STAGE_ID": "NEW"}})
    rest.ok(sandbox.shop, "sale.order.update", {"id": order_id, "fields": {"statusId": "N"}})
    _idle(sandbox)
    assert len(receiver.events("ONCRMDEALUPDATE")) == 1
    assert len(receiver.events("ONSALEORDERSAVED")) == 1
    assert sandbox.crm.get_deal(deal_id) == before  # nothing changed, not even DATE_MODIFY
    receiver.clear()
    sandbox.crm.set_options(event_on_noop_update=False)
    sandbox.shop.set_options(event_on_noop_update=False)
    rest.ok(sandbox.crm, "crm.deal.update", {"id": deal_id, "fields": {"STAGE_ID": "NEW"}})
    rest.ok(sandbox.shop, "sale.order.update", {"id": order_id, "fields": {"statusId": "N"}})
    _idle(sandbox)
    assert receiver.events() == []


def test_it_does_not_retry_when_the_handler_fails(sandbox: Sandbox, receiver) -> None:
    receiver.status = 500
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    sandbox.crm.move_deal(deal_id, "EXECUTING")
    _idle(sandbox)
    assert len(receiver.events()) == 1  # [docs/bitrix.md "Events"] no retries
    events = sandbox.crm.counters()["events"]
    assert events["sent"] == {"ONCRMDEALUPDATE": 1}
    assert events["failed"] == {"ONCRMDEALUPDATE": 1}
    assert "delivered" not in events
    assert sandbox.crm.event_log()[-1]["status"] == 500


def test_it_counts_an_unreachable_handler_as_failed(sandbox: Sandbox) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    sandbox.crm.configure_events(handler_url=f"http://127.0.0.1:{dead_port}/crm")
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    sandbox.crm.move_deal(deal_id, "EXECUTING")
    _idle(sandbox)
    assert sandbox.crm.counters()["events"]["failed"] == {"ONCRMDEALUPDATE": 1}


@pytest.mark.parametrize("close", ["", "announced", "silently"])
def test_it_delivers_every_event_however_the_handler_ends_its_connections(
    sandbox: Sandbox, receiver, close: str
) -> None:
    receiver.close = close
    [(_, deal_id)] = sandbox.seed(1, pipeline_share=0.0)
    for stage in ("PREPARATION", "EXECUTING", "FINAL_INVOICE"):
        sandbox.crm.move_deal(deal_id, stage)
        _idle(sandbox)
        if close:
            receiver.wait_closed()  # the next event goes over a connection the handler has closed
    assert len(receiver.events("ONCRMDEALUPDATE")) == 3
    assert sandbox.crm.counters()["events"]["delivered"] == {"ONCRMDEALUPDATE": 3}


def test_it_emits_the_payment_id_on_payment_and_applies_status_on_paid(sandbox: Sandbox, receiver) -> None:
    order_id, _ = sandbox.seed(1)[0]
    payment_id = sandbox.shop.get_order(order_id)["payments"][0]["id"]
    sandbox.shop.pay_order(order_id)
    _idle(sandbox)
    [payment_event] = receiver.events("ONPAYMENTENTITYSAVED")
    assert payment_event.entity_id == payment_id != order_id
    [order_event] = receiver.events("ONSALEORDERSAVED")
    assert order_event.entity_id == order_id
    order = sandbox.shop.get_order(order_id)
    assert (order["payed"], order["statusId"], order["empStatusId"]) == ("Y", "P", None)
    payment = order["payments"][0]
    assert payment["paid"] == "Y"
    assert payment["datePaid"] == order["dateStatus"]
    assert [e.event for e in receiver.events()] == ["ONPAYMENTENTITYSAVED", "ONSALEORDERSAVED"]


def test_it_keeps_the_status_on_payment_when_status_on_paid_is_off(sandbox: Sandbox, receiver) -> None:
    order_id, _ = sandbox.seed(1)[0]
    sandbox.shop.set_options(status_on_paid=None)
    sandbox.shop.pay_order(order_id)
    _idle(sandbox)
    order = sandbox.shop.get_order(order_id)
    assert (order["payed"], order["statusId"]) == ("Y", "N")
    assert len(receiver.events("ONPAYMENTENTITYSAVED")) == 1


def test_it_does_not_apply_status_on_paid_to_a_finished_order(sandbox: Sandbox) -> None:
    order_id, _ = sandbox.seed(1)[0]
    sandbox.shop.set_order_status(order_id, "F")
    sandbox.shop.pay_order(order_id)
    assert sandbox.shop.get_order(order_id)["statusId"] == "F"


def test_it_pays_over_rest_as_the_webhook_user(sandbox: Sandbox, receiver, rest) -> None:
    order_id, _ = sandbox.seed(1)[0]
    payment_id = sandbox.shop.get_order(order_id)["payments"][0]["id"]
    body = rest.ok(sandbox.shop, "sale.payment.update", {"id": payment_id, "fields": {"paid": "Y"}})
    assert body["result"]["payment"]["paid"] == "Y"
    assert sandbox.shop.get_order(order_id)["empStatusId"] == sandbox.shop.config.user_id
    _idle(sandbox)
    assert receiver.events("ONPAYMENTENTITYSAVED")[0].entity_id == payment_id


def test_it_never_delivers_a_pipeline_move_to_an_outgoing_webhook(sandbox: Sandbox, receiver, rest) -> None:
    # api-reference/crm/deals/events/index.md: ONCRMDEALMOVETOCATEGORY is for applications only, and a move
    # fires no ONCRMDEALUPDATE: an outgoing webhook hears nothing of it, even when it asks for the event.
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    sandbox.crm.configure_events(subscribed_events=["ONCRMDEALUPDATE", "ONCRMDEALMOVETOCATEGORY"])
    rest.ok(sandbox.crm, "crm.item.update", {"entityTypeId": 2, "id": deal_id, "fields": {"categoryId": 1}})
    sandbox.crm.move_deal_to_pipeline(deal_id, 0, "PREPARATION", user_id=7)
    _idle(sandbox)
    assert receiver.received == []
    assert sandbox.crm.counters()["events"]["application_only"] == {"ONCRMDEALMOVETOCATEGORY": 2}
    assert sandbox.crm.info()["subscriber"] == "webhook"


def test_it_fires_only_move_to_category_when_a_deal_changes_pipeline(
    sandbox: Sandbox, receiver, rest
) -> None:
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    sandbox.crm.configure_events(subscriber="application")  # event.bind from an application
    rest.ok(sandbox.crm, "crm.item.update", {"entityTypeId": 2, "id": deal_id, "fields": {"categoryId": 1}})
    sandbox.crm.move_deal_to_pipeline(deal_id, 0, "PREPARATION", user_id=7)
    _idle(sandbox)
    assert receiver.events("ONCRMDEALUPDATE") == []
    first, second = receiver.events("ONCRMDEALMOVETOCATEGORY")
    # [docs/bitrix.md "Events"] ID, CATEGORY_ID, STAGE_ID
    assert (
        first.entity_id,
        first.fields["data[FIELDS][CATEGORY_ID]"],
        first.fields["data[FIELDS][STAGE_ID]"],
    ) == (
        deal_id,
        "1",
        "C1:NEW",
    )
    assert second.fields["data[FIELDS][STAGE_ID]"] == "PREPARATION"
    assert sandbox.crm.get_deal(deal_id)["MOVED_BY_ID"] == "7"


def test_it_ignores_another_pipelines_stage_in_deal_update(sandbox: Sandbox, receiver, rest) -> None:
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    before = sandbox.crm.get_deal(deal_id)
    body = rest.ok(sandbox.crm, "crm.deal.update", {"id": deal_id, "fields": {"STAGE_ID": "C1:WON"}})
    assert body["result"] is True  # [docs/bitrix.md "Deals"] "ничего не изменится", still true
    after = sandbox.crm.get_deal(deal_id)
    assert after == before
    _idle(sandbox)
    assert receiver.events("ONCRMDEALMOVETOCATEGORY") == []


def test_it_fires_one_event_per_deal_on_a_bulk_move(sandbox: Sandbox, receiver) -> None:
    pairs = sandbox.seed(30, pipeline_share=0.0, deals_without_order=0)
    deal_ids = [deal_id for _, deal_id in pairs]
    moved = sandbox.crm.bulk_move(deal_ids, "EXECUTING", user_id=9)
    assert moved == deal_ids
    _idle(sandbox)
    assert sorted(e.entity_id for e in receiver.events("ONCRMDEALUPDATE")) == deal_ids
    assert sandbox.crm.counters()["writes"]["human"] == {"crm.deal.update": 30}


def test_it_fires_add_and_delete_events(sandbox: Sandbox, receiver) -> None:
    deal = sandbox.crm.create_deal(title="New", order_id=5)
    sandbox.crm.delete_deal(int(deal["ID"]))
    order = sandbox.shop.create_order(price=100)
    sandbox.shop.delete_order(order["id"])
    _idle(sandbox)
    names = [e.event for e in receiver.events()]
    assert names.count("ONCRMDEALADD") == names.count("ONCRMDEALDELETE") == 1
    assert receiver.events("ONORDERDELETED")[0].entity_id == order["id"]
    # Not subscribed by default (what the README tells to tick): emitted but not sent.
    assert "ONPAYMENTDELETED" not in names
    assert sandbox.shop.counters()["events"]["unsubscribed"]["ONPAYMENTDELETED"] == 1


def test_it_sends_only_subscribed_events(sandbox: Sandbox, receiver) -> None:
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    sandbox.crm.configure_events(subscribed_events=["ONCRMDEALUPDATE"])
    sandbox.crm.move_deal_to_pipeline(deal_id, 1)
    sandbox.crm.move_deal(deal_id, "C1:WON")
    _idle(sandbox)
    assert [e.event for e in receiver.events()] == ["ONCRMDEALUPDATE"]


def test_it_answers_true_to_another_pipelines_stage_and_fires_as_for_any_noop_save(
    sandbox: Sandbox, receiver, rest
) -> None:
    # [docs/bitrix.md "Deals"] STAGE_ID must be a stage of the deal's
    # own pipeline; another pipeline's answers true and changes nothing. Whether an unchanged save fires
    # ONCRMDEALUPDATE is undocumented: the event_on_noop_update option decides, as for any unchanged save.
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    before = sandbox.crm.get_deal(deal_id)
    for noop_event, expected in ((True, [deal_id]), (False, [])):
        sandbox.crm.set_options(event_on_noop_update=noop_event)
        receiver.clear()
        body = rest.ok(
            sandbox.crm, "batch", {"cmd": {"w": f"crm.deal.update?id={deal_id}&fields[STAGE_ID]=C1:WON"}}
        )
        assert body["result"]["result"] == {"w": True}
        _idle(sandbox)
        assert [e.entity_id for e in receiver.events("ONCRMDEALUPDATE")] == expected
    assert sandbox.crm.get_deal(deal_id) == before
    assert sandbox.rest_writes(applied=True) == 0


def test_it_holds_events_while_paused_and_delivers_them_late(sandbox: Sandbox, receiver) -> None:
    order_id, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    sandbox.pause_events()
    sandbox.crm.move_deal(deal_id, "PREPARATION")
    sandbox.shop.set_order_status(order_id, "D")
    assert not sandbox.wait_events_idle(0.3)
    assert receiver.events() == []
    assert sandbox.crm.events.pending() == 1
    sandbox.resume_events()
    _idle(sandbox)
    assert [e.event for e in receiver.events(path="/crm")] == ["ONCRMDEALUPDATE"]
    assert "ONSALEORDERSAVED" in {e.event for e in receiver.events(path="/shop")}


def test_it_pauses_and_resumes_events_over_http(sandbox: Sandbox, receiver) -> None:
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    paused = requests.post(f"{sandbox.crm.base_url}/_sandbox/events/pause", json={}, timeout=5).json()
    assert paused == {"paused": True, "pending": 0}
    sandbox.crm.move_deal(deal_id, "WON")
    resumed = requests.post(f"{sandbox.crm.base_url}/_sandbox/events/resume", json={}, timeout=5).json()
    assert resumed["paused"] is False
    _idle(sandbox)
    assert len(receiver.events("ONCRMDEALUPDATE")) == 1


def test_it_goes_down_and_comes_back_on_the_same_port(sandbox: Sandbox, receiver, rest) -> None:
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    url = sandbox.crm_url
    sandbox.crm.stop()
    with pytest.raises(requests.ConnectionError):
        rest(sandbox.crm, "crm.deal.get", {"id": deal_id}, timeout=1)
    sandbox.crm.start()
    assert sandbox.crm_url == url
    assert rest.ok(sandbox.crm, "crm.deal.get", {"id": deal_id})["result"]["ID"] == str(deal_id)
    sandbox.crm.move_deal(deal_id, "WON")
    _idle(sandbox)
    assert len(receiver.events("ONCRMDEALUPDATE")) == 1
    assert (
        requests.get(f"{sandbox.crm.base_url}/_sandbox/traffic", timeout=5).status_code == 200
    )  # still wired

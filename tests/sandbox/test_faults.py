"""Fault switches: event drop/duplicate/reorder/delay, REST 5xx/timeout/outage/latency, determinism."""

from __future__ import annotations

import time

import pytest
import requests

from bitrix_sandbox import Sandbox

from .conftest import make_config


def _move_all(sandbox: Sandbox, n: int) -> list[int]:
    pairs = sandbox.seed(n, pipeline_share=0.0, deals_without_order=0)
    ids = [deal_id for _, deal_id in pairs]
    for deal_id in ids:
        sandbox.crm.move_deal(deal_id, "PREPARATION")
    return ids


def test_it_drops_events(sandbox: Sandbox, receiver) -> None:
    sandbox.set_faults("crm", drop_rate=1.0)
    _move_all(sandbox, 3)
    assert sandbox.wait_events_idle(5)
    assert receiver.events() == []
    events = sandbox.crm.counters()["events"]
    assert events["dropped"] == {"ONCRMDEALUPDATE": 3}
    assert "sent" not in events
    assert [e["outcome"] for e in sandbox.crm.event_log()] == ["dropped"] * 3


def test_it_duplicates_events(sandbox: Sandbox, receiver) -> None:
    sandbox.set_faults("crm", duplicate_rate=1.0)
    [deal_id] = _move_all(sandbox, 1)
    assert sandbox.wait_events_idle(5)
    assert [e.entity_id for e in receiver.events()] == [deal_id, deal_id]
    events = sandbox.crm.counters()["events"]
    assert events["duplicated"] == {"ONCRMDEALUPDATE": 1}
    assert events["sent"] == {"ONCRMDEALUPDATE": 2}


def test_it_reorders_events_held_within_the_window(sandbox: Sandbox, receiver, wait_until) -> None:
    sandbox.set_faults("crm", reorder_window=0.2)
    ids = _move_all(sandbox, 20)
    assert sandbox.wait_events_idle(5)
    got = [e.entity_id for e in receiver.events()]
    assert sorted(got) == ids
    assert got != ids


def test_it_delays_events(sandbox: Sandbox, receiver) -> None:
    sandbox.set_faults("crm", event_delay=0.3)
    started = time.monotonic()
    _move_all(sandbox, 1)
    assert sandbox.crm.events.pending() == 1
    assert receiver.events() == []
    assert sandbox.wait_events_idle(5)
    assert time.monotonic() - started >= 0.3
    assert len(receiver.events()) == 1


def test_it_answers_500_without_applying_the_call(sandbox: Sandbox, rest) -> None:
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    sandbox.set_faults("crm", error_rate=1.0)
    response = rest(sandbox.crm, "crm.deal.update", {"id": deal_id, "fields": {"STAGE_ID": "WON"}})
    assert response.status_code == 500
    assert response.json()["error"] == "INTERNAL_SERVER_ERROR"
    assert sandbox.crm.get_deal(deal_id)["STAGE_ID"] == "NEW"
    assert sandbox.crm.counters()["rest_rejected"] == {"fault_5xx": 1}


def test_it_applies_the_write_but_answers_after_the_client_timeout(
    sandbox: Sandbox, rest, wait_until
) -> None:
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    sandbox.set_faults("crm", timeout_rate=1.0, timeout_seconds=2.0)
    with pytest.raises(requests.Timeout):
        rest(sandbox.crm, "crm.deal.update", {"id": deal_id, "fields": {"STAGE_ID": "WON"}}, timeout=0.3)
    wait_until(lambda: sandbox.crm.get_deal(deal_id)["STAGE_ID"] == "WON")
    assert sandbox.crm.counters()["rest_rejected"] == {"fault_timeout": 1}


def test_it_answers_503_during_an_outage_then_recovers(sandbox: Sandbox, rest, wait_until) -> None:
    sandbox.set_faults("shop", outage_seconds=0.3)
    response = rest(sandbox.shop, "sale.status.list")
    assert response.status_code == 503
    assert rest(sandbox.crm, "crm.category.list", {"entityTypeId": 2}).status_code == 200  # other portal fine
    wait_until(lambda: rest(sandbox.shop, "sale.status.list").status_code == 200, timeout=3)
    assert sandbox.shop.counters()["rest_rejected"]["outage"] >= 1


def test_it_adds_latency(sandbox: Sandbox, rest) -> None:
    sandbox.set_faults("crm", latency=0.2)
    started = time.monotonic()
    rest.ok(sandbox.crm, "crm.category.list", {"entityTypeId": 2})
    assert time.monotonic() - started >= 0.2


def test_it_rejects_unknown_fault_names(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        sandbox.set_faults(drop_rat=1)


def test_it_is_deterministic_for_a_seed() -> None:
    def run(seed: int) -> tuple[str, str, list[str]]:
        sb = Sandbox(make_config(seed=seed))  # not started: no network needed for this
        sb.crm.configure_events(handler_url="http://127.0.0.1:9/never")
        sb.crm.set_faults(drop_rate=0.5)
        for deal_id in (d for _, d in sb.seed(30, pipeline_share=0.0, deals_without_order=0)):
            sb.crm.move_deal(deal_id, "PREPARATION")
        dropped = [e["fields"]["ID"] for e in sb.crm.event_log() if e["outcome"] == "dropped"]
        return sb.crm.webhook_code, sb.shop_token, dropped

    first, again, other = run(5), run(5), run(6)
    assert first == again
    assert first != other
    assert 5 < len(first[2]) < 25


def _deal_update(deal_id: int, stage: str) -> dict:
    return {"id": deal_id, "fields": {"STAGE_ID": stage}}


def test_it_applies_a_write_then_loses_its_reply_as_a_timeout(sandbox: Sandbox, rest, receiver) -> None:
    _, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    sandbox.set_faults("crm", reply_lost_next=1, timeout_seconds=2.0)
    with pytest.raises(requests.Timeout):
        rest(sandbox.crm, "crm.deal.update", _deal_update(deal_id, "WON"), timeout=0.3)
    assert sandbox.crm.get_deal(deal_id)["STAGE_ID"] == "WON"  # committed
    assert sandbox.wait_events_idle(5)
    assert [e.entity_id for e in receiver.events("ONCRMDEALUPDATE")] == [deal_id]  # and its echo fired
    # Only the next one: the retry is answered.
    assert rest.ok(sandbox.crm, "crm.deal.update", _deal_update(deal_id, "WON"))["result"] is True
    counters = sandbox.crm.counters()
    assert (counters["rest_rejected"], counters["replies_lost"]) == (
        {"reply_lost": 1},
        {"crm.deal.update": 1},
    )
    assert sandbox.crm.faults.snapshot()["reply_lost_next"] == 0


def test_it_answers_500_after_the_commit_when_the_reply_is_lost_as_an_error(sandbox: Sandbox, rest) -> None:
    order_id, _ = sandbox.seed(1)[0]
    sandbox.set_faults("shop", reply_lost_next=1, reply_lost_as="error")
    response = rest(sandbox.shop, "sale.order.update", {"id": order_id, "fields": {"statusId": "D"}})
    assert response.status_code == 500
    assert response.json()["error"] == "INTERNAL_SERVER_ERROR"
    assert sandbox.shop.get_order(order_id)["statusId"] == "D"


def test_it_loses_only_the_replies_of_the_chosen_write_methods(sandbox: Sandbox, rest) -> None:
    order_id, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    sandbox.set_faults(reply_lost_rate=1.0, reply_lost_methods=["crm.deal.update"], reply_lost_as="error")
    assert rest(sandbox.crm, "crm.deal.get", {"id": deal_id}).status_code == 200  # reads never
    assert rest(sandbox.shop, "sale.order.update", {"id": order_id, "fields": {"statusId": "D"}}).ok
    failed = rest(sandbox.crm, "crm.deal.update", _deal_update(deal_id, "WON"))
    assert failed.status_code == 500
    # A write that failed is not "applied then lost".
    missing = rest(sandbox.crm, "crm.deal.update", _deal_update(99999, "WON"))
    assert (missing.status_code, missing.json()["error_description"]) == (400, "Not found")


def test_it_loses_the_reply_of_a_batch_that_carries_a_write(sandbox: Sandbox, rest) -> None:
    pairs = sandbox.seed(2, pipeline_share=0.0, orders_without_deal=0, deals_without_order=0)
    (_, first), (_, second) = pairs
    sandbox.set_faults("crm", reply_lost_next=1, reply_lost_as="error")
    reads = {"a": f"crm.deal.get?id={first}", "b": f"crm.deal.get?id={second}"}
    assert rest(sandbox.crm, "batch", {"cmd": reads}).status_code == 200  # no write, no loss
    writes = {
        "a": f"crm.deal.update?id={first}&fields[STAGE_ID]=PREPARATION",
        "b": f"crm.deal.update?id={second}&fields[STAGE_ID]=WON",
    }
    assert rest(sandbox.crm, "batch", {"cmd": writes}).status_code == 500
    assert [sandbox.crm.get_deal(d)["STAGE_ID"] for d in (first, second)] == ["PREPARATION", "WON"]
    assert sandbox.crm.counters()["replies_lost"] == {"crm.deal.update": 2}


def test_it_loses_every_writes_reply_once(sandbox: Sandbox, rest) -> None:
    order_id, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    sandbox.set_faults(reply_lost_once=True, reply_lost_as="error")
    move = _deal_update(deal_id, "PREPARATION")
    assert rest(sandbox.crm, "crm.deal.update", move).status_code == 500
    assert rest(sandbox.crm, "crm.deal.update", move).status_code == 200  # the same write again: answered
    # The same write as a batch command string is recognised as a repeat too.
    again = {"x": f"crm.deal.update?id={deal_id}&fields[STAGE_ID]=PREPARATION"}
    assert rest(sandbox.crm, "batch", {"cmd": again}).status_code == 200
    assert rest(sandbox.crm, "crm.deal.update", _deal_update(deal_id, "WON")).status_code == 500  # a new one
    status = {"id": order_id, "fields": {"statusId": "D"}}
    assert [rest(sandbox.shop, "sale.order.update", status).status_code for _ in range(2)] == [500, 200]
    sandbox.clear_faults()
    sandbox.set_faults(reply_lost_once=True, reply_lost_as="error")
    assert rest(sandbox.crm, "crm.deal.update", move).status_code == 500  # clearing forgets what was seen


def test_it_counts_applied_writes_apart_from_requested_ones(sandbox: Sandbox, rest) -> None:
    order_id, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    rest.ok(sandbox.crm, "crm.deal.update", _deal_update(deal_id, "WON"))
    rest.ok(sandbox.crm, "crm.deal.update", _deal_update(deal_id, "WON"))  # already there
    rest.ok(sandbox.crm, "crm.deal.update", _deal_update(deal_id, "C1:NEW"))  # another pipeline's stage
    rest.ok(sandbox.shop, "sale.order.update", {"id": order_id, "fields": {"statusId": "N"}})  # unchanged
    assert sandbox.rest_writes() == 4
    assert sandbox.rest_writes(applied=True) == 1
    assert sandbox.crm.counters()["writes_applied"]["rest"] == {"crm.deal.update": 1}


def test_it_rejects_a_bad_reply_lost_setting(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="reply_lost_as"):
        sandbox.set_faults(reply_lost_as="maybe")

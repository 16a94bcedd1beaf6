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

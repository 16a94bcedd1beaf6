"""The HTTP control API (``/_sandbox/...``) and the counters it exposes."""

from __future__ import annotations

import requests

from bitrix_sandbox import Sandbox


def _get(url: str) -> dict:
    response = requests.get(url, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def _post(url: str, body: dict | None = None) -> dict:
    response = requests.post(url, json=body or {}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_it_reports_info_for_each_portal(sandbox: Sandbox) -> None:
    info = _get(f"{sandbox.crm.base_url}/_sandbox/info")
    assert info["kind"] == "crm"
    assert info["webhook_url"] == sandbox.crm_url
    assert info["application_token"] == sandbox.crm_token
    assert "crm.deal.update" in info["methods"]
    shop = _get(f"{sandbox.shop.base_url}/_sandbox/info")
    assert shop["options"]["status_on_paid"] == "P"
    assert shop["subscribed_events"] == ["ONORDERDELETED", "ONPAYMENTENTITYSAVED", "ONSALEORDERSAVED"]


def test_it_seeds_and_reports_state_over_http(sandbox: Sandbox) -> None:
    pairs = _post(f"{sandbox.crm.base_url}/_sandbox/seed", {"n_orders": 4, "deals_without_order": 1})["pairs"]
    assert len(pairs) == 4
    state = _get(f"{sandbox.crm.base_url}/_sandbox/state")
    assert len(state["deals"]) == 5
    assert state["pipelines"]["1"][0] == "C1:NEW"
    order_id, deal_id = pairs[0]
    assert _get(f"{sandbox.crm.base_url}/_sandbox/deal/{deal_id}")["UF_CRM_ORDER_ID"] == str(order_id)
    order = _get(f"{sandbox.shop.base_url}/_sandbox/order/{order_id}")
    assert (
        _get(f"{sandbox.shop.base_url}/_sandbox/payment/{order['payments'][0]['id']}")["orderId"] == order_id
    )
    assert requests.get(f"{sandbox.crm.base_url}/_sandbox/deal/1", timeout=5).status_code == 404


def test_it_runs_human_actions_over_http_and_waits_for_idle(sandbox: Sandbox, receiver) -> None:
    order_id, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    moved = _post(
        f"{sandbox.crm.base_url}/_sandbox/human/move_deal",
        {"deal_id": deal_id, "stage_id": "WON", "user_id": 5},
    )
    assert moved["result"]["MOVED_BY_ID"] == "5"
    _post(f"{sandbox.shop.base_url}/_sandbox/human/pay_order", {"order_id": order_id})
    assert _post(f"{sandbox.crm.base_url}/_sandbox/idle", {"timeout": 5}) == {"idle": True}
    assert {e.event for e in receiver.events()} >= {"ONCRMDEALUPDATE", "ONPAYMENTENTITYSAVED"}
    bad = requests.post(
        f"{sandbox.crm.base_url}/_sandbox/human/move_deal", json={"deal_id": deal_id}, timeout=5
    )
    assert bad.status_code == 400
    unknown = requests.post(f"{sandbox.crm.base_url}/_sandbox/human/fly", json={}, timeout=5)
    assert unknown.status_code == 404


def test_it_sets_faults_options_and_events_over_http(sandbox: Sandbox, receiver) -> None:
    base = sandbox.crm.base_url
    faults = _post(f"{base}/_sandbox/faults", {"drop_rate": 0.5, "latency": 0.01})
    assert (faults["drop_rate"], faults["latency"]) == (0.5, 0.01)
    assert _post(f"{base}/_sandbox/faults", {"clear": True})["drop_rate"] == 0.0
    assert _post(f"{base}/_sandbox/options", {"event_on_noop_update": False}) == {
        "event_on_noop_update": False
    }
    _post(f"{base}/_sandbox/events", {"handler_url": f"{receiver.url}/elsewhere", "application_token": "t0k"})
    sandbox.seed(1, pipeline_share=0.0)
    sandbox.crm.move_deal(101, "WON")
    assert _post(f"{base}/_sandbox/events/idle", {"timeout": 5})["idle"] is True
    [event] = receiver.events()
    assert (event.path, event.fields["auth[application_token]"]) == ("/elsewhere", "t0k")
    assert _get(f"{base}/_sandbox/events/log")[0]["outcome"] == "delivered"


def test_it_counts_rest_calls_and_writes_by_source(sandbox: Sandbox, rest) -> None:
    order_id, deal_id = sandbox.seed(1, pipeline_share=0.0)[0]
    rest.ok(sandbox.crm, "crm.deal.get", {"id": deal_id})
    rest.ok(sandbox.crm, "crm.deal.update", {"id": deal_id, "fields": {"STAGE_ID": "PREPARATION"}})
    sandbox.crm.move_deal(deal_id, "EXECUTING")
    sandbox.shop.set_order_status(order_id, "D")
    counters = _get(f"{sandbox.crm.base_url}/_sandbox/counters")
    assert counters["rest_calls"] == {"crm.deal.get": 1, "crm.deal.update": 1}
    assert counters["writes"] == {
        "seed": {"crm.deal.add": 4},
        "rest": {"crm.deal.update": 1},
        "human": {"crm.deal.update": 1},
    }
    assert sandbox.counters()["shop"]["writes"]["human"] == {"sale.order.update": 1}
    assert sandbox.wait_events_idle(5)
    _post(f"{sandbox.crm.base_url}/_sandbox/reset_counters")
    assert sandbox.crm.counters() == {"events_pending": 0}


def test_it_resets_the_whole_sandbox(sandbox: Sandbox) -> None:
    sandbox.seed(3)
    sandbox.set_faults(drop_rate=1.0)
    _post(f"{sandbox.shop.base_url}/_sandbox/reset")
    assert sandbox.crm.list_deals() == []
    assert sandbox.shop.list_orders() == []
    assert sandbox.crm.faults.snapshot()["drop_rate"] == 0.0
    assert sandbox.seed(1)[0] != (1, 101)  # ids are never reused


def test_it_controls_traffic_over_http(sandbox: Sandbox, wait_until) -> None:
    sandbox.seed(10)
    started = _post(f"{sandbox.crm.base_url}/_sandbox/traffic", {"action": "start", "rate": 100})
    assert started["running"] is True
    wait_until(lambda: sum(_get(f"{sandbox.crm.base_url}/_sandbox/traffic")["actions"].values()) >= 5)
    stopped = _post(f"{sandbox.crm.base_url}/_sandbox/traffic", {"action": "stop"})
    assert stopped["running"] is False


def test_it_exports_the_bxsync_environment(sandbox: Sandbox) -> None:
    env = sandbox.env()
    assert env["BXSYNC_CMS_REST_URL"] == f"{sandbox.shop.base_url}/rest/1/{sandbox.shop.webhook_code}/"
    assert env["BXSYNC_CRM_APP_TOKEN"] == sandbox.crm_token
    assert env["BXSYNC_DEAL_ORDER_FIELD"] == "UF_CRM_ORDER_ID"

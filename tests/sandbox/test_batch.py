"""``batch``: result/result_error shapes, limits, halt, ``$result`` references, counting."""

from __future__ import annotations

import requests

from bitrix_sandbox import Sandbox
from phpquery import http_build_query


def test_it_runs_a_batch_with_results_errors_totals_and_http_200(sandbox: Sandbox, rest) -> None:
    sandbox.seed(60, pipeline_share=0.0, orders_without_deal=0, deals_without_order=0)
    cmd = {
        "list": "crm.deal.list?" + http_build_query({"filter": {">=ID": 101}, "select": ["ID"]}),
        "missing": "crm.deal.get?id=99999",
        "move": "crm.deal.update?" + http_build_query({"id": 101, "fields": {"STAGE_ID": "PREPARATION"}}),
        "stages": "crm.status.list?filter[ENTITY_ID]=DEAL_STAGE",
    }
    response = rest(sandbox.crm, "batch", {"halt": 0, "cmd": cmd})
    assert response.status_code == 200
    body = response.json()["result"]
    assert set(body) == {"result", "result_error", "result_total", "result_next", "result_time"}
    assert len(body["result"]["list"]) == 50
    assert body["result"]["move"] is True
    assert body["result_error"] == {"missing": {"error": "", "error_description": "Not found"}}
    assert body["result_total"] == {"list": 60, "stages": 8}
    assert body["result_next"] == {"list": 50}
    assert set(body["result_time"]) == {"list", "move", "stages"}
    assert sandbox.crm.get_deal(101)["STAGE_ID"] == "PREPARATION"


def test_it_returns_sale_errors_inside_a_batch(sandbox: Sandbox, rest) -> None:
    order_id, _ = sandbox.seed(1)[0]
    body = rest.ok(
        sandbox.shop,
        "batch",
        {"cmd": {"a": f"sale.order.get?id={order_id}", "b": "sale.order.get?id=424242"}},
    )["result"]
    assert body["result"]["a"]["order"]["id"] == order_id
    assert body["result_error"]["b"]["error"] == 201240400001


def test_it_counts_sub_commands_by_their_own_method_and_the_batch_once(sandbox: Sandbox, rest) -> None:
    sandbox.seed(3, orders_without_deal=0, deals_without_order=0)
    cmd = {f"d{i}": f"crm.deal.get?id={101 + i}" for i in range(3)}
    cmd["l"] = "crm.deal.list?select[]=ID"
    rest.ok(sandbox.crm, "batch", {"cmd": cmd})
    calls = sandbox.crm.counters()["rest_calls"]
    assert calls == {"batch": 1, "crm.deal.get": 3, "crm.deal.list": 1}


def test_it_rejects_more_than_50_commands(sandbox: Sandbox, rest) -> None:
    cmd = {f"c{i}": "crm.deal.get?id=1" for i in range(51)}
    response = rest(sandbox.crm, "batch", {"cmd": cmd})
    assert response.status_code == 400
    assert response.json()["error"] == "ERROR_BATCH_LENGTH_EXCEEDED"
    assert rest(sandbox.crm, "batch", {"cmd": dict(list(cmd.items())[:50])}).status_code == 200


def test_it_refuses_a_nested_batch(sandbox: Sandbox, rest) -> None:
    body = rest.ok(sandbox.crm, "batch", {"cmd": {"inner": "batch?cmd[x]=crm.deal.get%3Fid%3D1"}})["result"]
    assert body["result_error"]["inner"]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"


def test_it_stops_at_the_first_error_with_halt(sandbox: Sandbox, rest) -> None:
    sandbox.seed(2, orders_without_deal=0, deals_without_order=0)
    cmd = {"a": "crm.deal.get?id=101", "b": "crm.deal.get?id=99999", "c": "crm.deal.get?id=102"}
    halted = rest.ok(sandbox.crm, "batch", {"halt": 1, "cmd": cmd})["result"]
    assert set(halted["result"]) == {"a"}
    assert set(halted["result_error"]) == {"b"}
    full = rest.ok(sandbox.crm, "batch", {"halt": 0, "cmd": cmd})["result"]
    assert set(full["result"]) == {"a", "c"}


def test_it_substitutes_result_references(sandbox: Sandbox, rest) -> None:
    pairs = sandbox.seed(3, orders_without_deal=0, deals_without_order=0)
    order_id, deal_id = pairs[1]
    cmd = {
        "find": f"crm.deal.list?filter[UF_CRM_ORDER_ID]={order_id}&select[]=ID",
        "get": "crm.deal.get?id=$result[find][0][ID]",
    }
    body = rest.ok(sandbox.crm, "batch", {"cmd": cmd})["result"]
    assert body["result"]["get"]["ID"] == str(deal_id)


def test_it_leaves_a_reference_to_a_row_an_empty_list_lacks_as_its_text(sandbox: Sandbox, rest) -> None:
    # b24restdocs sdk/b24gosdk/index.md "Batch Requests": an unresolved substitution is not an error, "the
    # server substitutes the unresolved text as an ordinary value"; crm.deal.update then refuses an id that is
    # no positive integer (api-reference/crm/deals/crm-deal-update.md "ID is not defined or invalid"), and
    # with halt 0 the commands after it still run (settings/how-to-call-rest-api/batch.md "Error Handling").
    sandbox.seed(1, pipeline_share=0.0, orders_without_deal=0, deals_without_order=0)
    cmd = {
        "find": "crm.deal.list?filter[ID]=101&filter[STAGE_ID]=WON&select[]=ID",
        "move": "crm.deal.update?id=$result[find][0][ID]&fields[STAGE_ID]=PREPARATION",
        "failed": "crm.deal.get?id=99999",
        "after": "crm.deal.update?id=$result[failed][ID]&fields[STAGE_ID]=PREPARATION",
        "back": "crm.deal.get?id=101",
    }
    body = rest.ok(sandbox.crm, "batch", {"halt": 0, "cmd": cmd})["result"]
    assert body["result"]["find"] == []
    assert body["result_error"]["move"]["error_description"] == "ID is not defined or invalid."
    assert body["result_error"]["after"]["error_description"] == "ID is not defined or invalid."
    assert body["result"]["back"]["STAGE_ID"] == "NEW"
    assert sandbox.crm.get_deal(101)["STAGE_ID"] == "NEW"


def test_it_accepts_a_list_of_commands_and_returns_lists(sandbox: Sandbox, rest) -> None:
    sandbox.seed(2, orders_without_deal=0, deals_without_order=0)
    body = rest.ok(sandbox.crm, "batch", {"cmd": ["crm.deal.get?id=101", "crm.deal.get?id=102"]})["result"]
    assert [d["ID"] for d in body["result"]] == ["101", "102"]


def test_it_accepts_a_form_encoded_batch(sandbox: Sandbox) -> None:
    sandbox.seed(1, orders_without_deal=0, deals_without_order=0)
    # [docs/bitrix.md "Parameter encoding"] in a query string the commands are encoded once more.
    data = http_build_query({"halt": 0, "cmd": {"a": "crm.deal.get?id=101"}})
    response = requests.post(
        f"{sandbox.crm_url}batch.json",
        data=data,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    assert response.status_code == 200
    assert response.json()["result"]["result"]["a"]["ID"] == "101"


def test_it_fails_only_the_malformed_command(sandbox: Sandbox, rest) -> None:
    sandbox.seed(1, orders_without_deal=0, deals_without_order=0)
    cmd = {"bad": "crm.deal.list?filter[ID=101", "good": "crm.deal.get?id=101"}
    body = rest.ok(sandbox.crm, "batch", {"cmd": cmd})["result"]
    assert body["result_error"]["bad"]["error"] == "INVALID_ARG_VALUE"
    assert body["result"]["good"]["ID"] == "101"

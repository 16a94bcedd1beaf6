"""REST envelopes, errors, list filters/paging/select and the read methods of both portals."""

from __future__ import annotations

import re

import pytest
import requests

from bitrix_sandbox import Sandbox

ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+03:00$")


def test_it_answers_deal_get_with_result_and_time_envelope(sandbox: Sandbox, rest) -> None:
    _, deal_id = sandbox.seed(1)[0]
    body = rest.ok(sandbox.crm, "crm.deal.get", {"id": deal_id})
    deal = body["result"]
    assert deal["ID"] == str(deal_id)
    assert deal["CATEGORY_ID"] in ("0", "1")
    assert deal["STAGE_SEMANTIC_ID"] == "P"
    assert ISO_WITH_OFFSET.match(deal["DATE_MODIFY"])
    assert set(body["time"]) == {
        "start",
        "finish",
        "duration",
        "processing",
        "date_start",
        "date_finish",
        "operating",
        "operating_reset_at",
    }
    assert ISO_WITH_OFFSET.match(body["time"]["date_start"])


def test_it_accepts_method_without_json_suffix_and_upper_case_params(sandbox: Sandbox) -> None:
    _, deal_id = sandbox.seed(1)[0]
    response = requests.post(f"{sandbox.crm_url}crm.deal.get", json={"ID": deal_id}, timeout=5)
    assert response.status_code == 200
    assert response.json()["result"]["ID"] == str(deal_id)


@pytest.mark.parametrize("portal", ["shop", "crm"])
def test_it_rejects_wrong_webhook_code_or_user_with_401(sandbox: Sandbox, portal: str) -> None:
    p = sandbox.portal(portal)
    for url in (
        f"{p.base_url}/rest/{p.config.user_id}/wrongcode/crm.deal.get.json",
        f"{p.base_url}/rest/999/{p.webhook_code}/crm.deal.get.json",
    ):
        response = requests.post(url, json={"id": 1}, timeout=5)
        assert response.status_code == 401
        assert response.json() == {"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"}


def test_it_answers_unknown_method_with_404(sandbox: Sandbox, rest) -> None:
    response = rest(sandbox.crm, "crm.deal.frobnicate", {})
    assert response.status_code == 404
    assert response.json()["error"] == "ERROR_METHOD_NOT_FOUND"
    # A sale method does not exist on the CRM portal and vice versa.
    assert rest(sandbox.shop, "crm.deal.get", {"id": 1}).status_code == 404


def test_it_answers_missing_or_invalid_deal_with_400_and_empty_error(sandbox: Sandbox, rest) -> None:
    missing = rest(sandbox.crm, "crm.deal.get", {"id": 99999})
    assert missing.status_code == 400
    assert missing.json() == {"error": "", "error_description": "Not found"}
    invalid = rest(sandbox.crm, "crm.deal.get", {"id": "abc"})
    assert invalid.status_code == 400
    assert invalid.json()["error"] == ""
    assert invalid.json()["error_description"].startswith("ID is not defined or invalid")
    update_missing = rest(sandbox.crm, "crm.deal.update", {"id": 99999, "fields": {"STAGE_ID": "WON"}})
    assert update_missing.status_code == 400
    assert update_missing.json()["error_description"] == "Not found"


def test_it_answers_missing_sale_entities_with_numeric_errors(sandbox: Sandbox, rest) -> None:
    # api-reference/sale/order/sale-order-get.md: the table gives 201240400001, the example 200540400001.
    order = rest(sandbox.shop, "sale.order.get", {"id": 424242})
    assert order.status_code == 400
    assert order.json() == {"error": 201240400001, "error_description": "Order not found"}
    update = rest(sandbox.shop, "sale.order.update", {"id": 424242, "fields": {"statusId": "P"}})
    assert update.json()["error"] == 200540400001
    payment = rest(sandbox.shop, "sale.payment.get", {"id": 424242})
    assert payment.status_code == 400
    assert payment.json()["error"] == 200640400001
    no_fields = rest(sandbox.shop, "sale.order.update", {"id": 1})
    assert no_fields.json()["error"] == 100


def test_it_accepts_form_encoded_bracket_bodies(sandbox: Sandbox) -> None:
    sandbox.seed(5, orders_without_deal=0, deals_without_order=0)
    response = requests.post(
        f"{sandbox.crm_url}crm.deal.list.json",
        data="filter%5B%3EID%5D=102&select%5B%5D=ID&order%5BID%5D=DESC",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    assert response.status_code == 200
    assert response.json()["result"] == [{"ID": "105"}, {"ID": "104"}, {"ID": "103"}]


def test_it_accepts_query_string_parameters(sandbox: Sandbox) -> None:
    sandbox.seed(2, orders_without_deal=0, deals_without_order=0)
    response = requests.get(f"{sandbox.crm_url}crm.deal.get.json?id=101", timeout=5)
    assert response.json()["result"]["ID"] == "101"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (">ID", 103, [104, 105]),
        (">=ID", 103, [103, 104, 105]),
        ("<ID", 103, [101, 102]),
        ("<=ID", 103, [101, 102, 103]),
        ("=ID", 103, [103]),
        ("ID", "103", [103]),
        ("!ID", 103, [101, 102, 104, 105]),
        ("!=ID", 103, [101, 102, 104, 105]),
        ("@ID", [101, 105], [101, 105]),
        ("!@ID", [101, 105], [102, 103, 104]),
        ("%TITLE", "№3", [103]),
        ("STAGE_ID", "NEW", [101, 102, 103, 104, 105]),
    ],
)
def test_it_filters_deal_list_by_each_prefix(
    sandbox: Sandbox, rest, key: str, value, expected: list[int]
) -> None:
    sandbox.seed(5, pipeline_share=0.0, orders_without_deal=0, deals_without_order=0)
    body = rest.ok(sandbox.crm, "crm.deal.list", {"filter": {key: value}, "select": ["ID"]})
    assert [int(d["ID"]) for d in body["result"]] == expected
    assert body["total"] == len(expected)


def test_it_finds_the_deal_linked_to_an_order_through_the_order_field(sandbox: Sandbox, rest) -> None:
    pairs = sandbox.seed(4)
    order_id, deal_id = pairs[2]
    for value in (order_id, str(order_id)):
        body = rest.ok(sandbox.crm, "crm.deal.list", {"filter": {"UF_CRM_ORDER_ID": value}, "select": ["ID"]})
        assert body["result"] == [{"ID": str(deal_id)}]
    none = rest.ok(sandbox.crm, "crm.deal.list", {"filter": {"UF_CRM_ORDER_ID": 99999}})
    assert none["result"] == []
    assert none["total"] == 0


def test_it_compares_dates_given_with_an_offset(sandbox: Sandbox, rest) -> None:
    sandbox.seed(3, orders_without_deal=0, deals_without_order=0)
    # Backdate two deals (white box) so the date filter has something to separate.
    sandbox.crm.deals[101]["DATE_MODIFY"] = "2024-01-10T10:00:00+03:00"
    sandbox.crm.deals[102]["DATE_MODIFY"] = "2024-01-10T12:00:00+03:00"
    cases = {
        "2024-01-10T11:00:00+03:00": [102, 103],
        "2024-01-10T08:30:00+00:00": [102, 103],  # = 11:30 +03:00
        "2024-01-10T09:30:00+00:00": [103],  # = 12:30 +03:00
        "2024-01-10T09:00:00-01:00": [103],  # = 13:00 +03:00
    }
    for since, expected in cases.items():
        body = rest.ok(sandbox.crm, "crm.deal.list", {"filter": {">DATE_MODIFY": since}, "select": ["ID"]})
        assert [int(d["ID"]) for d in body["result"]] == expected, since
    body = rest.ok(sandbox.crm, "crm.deal.list", {"filter": {"<=DATE_MODIFY": "2024-01-10T10:00:00+03:00"}})
    assert [int(d["ID"]) for d in body["result"]] == [101]


@pytest.mark.parametrize(
    "since",
    [
        "2024-01-10T11:00:00.123456+00:00",  # Python's isoformat() with microseconds
        "2024-01-10T11:00:00",  # no offset
        "2024-01-10T11:00:00Z",
        "2024-01-10",
        "10.01.2024 11:00:00",
    ],
)
def test_it_refuses_a_filter_datetime_not_in_the_documented_form(sandbox: Sandbox, rest, since) -> None:
    # api-reference/data-types.md: datetime is YYYY-MM-DDThh:mm:ss±hh:mm. Each list answers its documented
    # general error (api-reference/crm/deals/crm-deal-list.md; api-reference/sale/order/sale-order-list.md).
    deals = rest(sandbox.crm, "crm.deal.list", {"filter": {">DATE_MODIFY": since}})
    assert (deals.status_code, deals.json()["error"]) == (400, "")
    assert deals.json()["error_description"] == "Failed to get list. General error."
    orders = rest(sandbox.shop, "sale.order.list", {"filter": {">dateUpdate": since}})
    assert (orders.status_code, orders.json()["error"]) == (400, 0)


def test_it_pages_lists_by_50_with_total_and_next(sandbox: Sandbox, rest) -> None:
    sandbox.seed(120, orders_without_deal=2, deals_without_order=3)
    first = rest.ok(sandbox.crm, "crm.deal.list", {"select": ["ID"]})
    assert len(first["result"]) == 50
    assert (first["total"], first["next"]) == (123, 50)
    last = rest.ok(sandbox.crm, "crm.deal.list", {"select": ["ID"], "start": 100})
    assert len(last["result"]) == 23
    assert last["total"] == 123
    assert "next" not in last
    orders = rest.ok(sandbox.shop, "sale.order.list", {"start": 50})
    assert len(orders["result"]["orders"]) == 50
    assert (orders["total"], orders["next"]) == (122, 100)
    fast = rest.ok(sandbox.crm, "crm.deal.list", {"select": ["ID"], "start": -1})
    assert len(fast["result"]) == 50
    # [docs/bitrix.md "Lists"] no count query: total 0, no next.
    assert (fast["total"], "next" in fast) == (0, False)


def test_it_selects_fields_like_bitrix(sandbox: Sandbox, rest) -> None:
    sandbox.seed(1, orders_without_deal=0, deals_without_order=0)
    default = rest.ok(sandbox.crm, "crm.deal.list", {})["result"][0]
    assert "UF_CRM_ORDER_ID" in default  # default select is '*' + 'UF_*'
    star = rest.ok(sandbox.crm, "crm.deal.list", {"select": ["*"]})["result"][0]
    assert "UF_CRM_ORDER_ID" not in star
    assert "STAGE_ID" in star
    both = rest.ok(sandbox.crm, "crm.deal.list", {"select": ["*", "UF_*"]})["result"][0]
    assert both == default
    few = rest.ok(sandbox.crm, "crm.deal.list", {"select": ["STAGE_ID", "UF_CRM_ORDER_ID"]})["result"][0]
    assert set(few) == {"STAGE_ID", "UF_CRM_ORDER_ID"}


def test_it_orders_lists(sandbox: Sandbox, rest) -> None:
    sandbox.seed(3, orders_without_deal=0, deals_without_order=0)
    body = rest.ok(sandbox.crm, "crm.deal.list", {"order": {"ID": "DESC"}, "select": ["ID"]})
    assert [d["ID"] for d in body["result"]] == ["103", "102", "101"]
    orders = rest.ok(sandbox.shop, "sale.order.list", {"order": {"id": "desc"}, "select": ["id"]})
    assert orders["result"]["orders"] == [{"id": 3}, {"id": 2}, {"id": 1}]


def test_it_rejects_a_filter_that_is_not_an_object(sandbox: Sandbox, rest) -> None:
    response = rest(sandbox.crm, "crm.deal.list", {"filter": "ID=1"})
    assert response.status_code == 400
    assert response.json() == {"error": "", "error_description": "Parameter 'filter' must be array."}


def test_it_lists_sale_orders_changed_since(sandbox: Sandbox, rest) -> None:
    sandbox.seed(3, orders_without_deal=0, deals_without_order=0)
    sandbox.shop.orders[1]["dateUpdate"] = "2024-01-10T10:00:00+03:00"
    body = rest.ok(
        sandbox.shop,
        "sale.order.list",
        {"filter": {">dateUpdate": "2024-06-01T00:00:00+03:00"}, "select": ["id"]},
    )
    assert body["result"]["orders"] == [{"id": 2}, {"id": 3}]
    assert body["total"] == 2
    by_status = rest.ok(sandbox.shop, "sale.order.list", {"filter": {"@statusId": ["N", "P"], "payed": "N"}})
    assert by_status["total"] == 3


def test_it_returns_orders_with_payments_and_payments_by_id(sandbox: Sandbox, rest) -> None:
    order_id, _ = sandbox.seed(1)[0]
    order = rest.ok(sandbox.shop, "sale.order.get", {"id": order_id})["result"]["order"]
    assert order["id"] == order_id
    assert (order["statusId"], order["payed"], order["canceled"]) == ("N", "N", "N")
    assert ISO_WITH_OFFSET.match(order["dateUpdate"])
    [payment] = order["payments"]
    assert payment["orderId"] == order_id
    assert payment["id"] != order_id  # separate id ranges
    assert (payment["paid"], payment["isReturn"]) == ("N", "N")
    got = rest.ok(sandbox.shop, "sale.payment.get", {"id": payment["id"]})["result"]["payment"]
    assert got == payment
    listed = rest.ok(sandbox.shop, "sale.payment.list", {"filter": {"orderId": order_id}})
    assert listed["result"]["payments"] == [payment]
    assert listed["total"] == 1


def test_it_lists_deal_stages_per_pipeline(sandbox: Sandbox, rest) -> None:
    default = rest.ok(
        sandbox.crm, "crm.status.list", {"filter": {"ENTITY_ID": "DEAL_STAGE"}, "order": {"SORT": "ASC"}}
    )
    ids = [row["STATUS_ID"] for row in default["result"]]
    assert ids == [
        "NEW",
        "PREPARATION",
        "PREPAYMENT_INVOICE",
        "EXECUTING",
        "FINAL_INVOICE",
        "WON",
        "LOSE",
        "APOLOGY",
    ]
    assert [row["STATUS_ID"] for row in default["result"] if row["SEMANTICS"] == "S"] == ["WON"]
    assert {row["EXTRA"]["SEMANTICS"] for row in default["result"]} == {
        "process",
        "success",
        "failure",
        "apology",
    }
    row = default["result"][0]
    assert {
        "ID",
        "ENTITY_ID",
        "STATUS_ID",
        "NAME",
        "SORT",
        "SYSTEM",
        "CATEGORY_ID",
        "COLOR",
        "SEMANTICS",
        "EXTRA",
    } <= set(row)
    extra = rest.ok(sandbox.crm, "crm.status.list", {"filter": {"ENTITY_ID": "DEAL_STAGE_1"}})
    assert all(r["STATUS_ID"].startswith("C1:") and r["CATEGORY_ID"] == "1" for r in extra["result"])
    assert [r["STATUS_ID"] for r in extra["result"] if r["SEMANTICS"] == "S"] == ["C1:WON"]
    assert extra["total"] == 6


def test_it_lists_deal_pipelines(sandbox: Sandbox, rest) -> None:
    body = rest.ok(sandbox.crm, "crm.category.list", {"entityTypeId": 2})
    categories = body["result"]["categories"]
    assert [(c["id"], c["isDefault"], c["entityTypeId"]) for c in categories] == [(0, "Y", 2), (1, "N", 2)]
    assert body["total"] == 2
    wrong = rest(sandbox.crm, "crm.category.list", {"entityTypeId": 999})
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "NOT_FOUND"


def test_it_lists_sale_statuses(sandbox: Sandbox, rest) -> None:
    body = rest.ok(sandbox.shop, "sale.status.list", {})
    statuses = body["result"]["statuses"]
    assert set(statuses[0]) == {"id", "type", "notify", "sort", "color", "xmlId"}
    assert [s["id"] for s in statuses if s["type"] == "O"] == ["N", "P", "D", "F", "C"]
    assert {s["type"] for s in statuses} == {"O", "D"}
    assert body["total"] == len(statuses)
    only_orders = rest.ok(sandbox.shop, "sale.status.list", {"filter": {"type": "O"}})
    assert only_orders["total"] == 5
    names = rest.ok(sandbox.shop, "sale.statusLang.list", {"filter": {"statusId": "N"}})
    assert names["result"]["statusLangs"][0]["name"] == "Принят, ожидается оплата"


def test_it_updates_an_order_status_and_rejects_an_unknown_one(sandbox: Sandbox, rest) -> None:
    order_id, _ = sandbox.seed(1)[0]
    body = rest.ok(sandbox.shop, "sale.order.update", {"id": order_id, "fields": {"statusId": "D"}})
    order = body["result"]["order"]
    assert (order["statusId"], order["empStatusId"]) == ("D", sandbox.shop.config.user_id)
    assert "payments" not in order
    bad = rest(sandbox.shop, "sale.order.update", {"id": order_id, "fields": {"statusId": "ZZ"}})
    assert bad.status_code == 400
    assert sandbox.shop.get_order(order_id)["statusId"] == "D"
    delivery_status = rest(sandbox.shop, "sale.order.update", {"id": order_id, "fields": {"statusId": "DN"}})
    assert delivery_status.status_code == 400


def test_it_moves_pipelines_with_crm_item_update(sandbox: Sandbox, rest) -> None:
    sandbox.seed(1, pipeline_share=0.0)
    deal_id = 101
    body = rest.ok(
        sandbox.crm,
        "crm.item.update",
        {"entityTypeId": 2, "id": deal_id, "fields": {"categoryId": 1, "stageId": "C1:PREPARATION"}},
    )
    assert body["result"]["item"]["categoryId"] == 1
    deal = sandbox.crm.get_deal(deal_id)
    assert (deal["CATEGORY_ID"], deal["STAGE_ID"], deal["MOVED_BY_ID"]) == ("1", "C1:PREPARATION", "1")
    missing = rest(sandbox.crm, "crm.item.update", {"entityTypeId": 2, "id": 5, "fields": {"categoryId": 1}})
    assert missing.status_code == 400
    assert missing.json()["error"] == "NOT_FOUND"


def test_it_adds_and_deletes_deals_and_orders_over_rest(sandbox: Sandbox, rest) -> None:
    deal_id = rest.ok(sandbox.crm, "crm.deal.add", {"fields": {"TITLE": "x", "UF_CRM_ORDER_ID": "77"}})[
        "result"
    ]
    assert sandbox.crm.get_deal(deal_id)["UF_CRM_ORDER_ID"] == "77"
    assert rest.ok(sandbox.crm, "crm.deal.delete", {"id": deal_id})["result"] is True
    assert sandbox.crm.get_deal(deal_id) is None
    order = rest.ok(sandbox.shop, "sale.order.add", {"fields": {"price": 500, "currency": "RUB"}})["result"][
        "order"
    ]
    assert rest.ok(sandbox.shop, "sale.order.delete", {"id": order["id"]})["result"] is True
    assert sandbox.shop.get_order(order["id"]) is None


def test_it_answers_400_to_a_malformed_form_body(sandbox: Sandbox) -> None:
    # Stricter than PHP's parse_str (phpquery): the client's bug shows instead of a quietly different call.
    response = requests.post(
        f"{sandbox.crm_url}crm.deal.list.json",
        data="filter[ID=1&select[]=ID",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "INVALID_REQUEST"
    assert "malformed" in response.json()["error_description"]


def test_it_lists_status_names_in_russian_and_english(sandbox: Sandbox, rest) -> None:
    # [docs/bitrix.md "The shop"]
    body = rest.ok(sandbox.shop, "sale.statuslang.list", {"filter": {"@statusId": ["N", "F"]}})
    names = {(row["statusId"], row["lid"]): row["name"] for row in body["result"]["statusLangs"]}
    assert names == {
        ("N", "ru"): "Принят, ожидается оплата",
        ("N", "en"): "Accepted, awaiting payment",
        ("F", "ru"): "Выполнен",
        ("F", "en"): "Completed",
    }
    english = rest.ok(
        sandbox.shop, "sale.statuslang.list", {"filter": {"lid": "en"}, "select": ["statusId", "name"]}
    )
    assert english["total"] == 7
    assert set(english["result"]["statusLangs"][0]) == {"statusId", "name"}


def test_it_describes_pipelines_like_crm_category_list(sandbox: Sandbox, rest) -> None:
    # [docs/bitrix.md "Stages and pipelines"] created pipelines carry originId and
    # originatorId, the default one does not.
    default, extra = rest.ok(sandbox.crm, "crm.category.list", {"entityTypeId": 2})["result"]["categories"]
    assert set(default) == {"id", "name", "sort", "entityTypeId", "isDefault"}
    assert set(extra) == {"id", "name", "sort", "entityTypeId", "isDefault", "originId", "originatorId"}
    assert (default["name"], extra["name"]) == ("Общая", "Опт")


def test_it_lists_payments_by_id_with_the_documented_equals_and_an_array(sandbox: Sandbox, rest) -> None:
    # api-reference/sale/payment/sale-payment-list.md: `=` "works with arrays as well"; its own example
    # filters with `@personTypeId` too, so `@` is accepted as well.
    pairs = sandbox.seed(3, orders_without_deal=0, deals_without_order=0)
    payment_ids = [sandbox.shop.get_order(order_id)["payments"][0]["id"] for order_id, _ in pairs[:2]]
    for key in ("=id", "@id"):
        body = rest.ok(sandbox.shop, "sale.payment.list", {"filter": {key: payment_ids}, "select": ["id"]})
        assert [row["id"] for row in body["result"]["payments"]] == payment_ids, key


def test_it_redirects_every_rest_call_of_a_renamed_portal_to_its_new_address(sandbox: Sandbox, rest) -> None:
    # settings/how-to-call-rest-api/change-domen.md: the old address redirects to the new one.
    old_url = sandbox.crm_url
    new_base = sandbox.crm.move_address()
    response = requests.post(f"{old_url}crm.deal.list.json", json={}, timeout=5, allow_redirects=False)
    assert response.status_code == 302
    assert (
        response.headers["Location"]
        == f"{new_base}{old_url.split(sandbox.crm.base_url)[1]}crm.deal.list.json"
    )
    assert requests.post(response.headers["Location"], json={}, timeout=5).json()["total"] == 0
    sandbox.crm.address_restore()
    assert requests.post(f"{old_url}crm.deal.list.json", json={}, timeout=5).status_code == 200


def test_it_answers_true_and_changes_nothing_for_a_deleted_stage(sandbox: Sandbox, rest) -> None:
    # api-reference/crm/deals/crm-deal-update.md: "an incorrect field in fields will be ignored", and no error
    # for an unknown STAGE_ID is listed [docs/bitrix.md "Deals"].
    sandbox.seed(1, pipeline_share=0.0)
    deal_id = 101
    packed = sandbox.crm.add_stage(0, "UC_PACKED", "Упакован", 45)
    sandbox.crm.move_deal(deal_id, packed)
    sandbox.crm.delete_stage("PREPARATION")

    body = rest.ok(sandbox.crm, "crm.deal.update", {"id": deal_id, "fields": {"STAGE_ID": "PREPARATION"}})
    stages = rest.ok(sandbox.crm, "crm.status.list", {"filter": {"ENTITY_ID": "DEAL_STAGE"}})["result"]

    assert body["result"] is True
    assert sandbox.crm.get_deal(deal_id)["STAGE_ID"] == packed
    codes = [row["STATUS_ID"] for row in stages]
    assert packed in codes
    assert "PREPARATION" not in codes
    sandbox.crm.delete_stage(packed)
    assert sandbox.crm.get_deal(deal_id)["STAGE_ID"] == packed  # a deal keeps a deleted stage's id
    sandbox.reset()
    assert "PREPARATION" in sandbox.crm.pipeline_stages(0)
    assert packed not in sandbox.crm.pipeline_stages(0)

"""Who the webhook is and how the portal is set up (bitrix_sandbox/account.py): the system methods, and the
switches that make each of `bitrix doctor`'s findings happen."""

from __future__ import annotations

import requests

from bitrix_sandbox import Sandbox


def test_it_answers_the_system_methods_as_documented(sandbox: Sandbox, rest) -> None:
    # api-reference/common/system/scope.md, server-time.md, feature-get.md; common/users/user-admin.md
    assert rest.ok(sandbox.crm, "scope")["result"] == ["crm"]
    assert rest.ok(sandbox.shop, "scope")["result"] == ["sale"]
    assert rest.ok(sandbox.shop, "user.admin")["result"] is True
    assert rest.ok(sandbox.crm, "feature.get", {"CODE": "rest_offline_extended"})["result"] == {"value": "Y"}
    assert rest.ok(sandbox.crm, "server.time")["result"].endswith("+03:00")
    assert rest.ok(sandbox.crm, "app.info")["result"]["LICENSE_FAMILY"] == "pro"
    # api-reference/events/event-get.md: applications only
    assert rest(sandbox.crm, "event.get").json()["error"] == "WRONG_AUTH_TYPE"


def test_it_refuses_methods_outside_the_webhooks_scopes(sandbox: Sandbox, rest) -> None:
    sandbox.set_account("crm", scopes=["user"])

    answer = rest(sandbox.crm, "crm.deal.list")

    assert (answer.status_code, answer.json()["error"]) == (403, "insufficient_scope")
    assert rest.ok(sandbox.crm, "scope")["result"] == ["user"]


def test_it_refuses_the_shop_to_a_user_who_is_no_administrator(sandbox: Sandbox, rest) -> None:
    sandbox.set_account("shop", admin=False)

    answer = rest(sandbox.shop, "sale.order.list")

    assert answer.json()["error"] == 200040300010
    assert rest.ok(sandbox.shop, "user.admin")["result"] is False


def test_it_hides_the_deal_field_and_deleted_stages(sandbox: Sandbox, rest) -> None:
    assert rest.ok(sandbox.crm, "crm.deal.fields")["result"]["UF_CRM_ORDER_ID"]["type"] == "string"
    sandbox.set_account("crm", order_field_listed=False, deleted_stages=["PREPARATION"])

    assert "UF_CRM_ORDER_ID" not in rest.ok(sandbox.crm, "crm.deal.fields")["result"]
    stages = rest.ok(sandbox.crm, "crm.status.list", {"filter": {"ENTITY_ID": "DEAL_STAGE"}})["result"]
    assert "PREPARATION" not in {row["STATUS_ID"] for row in stages}


def test_it_gives_the_undocumented_answers_it_is_set_to(sandbox: Sandbox, rest) -> None:
    pairs = sandbox.seed(2, orders_without_deal=0, deals_without_order=0)
    sandbox.set_account(
        "shop",
        start_minus_one="error",
        payment_array_filter="ignored",
        order_not_found_code=201240400001,
        datetime_offset_filter="error",
    )
    shop = sandbox.shop

    assert rest(shop, "sale.order.list", {"start": -1}).status_code == 400
    one_order = {"filter": {"orderId": [pairs[0][0]]}}
    # The filter ignored: both orders' payments.
    assert len(rest.ok(shop, "sale.payment.list", one_order)["result"]["payments"]) == 2
    assert rest(shop, "sale.order.get", {"id": 999999}).json()["error"] == 201240400001
    late = {"filter": {">dateUpdate": "2026-12-07T15:04:05+03:00"}}
    assert rest(shop, "sale.order.list", late).status_code == 400


def test_it_skews_the_portals_clock_until_reset(sandbox: Sandbox, rest) -> None:
    sandbox.set_account("crm", clock_skew=3600)
    skewed = rest.ok(sandbox.crm, "server.time")["result"]

    sandbox.reset()

    assert skewed > rest.ok(sandbox.crm, "server.time")["result"]
    assert requests.get(f"{sandbox.crm.base_url}/_sandbox/account", timeout=5).json()["clock_skew"] == 0.0

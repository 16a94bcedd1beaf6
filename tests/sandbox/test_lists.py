"""Many entities per command, as Bitrix documents it: ``@`` filters, 50 a page, ``start=-1`` and ``>ID``."""

from __future__ import annotations

from bitrix_sandbox import Sandbox
from phpquery import http_build_query


def test_it_reads_many_deals_by_id_in_one_command(sandbox: Sandbox, rest) -> None:
    # [docs/bitrix.md "Lists"] "@" is IN, the value an array.
    pairs = sandbox.seed(5, orders_without_deal=0, deals_without_order=0)
    wanted = [pairs[0][1], pairs[3][1], 99999]
    body = rest.ok(sandbox.crm, "crm.deal.list", {"filter": {"@ID": wanted}, "select": ["ID", "STAGE_ID"]})
    assert [int(d["ID"]) for d in body["result"]] == wanted[:2]
    assert body["total"] == 2


def test_it_reads_deals_by_many_order_ids_combined_with_other_conditions(sandbox: Sandbox, rest) -> None:
    pairs = sandbox.seed(6, pipeline_share=0.0, orders_without_deal=0, deals_without_order=0)
    sandbox.crm.move_deal(pairs[1][1], "PREPARATION")
    orders = [str(o) for o, _ in pairs[:4]]
    body = rest.ok(
        sandbox.crm,
        "crm.deal.list",
        {
            "filter": {"@UF_CRM_ORDER_ID": orders, "@ID": [d for _, d in pairs[1:]], "STAGE_ID": "NEW"},
            "select": ["ID", "UF_CRM_ORDER_ID"],
        },
    )
    assert [(int(d["UF_CRM_ORDER_ID"]), int(d["ID"])) for d in body["result"]] == [pairs[2], pairs[3]]
    numbers = rest.ok(sandbox.crm, "crm.deal.list", {"filter": {"@UF_CRM_ORDER_ID": [pairs[5][0]]}})
    assert [int(d["ID"]) for d in numbers["result"]] == [pairs[5][1]]  # ints match the string field too


def test_it_reads_many_orders_and_their_payments_by_id(sandbox: Sandbox, rest) -> None:
    pairs = sandbox.seed(4, orders_without_deal=0, deals_without_order=0)
    order_ids = [pairs[0][0], pairs[2][0]]
    orders = rest.ok(sandbox.shop, "sale.order.list", {"filter": {"@id": order_ids}, "select": ["id"]})
    assert orders["result"]["orders"] == [{"id": order_ids[0]}, {"id": order_ids[1]}]
    assert orders["total"] == 2
    payments = rest.ok(
        sandbox.shop, "sale.payment.list", {"filter": {"@orderId": order_ids}, "select": ["id", "orderId"]}
    )
    assert [p["orderId"] for p in payments["result"]["payments"]] == order_ids
    # [docs/bitrix.md "Lists"] "=" works with arrays too.
    same = rest.ok(sandbox.shop, "sale.payment.list", {"filter": {"=orderId": order_ids}, "select": ["id"]})
    assert same["total"] == 2


def test_it_pages_an_id_filter_by_50_with_next_and_total(sandbox: Sandbox, rest) -> None:
    pairs = sandbox.seed(60, orders_without_deal=0, deals_without_order=0)
    ids = [d for _, d in pairs]
    first = rest.ok(sandbox.crm, "crm.deal.list", {"filter": {"@ID": ids}, "select": ["ID"]})
    assert (len(first["result"]), first["total"], first["next"]) == (50, 60, 50)
    second = rest.ok(sandbox.crm, "crm.deal.list", {"filter": {"@ID": ids}, "select": ["ID"], "start": 50})
    assert (len(second["result"]), second["total"], "next" in second) == (10, 60, False)
    orders = rest.ok(sandbox.shop, "sale.order.list", {"filter": {"@id": [o for o, _ in pairs]}})
    assert (len(orders["result"]["orders"]), orders["total"], orders["next"]) == (50, 60, 50)


def test_it_pages_by_id_without_a_count_when_start_is_minus_one(sandbox: Sandbox, rest) -> None:
    # [docs/bitrix.md "Lists"] start=-1: no count (total 0, no next); order by ID, filter >ID,
    # stop at a page shorter than 50.
    sandbox.seed(120, orders_without_deal=0, deals_without_order=0)
    seen: list[int] = []
    last, calls = 0, 0
    while True:
        body = rest.ok(
            sandbox.crm,
            "crm.deal.list",
            {"order": {"ID": "ASC"}, "filter": {">ID": last}, "select": ["ID"], "start": -1},
        )
        calls += 1
        assert (body["total"], "next" in body) == (0, False)
        seen += [int(d["ID"]) for d in body["result"]]
        if len(body["result"]) < 50:
            break
        last = seen[-1]
    assert (len(seen), len(set(seen)), calls) == (120, 120, 3)
    orders = rest.ok(
        sandbox.shop, "sale.order.list", {"filter": {">id": 100}, "start": -1, "order": {"id": "asc"}}
    )
    assert ([o["id"] for o in orders["result"]["orders"]], orders["total"]) == (list(range(101, 121)), 0)


def test_it_reads_many_entities_per_command_inside_a_batch(sandbox: Sandbox, rest) -> None:
    # What the client sends: http_build_query sub-commands, so the id lists arrive as filter[@ID][0]=…
    pairs = sandbox.seed(60, orders_without_deal=0, deals_without_order=0)
    deals, orders = [d for _, d in pairs], [o for o, _ in pairs]
    crm = {
        "page1": "crm.deal.list?" + http_build_query({"filter": {"@ID": deals[:50]}, "select": ["ID"]}),
        "page2": "crm.deal.list?" + http_build_query({"filter": {"@ID": deals[50:]}, "select": ["ID"]}),
        "by_order": "crm.deal.list?"
        + http_build_query({"filter": {"@UF_CRM_ORDER_ID": orders[:3]}, "select": ["ID"], "start": -1}),
    }
    body = rest.ok(sandbox.crm, "batch", {"cmd": crm})["result"]
    assert [len(body["result"][k]) for k in ("page1", "page2", "by_order")] == [50, 10, 3]
    assert body["result_total"] == {"page1": 50, "page2": 10, "by_order": 0}
    assert body["result_next"] == []
    assert body["result_error"] == []
    shop = {
        "orders": "sale.order.list?" + http_build_query({"filter": {"@id": orders[:50]}, "select": ["id"]}),
        "payments": "sale.payment.list?"
        + http_build_query({"filter": {"@orderId": orders[:50]}, "select": ["id", "orderId", "paid"]}),
    }
    body = rest.ok(sandbox.shop, "batch", {"cmd": shop})["result"]
    assert len(body["result"]["orders"]["orders"]) == 50
    assert {p["orderId"] for p in body["result"]["payments"]["payments"]} == set(orders[:50])
    assert body["result_total"] == {"orders": 50, "payments": 50}
    assert sandbox.shop.counters()["rest_requests"] == 1

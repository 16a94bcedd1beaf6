"""The traffic generator only does plausible things and stops when told."""

from __future__ import annotations

from bitrix_sandbox import Sandbox, TrafficConfig, TrafficGenerator


def test_it_only_does_plausible_things(sandbox: Sandbox) -> None:
    sandbox.seed(30)
    traffic = TrafficGenerator(sandbox.shop, sandbox.crm, TrafficConfig(seed=3))
    for _ in range(300):
        traffic.step()
    actions = traffic.stats()["actions"]
    for name in ("advance_deal", "pay_order", "change_order_status", "new_order", "bulk_move"):
        assert actions.get(name, 0) > 0, actions
    for order in sandbox.shop.list_orders():
        paid = [p["paid"] for p in order["payments"]]
        assert (order["payed"] == "Y") == all(p == "Y" for p in paid)
        if order["statusId"] in ("P", "D", "F"):
            assert order["payed"] == "Y", order  # staff only ships paid orders
        if order["statusId"] == "C":
            assert order["payed"] == "N", order  # only unpaid orders get cancelled
    for deal in sandbox.crm.list_deals():
        stage = sandbox.crm.stages[deal["STAGE_ID"]]
        assert str(stage.category_id) == deal["CATEGORY_ID"]
    assert sandbox.wait_events_idle(10)
    writes = sandbox.crm.counters()["writes"]["human"]["crm.deal.update"]
    delivered = sandbox.crm.counters()["events"]["delivered"]["ONCRMDEALUPDATE"]
    assert delivered == writes  # every human move produced exactly one event


def test_it_runs_in_the_background_until_stopped(sandbox: Sandbox, wait_until) -> None:
    sandbox.seed(10)
    traffic = sandbox.start_traffic(rate=200)
    wait_until(lambda: sum(traffic.stats()["actions"].values()) >= 10)
    stats = sandbox.stop_traffic()
    assert stats["running"] is False
    done = sum(stats["actions"].values())
    assert sum(traffic.stats()["actions"].values()) == done

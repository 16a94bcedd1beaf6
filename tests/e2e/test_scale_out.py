"""Two hosts: two `manage.py serve` instances on their own ports against one PostgreSQL database and one
Redis, each receiving one portal's webhooks, their workers taking jobs from one queue. Each change is
written exactly once, and both portals converge."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.stack import Stack, running_stack
from tests.support.waiting import wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.only_leg("scaled", reason="two hosts on one PostgreSQL and Redis: scale-out only"),
]


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory) -> Iterator[tuple[Stack, Stack]]:
    workdir = tmp_path_factory.mktemp("e2e-scale-out")
    with running_stack("scaled", workdir) as first, first.another_instance(workdir) as second:
        yield first, second


def events_received(stack: Stack, portal: str) -> float:
    """What this instance's /metrics says it stored from `portal` (each instance counts its own)."""
    text = requests.get(f"{stack.url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "bxsync_events_received_total"
        and sample.labels["portal"] == portal
        and sample.labels["status"] == "stored"
    )


def test_it_writes_each_change_once_when_two_instances_share_the_work(two_hosts):
    first, second = two_hosts
    sandbox = first.sandbox
    pairs = first.seed_linked(40)
    first.wait_idle()
    # The CRM's webhook goes to the first host, the shop's to the second, as a load balancer might split them.
    sandbox.configure_events(
        shop_handler=f"{second.url}/api/bitrix/cms/", crm_handler=f"{first.url}/api/bitrix/crm/"
    )
    sandbox.reset_counters()
    crm_before, cms_before = events_received(first, "crm"), events_received(second, "cms")
    by_deal, by_order = pairs[:20], pairs[20:]

    sandbox.crm.bulk_move([d for _, d in by_deal], "PREPARATION", user_id=9)
    for order_id, _ in by_order:
        sandbox.shop.set_order_status(order_id, "P")

    wait_for(
        lambda: (
            all(sandbox.shop.get_order(o)["statusId"] == "P" for o, _ in by_deal)
            and all(sandbox.crm.get_deal(d)["STAGE_ID"] == "PREPARATION" for _, d in by_order)
        ),
        timeout=120,
        what="both portals to converge",
    )
    first.wait_idle(timeout=120)

    assert sandbox.rest_writes() == 40  # one write per change, none repeated by the other host
    duplicated = first.query(
        "SELECT order_id, count(*) FROM statussync_auditentry WHERE outcome = 'applied' "
        "GROUP BY order_id HAVING count(*) > 1"
    )
    assert duplicated == []
    applied = first.query("SELECT count(*) FROM statussync_auditentry WHERE outcome = 'applied'")[0][0]
    assert applied == 40
    assert events_received(first, "crm") - crm_before >= 20
    assert events_received(second, "cms") - cms_before >= 20
    counters = sandbox.counters()
    assert not any(c.get("events", {}).get("failed") for c in counters.values())

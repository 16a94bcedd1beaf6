"""The leaky bucket (503 QUERY_LIMIT_EXCEEDED) and the operating-time limit (429 OPERATION_TIME_LIMIT)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from bitrix_sandbox import Sandbox
from bitrix_sandbox.limits import LeakyBucket, OperatingLimiter

from .conftest import make_config


@pytest.fixture
def limited() -> Iterator[Sandbox]:
    """A sandbox with Bitrix cloud defaults: drain 2/s, burst 50."""
    sb = Sandbox(make_config(rate=2.0)).start()
    yield sb
    sb.stop()


def test_it_rejects_the_51st_immediate_request_then_recovers(limited: Sandbox, rest) -> None:
    # Freeze the bucket's clock so "immediate" does not depend on how fast this machine is.
    now = [1000.0]
    limited.crm.bucket.clock = lambda: now[0]
    limited.crm.bucket.reset()
    for _ in range(50):
        assert rest(limited.crm, "crm.category.list", {"entityTypeId": 2}).status_code == 200
    response = rest(limited.crm, "crm.category.list", {"entityTypeId": 2})
    assert response.status_code == 503
    assert response.json() == {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
    assert limited.crm.counters()["rest_rejected"] == {"rate_limit": 1}
    # The shop has its own bucket.
    assert rest(limited.shop, "sale.status.list").status_code == 200
    # Drains at 2/s: after 0.4 s still full, after 0.5 s one slot is free again.
    now[0] += 0.4
    assert rest(limited.crm, "crm.category.list", {"entityTypeId": 2}).status_code == 503
    now[0] += 0.1
    assert rest(limited.crm, "crm.category.list", {"entityTypeId": 2}).status_code == 200
    assert rest(limited.crm, "crm.category.list", {"entityTypeId": 2}).status_code == 503


def test_it_counts_both_roles_of_one_portal_in_one_bucket() -> None:
    # settings/performance/limits.md: intensity is tracked per Bitrix24; applications (and webhooks) of one
    # server share it. A shop and a CRM on one Bitrix24 are two webhooks on one address, one bucket.
    config = make_config(rate=2.0)
    config.one_portal = True
    with Sandbox(config) as one:
        assert one.crm_url.startswith(one.shop.base_url + "/rest/")
        assert one.shop_url != one.crm_url  # two webhooks, two codes
        now = [1000.0]
        one.shop.bucket.clock = lambda: now[0]
        one.shop.bucket.reset()
        for n in range(50):
            url = one.crm_url if n % 2 else one.shop_url
            method = "crm.category.list" if n % 2 else "sale.status.list"
            assert (
                requests.post(f"{url}{method}.json", json={"entityTypeId": 2}, timeout=5).status_code == 200
            )
        refused = requests.post(f"{one.crm_url}crm.deal.list.json", json={}, timeout=5)
        assert refused.status_code == 503
        assert refused.json()["error"] == "QUERY_LIMIT_EXCEEDED"
        assert requests.post(f"{one.shop_url}sale.status.list.json", timeout=5).status_code == 503
        assert one.crm.counters()["rest_calls"]["crm.category.list"] == 25  # each role counts its own calls


def test_it_drains_in_real_time(limited: Sandbox, rest, wait_until) -> None:
    limited.crm.set_limits(rate=5.0, burst=5)

    def call() -> int:
        return rest(limited.crm, "crm.category.list", {"entityTypeId": 2}).status_code

    assert 503 in [call() for _ in range(12)]
    wait_until(lambda: call() == 200, timeout=3)


def test_it_counts_a_batch_as_one_request(limited: Sandbox, rest) -> None:
    limited.crm.set_limits(rate=0.001, burst=3)
    cmd = {f"c{i}": "crm.status.list?filter[ENTITY_ID]=DEAL_STAGE" for i in range(50)}
    for _ in range(3):
        assert rest(limited.crm, "batch", {"cmd": cmd}).status_code == 200
    assert rest(limited.crm, "batch", {"cmd": cmd}).status_code == 503
    assert limited.crm.counters()["rest_calls"]["crm.status.list"] == 150


def test_it_blocks_a_method_over_its_operating_limit_with_429(sandbox: Sandbox, rest) -> None:
    sandbox.crm.set_limits(operating_limits={"crm.deal.list": 0.05})
    sandbox.set_faults("crm", latency=0.06)
    first = rest.ok(sandbox.crm, "crm.deal.list", {})
    assert first["time"]["operating"] >= 0.05
    assert first["time"]["operating_reset_at"] > first["time"]["start"]
    blocked = rest(sandbox.crm, "crm.deal.list", {})
    assert blocked.status_code == 429
    assert blocked.json()["error"] == "OPERATION_TIME_LIMIT"
    # Other methods keep working [docs/bitrix.md "Limits"].
    assert rest(sandbox.crm, "crm.category.list", {"entityTypeId": 2}).status_code == 200
    # Inside a batch the sub-command is refused on its own.
    body = rest.ok(
        sandbox.crm, "batch", {"cmd": {"l": "crm.deal.list", "c": "crm.category.list?entityTypeId=2"}}
    )
    assert body["result"]["result_error"]["l"]["error"] == "OPERATION_TIME_LIMIT"
    assert "c" in body["result"]["result"]
    assert sandbox.crm.counters()["rest_rejected"]["operating_limit"] == 2


def test_it_drains_the_bucket_at_the_configured_rate() -> None:
    now = [0.0]
    bucket = LeakyBucket(rate=2.0, burst=50, clock=lambda: now[0])
    assert all(bucket.try_acquire() for _ in range(50))
    assert not bucket.try_acquire()
    now[0] += 0.49
    assert not bucket.try_acquire()
    now[0] += 0.02
    assert bucket.try_acquire()
    now[0] += 100
    assert bucket.level == 0


def test_it_forgets_operating_time_after_the_window() -> None:
    now = [1000.0]
    limiter = OperatingLimiter(limit=1.0, window=600, clock=lambda: now[0])
    limiter.record("m", 1.5)
    allowed, operating, reset_at = limiter.status("m")
    assert (allowed, operating, reset_at) == (False, 1.5, 1600.0)
    assert limiter.status("other")[0]
    now[0] = 1600.5
    assert limiter.status("m") == (True, 0, None)

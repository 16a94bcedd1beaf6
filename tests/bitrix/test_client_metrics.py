"""What the Bitrix client counts for /metrics: each HTTP request by portal, method and result, and the
rate limiter's waits and refusals."""

from __future__ import annotations

import pytest
import requests
from prometheus_client import REGISTRY

from statussync.bitrix import RateLimitedError, TransientError
from statussync.bitrix.client import BitrixClient


class Limiter:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    def acquire(self) -> None:
        if self.error is not None:
            raise self.error


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_it_counts_requests_by_portal_method_and_http_status(rsps, base_url, body):
    client = BitrixClient(portal="crm", base_url=base_url, limiter=Limiter())
    rsps.post(f"{base_url}crm.deal.get.json", json=body("crm_deal_get"))
    rsps.post(f"{base_url}crm.deal.update.json", status=503, json={"error": "QUERY_LIMIT_EXCEEDED"})
    name = "bxsync_rest_requests_total"
    ok = sample(name, portal="crm", method="crm.deal.get", result="200")
    busy = sample(name, portal="crm", method="crm.deal.update", result="503")
    waits = sample("bxsync_limiter_wait_seconds_count", portal="crm")

    client.call("crm.deal.get", {"id": 410})
    with pytest.raises(TransientError):
        client.call("crm.deal.update", {"id": 410, "fields": {"STAGE_ID": "WON"}})

    assert sample(name, portal="crm", method="crm.deal.get", result="200") == ok + 1
    assert sample(name, portal="crm", method="crm.deal.update", result="503") == busy + 1
    assert sample("bxsync_limiter_wait_seconds_count", portal="crm") == waits + 2


def test_it_counts_a_request_that_got_no_answer(rsps, base_url):
    client = BitrixClient(portal="cms", base_url=base_url, limiter=Limiter())
    rsps.post(f"{base_url}sale.order.get.json", body=requests.ConnectTimeout("timed out"))
    name = "bxsync_rest_requests_total"
    before = sample(name, portal="cms", method="sale.order.get", result="no answer")

    with pytest.raises(TransientError):
        client.call("sale.order.get", {"id": 1})

    assert sample(name, portal="cms", method="sale.order.get", result="no answer") == before + 1


def test_it_counts_requests_the_limiter_refused(rsps, base_url):
    refusal = RateLimitedError(portal="crm", method="", description="local rate limit", retry_after=5.0)
    client = BitrixClient(portal="crm", base_url=base_url, limiter=Limiter(refusal))
    before = sample("bxsync_limiter_refused_total", portal="crm")

    with pytest.raises(RateLimitedError):
        client.call("crm.deal.get", {"id": 1})

    assert sample("bxsync_limiter_refused_total", portal="crm") == before + 1

"""The operating-time limit: each answer's `time` block, a method held near its limit or after a 429, and
only that method (settings/performance/limits.md) [docs/bitrix.md "Limits"]."""

from __future__ import annotations

import time

import pytest
from responses import matchers

from statussync.bitrix import OperatingLimitError, TransientError
from statussync.bitrix.operating import LEDGER


def time_block(operating: float, reset_in: float) -> dict:
    # The documented shape (settings/performance/limits.md, "Resource Intensity Limits").
    now = time.time()
    return {
        "start": now - 0.6,
        "finish": now,
        "duration": 0.6196250915527344,
        "processing": 0.032338857650756836,
        "date_start": "2026-05-14T10:26:32+02:00",
        "date_finish": "2026-05-14T10:26:33+02:00",
        "operating_reset_at": int(now + reset_in),
        "operating": operating,
    }


def test_it_holds_a_method_near_its_limit_until_its_oldest_minute_leaves(client, rsps, base_url, settings):
    settings.BXSYNC_OPERATING_LIMIT_SECONDS, settings.BXSYNC_OPERATING_SLOW_DOWN = 480, 0.9
    rsps.post(f"{base_url}crm.deal.list.json", json={"result": [], "time": time_block(440.0, 120)})
    rsps.post(f"{base_url}crm.deal.get.json", json={"result": {"ID": "1"}, "time": time_block(3.3, 600)})

    client.call("crm.deal.list", {})  # 440 s of 480: past 90%
    with pytest.raises(OperatingLimitError) as held:
        client.call("crm.deal.list", {})  # sent nowhere: responses would have failed an unexpected call
    assert client.call("crm.deal.get", {"id": 1})["result"] == {"ID": "1"}  # other methods go on

    assert held.value.retry_after == pytest.approx(120, abs=2)
    assert client.calls == 2


def test_it_holds_a_refused_method_until_the_reset_the_last_answer_gave(client, rsps, base_url, body):
    rsps.post(f"{base_url}crm.deal.update.json", json={"result": True, "time": time_block(100.0, 300)})
    rsps.post(f"{base_url}crm.deal.update.json", json=body("error_operation_time_limit"), status=429)

    client.call("crm.deal.update", {"id": 1, "fields": {"STAGE_ID": "WON"}})
    with pytest.raises(OperatingLimitError) as refused:
        client.call("crm.deal.update", {"id": 1, "fields": {"STAGE_ID": "WON"}})
    with pytest.raises(OperatingLimitError):
        client.call("crm.deal.update", {"id": 1, "fields": {"STAGE_ID": "WON"}})  # held: not sent

    assert isinstance(refused.value, TransientError)
    assert refused.value.retry_after == pytest.approx(300, abs=2)
    assert client.calls == 2
    assert LEDGER.held_for(webhook="crm", method="crm.deal.update") == pytest.approx(300, abs=2)


def test_it_honours_retry_after_on_a_refused_method(client, rsps, base_url, body):
    rsps.post(
        f"{base_url}crm.deal.list.json",
        json=body("error_operation_time_limit"),
        status=429,
        headers={"Retry-After": "42"},
    )

    with pytest.raises(OperatingLimitError) as refused:
        client.call("crm.deal.list", {})

    assert refused.value.retry_after == pytest.approx(42, abs=1)


def test_it_sends_a_batch_without_the_held_methods_commands(client, rsps, base_url, body):
    # settings/performance/limits.md: "Nested calls are executed as separate methods", each checked against
    # its own limit; the outer batch is not counted.
    answer = {
        "result": {
            "result": {"a": []},
            "result_error": {"b": body("error_operation_time_limit")},
            "result_time": {"a": time_block(1.0, 600)},
        },
        "time": time_block(0.0, 600),
    }
    rsps.post(f"{base_url}batch.json", json=answer)
    rsps.post(
        f"{base_url}batch.json",
        json={"result": {"result": {"a": [], "c": []}, "result_error": []}, "time": time_block(0.0, 600)},
        match=[
            matchers.json_params_matcher({"halt": 0, "cmd": {"a": "crm.deal.list", "c": "crm.status.list"}})
        ],
    )

    first = client.batch({"a": ("crm.deal.list", {}), "b": ("crm.item.list", {})})
    second = client.batch(
        {"a": ("crm.deal.list", {}), "b": ("crm.item.list", {}), "c": ("crm.status.list", {})}
    )

    assert isinstance(first.errors["b"], OperatingLimitError)
    assert isinstance(second.errors["b"], OperatingLimitError)  # failed here, never sent
    assert set(second.results) == {"a", "c"}
    assert client.calls == 2

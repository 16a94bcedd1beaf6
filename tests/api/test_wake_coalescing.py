"""Waking workers during a storm of events: one wake-up per queue per short interval and web process, never
none for an event that came after the last one."""

from __future__ import annotations

import time

import pytest

from statussync import jobs
from tests.support.waiting import wait_for


@pytest.fixture
def wakes(settings, monkeypatch):
    settings.BXSYNC_WAKE_COALESCE_SECONDS = 0.3
    jobs._wake_last.clear()
    sent: list[str] = []
    outcome = {"ok": True}

    def wake(*, queue: str) -> bool:
        sent.append(queue)
        return outcome["ok"]

    monkeypatch.setattr(jobs, "queue_wake", wake)
    yield sent, outcome
    wait_for(lambda: not jobs._wake_trailing, timeout=5, what="the trailing wake-up")
    jobs._wake_last.clear()


def test_it_wakes_a_queue_at_once_for_the_first_event(wakes):
    sent, _ = wakes

    jobs.queue_wake_soon(queue="payments")

    assert sent == ["payments"]


def test_it_sends_one_trailing_wake_up_for_a_burst_of_events(wakes):
    sent, _ = wakes

    for _ in range(50):
        jobs.queue_wake_soon(queue="default")
    assert sent == ["default"]

    wait_for(lambda: len(sent) == 2, timeout=5, what="the trailing wake-up")
    time.sleep(0.4)  # and nothing more: the burst is over
    assert sent == ["default", "default"]


def test_it_coalesces_each_queue_on_its_own(wakes):
    sent, _ = wakes

    jobs.queue_wake_soon(queue="default")
    jobs.queue_wake_soon(queue="payments")

    assert sent == ["default", "payments"]


def test_it_tries_again_at_once_after_a_wake_up_that_failed(wakes):
    sent, outcome = wakes
    outcome["ok"] = False
    jobs.queue_wake_soon(queue="default")
    outcome["ok"] = True

    jobs.queue_wake_soon(queue="default")

    assert sent == ["default", "default"]

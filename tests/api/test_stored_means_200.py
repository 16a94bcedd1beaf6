"""Issue 14, finding 12: once an event is stored, the answer is 200, and fast, whatever fails after the
commit — a metric whose Prometheus folder is missing, a cache or broker that does not answer."""

from __future__ import annotations

import threading
import time

import pytest

from statussync import jobs
from statussync.models import InboundEvent, Job
from tests.support.waiting import wait_for
from tests.support.webhooks import event_body

FORM = "application/x-www-form-urlencoded"
pytestmark = pytest.mark.usefixtures("portals")


@pytest.mark.django_db
def test_it_answers_200_when_a_metric_fails_after_the_event_is_stored(client, monkeypatch):
    class MissingFolder:
        def labels(self, **labels):
            return self

        def inc(self, amount: float = 1) -> None:
            # What prometheus-client's multiprocess mode raises when PROMETHEUS_MULTIPROC_DIR has gone.
            raise FileNotFoundError(2, "No such file or directory", "bxsync-metrics-8000/counter_1.db")

    monkeypatch.setattr("statussync.metrics.EVENTS_RECEIVED", MissingFolder())

    response = client.post("/api/bitrix/crm/", data=event_body("crm_deal_update"), content_type=FORM)

    assert response.status_code == 200
    assert response.json()["status"] == "stored"
    assert InboundEvent.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_it_answers_at_once_while_the_cache_hangs_in_the_web_process(client, settings, monkeypatch):
    settings.BXSYNC_WAKE_FROM_THREAD = True  # what `manage.py serve` gives its web processes
    jobs._wake_last.clear()
    released = threading.Event()
    asked: list[str] = []

    class UnreachableRedis:
        def add(self, key, *args, **kwargs):
            asked.append(key)
            released.wait(5)  # redis-py's socket_connect_timeout against an address that never answers
            raise ConnectionError("Timeout connecting to server")

        def delete(self, key):
            return None

    monkeypatch.setattr("statussync.jobs.cache", UnreachableRedis())
    try:
        started = time.monotonic()
        answers = [
            client.post("/api/bitrix/crm/", data=event_body(name), content_type=FORM).status_code
            for name in ("crm_deal_update", "crm_deal_add", "crm_deal_update")
        ]
        elapsed = time.monotonic() - started

        assert answers == [200, 200, 200]
        assert elapsed < 1.0, f"three webhooks took {elapsed:.1f} s"
        assert Job.objects.count() == 2
        wait_for(lambda: asked, timeout=5, what="the wake-up tried from its own thread")
    finally:
        released.set()
        wait_for(lambda: not jobs._wake_busy(), timeout=10, what="the wake-up thread's end")
        jobs._wake_last.clear()

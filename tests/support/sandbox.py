"""bxsync in-process against the sandbox portals (real HTTP on localhost): the portals as a fixture, bxsync
pointed at them, and the steps of a sync the tests take by hand.

Events are not delivered here (no handler URL): each test requests the jobs an event would, and runs a worker
pass by hand, so every step is deterministic. tests/e2e/ does the same through real servers and processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bitrix_sandbox import Sandbox, SandboxConfig
from statussync.jobs import job_request, jobs_claim
from statussync.models import JobKind, Link
from statussync.sync import jobs_handle, write


def sandbox_use(sandbox: Sandbox, settings, *, rest_timeout: float | None = None) -> Sandbox:
    """Point bxsync (`settings`, pytest-django's fixture) at the sandbox portals, both sides unthrottled: the
    tests count requests, they do not wait out Bitrix's 2 requests a second."""
    sandbox.set_limits(rate=1000, burst=1000)
    for name, value in sandbox.env().items():
        setattr(settings, name, value)
    settings.BXSYNC_RATE_PER_SECOND = 1000
    settings.BXSYNC_RATE_BURST = 1000
    if rest_timeout is not None:
        settings.BXSYNC_REST_TIMEOUT = rest_timeout
    return sandbox


def sandbox_fixture(*, seed: int) -> Any:
    """A module-scoped `sandbox` fixture: the sandbox portals started once for a test module, seeded with
    `seed` (each folder keeps its own, so its entities are the same run after run). A conftest names it:
    `sandbox = sandbox_fixture(seed=3)`."""

    @pytest.fixture(scope="module", name="sandbox")
    def started() -> Iterator[Sandbox]:
        with Sandbox(SandboxConfig(seed=seed)) as sandbox:
            yield sandbox

    return started


def sandbox_fresh(sandbox: Sandbox, settings: Any) -> Sandbox:
    """The portals reset to their seeded state and bxsync pointed at them, with a short REST timeout (a test
    of a portal that stops answering waits 5 s, not the production default)."""
    sandbox.reset()
    return sandbox_use(sandbox, settings, rest_timeout=5)


def run_worker(queue: str = "default") -> int:
    """One worker pass over the due jobs of a queue."""
    handled = 0
    while jobs := jobs_claim(queue=queue, limit=50):
        jobs_handle(jobs)
        handled += len(jobs)
    return handled


def pay(sb: Sandbox, order_id: str) -> str:
    """A customer pays the order; returns the payment id (what ONPAYMENTENTITYSAVED carries)."""
    order = sb.shop.pay_order(int(order_id))
    return str(next(p["id"] for p in order["payments"] if p["paid"] == "Y"))


def linked_pair(sb: Sandbox, pipeline: int = 0) -> tuple[str, str]:
    """A seeded order and deal that bxsync has already linked (base N / first stage)."""
    order_id, deal_id = sb.seed(
        1,
        pipeline_share=1.0 if pipeline else 0.0,
        pipelines=[pipeline] if pipeline else None,
        orders_without_deal=0,
        deals_without_order=0,
    )[0]
    job_request(kind=JobKind.ORDER, entity_id=str(order_id))
    run_worker()
    link = Link.objects.get(order_id=str(order_id))
    assert link.base_at is not None
    return str(order_id), str(deal_id)


def new_pair(sb: Sandbox) -> tuple[str, str]:
    """A seeded order and deal that bxsync has never seen (order N, deal NEW)."""
    order_id, deal_id = sb.seed(1, pipeline_share=0, orders_without_deal=0, deals_without_order=0)[0]
    return str(order_id), str(deal_id)


def before_writes(monkeypatch, action: Callable[[], None]) -> None:
    """Run `action` once, between this run's decisions and its write round (the run is "paused" there)."""
    real = write.writes_send
    done = []

    def paused(run):
        if not done:
            done.append(True)
            action()
        real(run)

    monkeypatch.setattr(write, "writes_send", paused)

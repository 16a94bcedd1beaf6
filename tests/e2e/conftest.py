"""End-to-end fixtures: the stack of tests/e2e/stack.py in the configuration of this run's leg (embedded:
SQLite and the ORM broker; scaled: PostgreSQL and Redis — tests/support/legs.py), settled before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.stack import Stack, running_stack
from tests.support.legs import leg


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    """A stack per module: it starts in seconds from the migrated template, and a module's hundreds of pairs
    (the chaos tests') do not make every later reconcile re-read them (its window overlaps the last 300 s)."""
    with running_stack(leg(), tmp_path_factory.mktemp(f"e2e-{leg()}")) as running:
        yield running


@pytest.fixture
def e2e(stack: Stack) -> Iterator[Stack]:
    """The stack, settled, with faults cleared and counters zeroed before each test."""
    stack.serve_as_started()
    stack.sandbox.clear_faults()
    stack.sandbox.resume_events()
    stack.wait_idle()
    stack.sandbox.reset_counters()
    yield stack
    stack.sandbox.clear_faults()
    stack.sandbox.resume_events()
    # Bitrix never re-sends: an event bxsync did not accept with a 2xx is a change lost until reconciliation.
    counters = stack.sandbox.counters()
    refused = {
        portal: c["events"].get("failed")
        for portal, c in counters.items()
        if c.get("events", {}).get("failed")
    }
    assert not refused, f"bxsync refused events: {refused}"

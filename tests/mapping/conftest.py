"""The mapping's fixtures: sandbox portals for the catalog of names, users in the two groups."""

from __future__ import annotations

import pytest

from bitrix_sandbox import Sandbox, SandboxConfig


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(SandboxConfig(seed=7)) as sb:
        yield sb


@pytest.fixture
def portals_up(sandbox, settings, db):
    """bxsync pointed at fresh sandbox portals (a shop and a CRM with pipelines 0 and 1)."""
    sandbox.reset()
    sandbox.set_limits(rate=1000, burst=1000)
    for name, value in sandbox.env().items():
        setattr(settings, name, value)
    settings.BXSYNC_RATE_PER_SECOND = 1000
    settings.BXSYNC_RATE_BURST = 1000
    settings.BXSYNC_REST_TIMEOUT = 5
    return sandbox

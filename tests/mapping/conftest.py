"""The mapping's fixtures: sandbox portals for the catalog of names, users in the two groups."""

from __future__ import annotations

import pytest

from bitrix_sandbox import Sandbox, SandboxConfig
from tests.support.sandbox import sandbox_use


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(SandboxConfig(seed=7)) as sb:
        yield sb


@pytest.fixture
def portals_up(sandbox, settings, db):
    """bxsync pointed at fresh sandbox portals (a shop and a CRM with pipelines 0 and 1)."""
    sandbox.reset()
    sandbox_use(sandbox, settings, rest_timeout=5)
    return sandbox

"""Doctor's fixtures: the sandbox portals, bxsync pointed at them with the example mapping."""

from __future__ import annotations

import pytest

from bitrix_sandbox import Sandbox, SandboxConfig
from statussync.mapping.store import mapping_import
from tests.support.mappings import DESIGN_EXAMPLE
from tests.support.sandbox import sandbox_use


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(SandboxConfig(seed=11)) as sb:
        yield sb


@pytest.fixture
def sb(sandbox, settings, db):
    """Healthy sandbox portals with a few linked pairs, bxsync pointed at them, the contract's mapping, and
    bxsync pacing itself as a cloud plan allows (what doctor compares with the plan)."""
    sandbox.reset()
    sandbox_use(sandbox, settings, rest_timeout=5)
    settings.BXSYNC_RATE_PER_SECOND = 2
    sandbox.seed(3)
    mapping_import(data=DESIGN_EXAMPLE)
    return sandbox

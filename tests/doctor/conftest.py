"""Doctor's fixtures: the sandbox portals, bxsync pointed at them with the example mapping."""

from __future__ import annotations

import pytest

from statussync.mapping.store import mapping_import
from tests.support.mappings import DESIGN_EXAMPLE
from tests.support.sandbox import sandbox_fixture, sandbox_fresh

sandbox = sandbox_fixture(seed=11)


@pytest.fixture
def sb(sandbox, settings, db):
    """Healthy sandbox portals with a few linked pairs, bxsync pointed at them, the contract's mapping, and
    bxsync pacing itself as a cloud plan allows (what doctor compares with the plan)."""
    sandbox_fresh(sandbox, settings)
    settings.BXSYNC_RATE_PER_SECOND = 2
    sandbox.seed(3)
    mapping_import(data=DESIGN_EXAMPLE)
    return sandbox

"""The mapping's fixtures: sandbox portals for the catalog of names."""

from __future__ import annotations

import pytest

from tests.support.sandbox import sandbox_fixture, sandbox_fresh

sandbox = sandbox_fixture(seed=7)


@pytest.fixture
def portals_up(sandbox, settings, db):
    """bxsync pointed at fresh sandbox portals (a shop and a CRM with pipelines 0 and 1)."""
    sandbox_fresh(sandbox, settings)
    return sandbox

"""The sync tests' fixtures: the sandbox portals, and bxsync in-process pointed at them."""

from __future__ import annotations

import pytest

from statussync.mapping.store import mapping_import
from tests.support.mappings import two_pipelines
from tests.support.sandbox import sandbox_fixture, sandbox_fresh

MAPPING = two_pipelines()


sandbox = sandbox_fixture(seed=3)


@pytest.fixture
def sb(sandbox, settings, db):
    """A fresh sandbox state, bxsync pointed at it, and the example mapping plus a pipeline 1."""
    sandbox_fresh(sandbox, settings)
    mapping_import(data=MAPPING)
    options = sandbox.shop.options()
    yield sandbox
    sandbox.shop.set_options(**options)  # a test may switch the shop's kernel options

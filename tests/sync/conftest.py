"""The sync tests' fixtures: the sandbox portals, and bxsync in-process pointed at them."""

from __future__ import annotations

import pytest

from bitrix_sandbox import Sandbox, SandboxConfig
from statussync.mapping.store import mapping_import
from tests.support.mappings import two_pipelines
from tests.support.sandbox import sandbox_use

MAPPING = two_pipelines()


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(SandboxConfig(seed=3)) as sb:
        yield sb


@pytest.fixture
def sb(sandbox, settings, db):
    """A fresh sandbox state, bxsync pointed at it, and the example mapping plus a pipeline 1."""
    sandbox.reset()
    sandbox_use(sandbox, settings, rest_timeout=5)
    mapping_import(data=MAPPING)
    options = sandbox.shop.options()
    yield sandbox
    sandbox.shop.set_options(**options)  # a test may switch the shop's kernel options

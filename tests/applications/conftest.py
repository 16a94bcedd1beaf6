"""Fixtures: the sandbox portals, bxsync in-process pointed at them, the CRM without a webhook URL."""

from __future__ import annotations

import pytest

from statussync.mapping.store import mapping_import
from tests.support.mappings import two_pipelines
from tests.support.sandbox import sandbox_fixture, sandbox_fresh

sandbox = sandbox_fixture(seed=5)


@pytest.fixture
def sb(sandbox, settings, db):
    """A fresh sandbox; bxsync uses the shop's webhook and no CRM webhook: the CRM is to be connected as an
    application."""
    sandbox_fresh(sandbox, settings)
    settings.BXSYNC_CRM_REST_URL = ""
    mapping_import(data=two_pipelines())
    return sandbox


@pytest.fixture
def receiver():
    """A local HTTP server recording what a portal posts (tests/sandbox/conftest.py)."""
    from tests.sandbox.conftest import EventReceiver

    rec = EventReceiver()
    yield rec
    rec.stop()

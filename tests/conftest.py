"""Shared fixtures: portal settings for tests, and raw webhook bodies."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

CMS_TOKEN = "shoptoken0123456789abcdefghijklm"
CRM_TOKEN = "jvh9y1ulvt2m6k5or90v9mg8nn32ozas"
CMS_URL = "https://shop.example.ru/rest/1/cmssecretcode123/"
CRM_URL = "https://crm.example.ru/rest/7/crmsecretcode456/"


@pytest.fixture
def portals(settings):
    """bxsync configured for two (mocked) portals."""
    settings.BXSYNC_CMS_APP_TOKEN = CMS_TOKEN
    settings.BXSYNC_CRM_APP_TOKEN = CRM_TOKEN
    settings.BXSYNC_CMS_REST_URL = CMS_URL
    settings.BXSYNC_CRM_REST_URL = CRM_URL
    return settings


def event_body(name: str) -> bytes:
    """A raw webhook body from tests/fixtures/events."""
    return (FIXTURES / "events" / f"{name}.txt").read_bytes()


@pytest.fixture(autouse=True)
def _catalog_names_forgotten():
    """The catalog's names are cached in memory between requests; a test's rolled-back rows must not leak
    into the next test's labels. (Only once the app has loaded it: the sandbox's tests never load the app.)"""
    yield
    catalog = sys.modules.get("statussync.catalog")
    if catalog is not None:
        catalog.catalog_cache_clear()


@pytest.fixture(autouse=True, scope="session")
def _wake_ups_not_coalesced():
    """Every event wakes its queue at once, as the tests of wake-ups expect, with no timer thread outliving
    a test; tests/api/test_wake_coalescing.py covers the coalescing. (Settings only: loads no app.)"""
    from django.conf import settings

    settings.BXSYNC_WAKE_COALESCE_SECONDS = 0

"""The two (mocked) portals of the tests that need no sandbox: their application tokens and REST webhook URLs
(the `portals` fixture in tests/conftest.py sets them), and raw webhook bodies as Bitrix posts them."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

CMS_TOKEN = "shoptoken0123456789abcdefghijklm"
CRM_TOKEN = "jvh9y1ulvt2m6k5or90v9mg8nn32ozas"
CMS_URL = "https://shop.example.ru/rest/1/cmssecretcode123/"
CRM_URL = "https://crm.example.ru/rest/7/crmsecretcode456/"


def event_body(name: str) -> bytes:
    """A raw webhook body from tests/fixtures/events."""
    return (FIXTURES / "events" / f"{name}.txt").read_bytes()

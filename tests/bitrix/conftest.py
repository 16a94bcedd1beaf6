import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import responses

from statussync.bitrix import BitrixClient

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "k7x2q9w4e5r6t8y1"


@pytest.fixture
def secret() -> str:
    """The webhook code: a credential that must never show up in messages or logs."""
    return SECRET


@pytest.fixture
def base_url() -> str:
    return f"https://shop.bitrix24.ru/rest/7/{SECRET}/"


@pytest.fixture
def body() -> Callable[[str], Any]:
    """Load a response body from tests/bitrix/fixtures (each shaped like the example in the Bitrix docs)."""

    def load(name: str) -> Any:
        return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))

    return load


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def client(base_url: str) -> BitrixClient:
    return BitrixClient(portal="crm", base_url=base_url, timeout=5.0)


class FakeClock:
    """time.time/time.sleep stand-ins: sleeping advances the clock and is recorded."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()

"""The suite's legs refuse to run as something they are not (tests/support/legs.py)."""

from __future__ import annotations

import pytest

from tests.support.legs import leg_problem

SQLITE = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
# Port 9 (discard): nothing listens there, so the connection is refused at once.
POSTGRES_DOWN = {"ENGINE": "django.db.backends.postgresql", "HOST": "127.0.0.1", "PORT": "9"}


def test_it_fails_the_scaled_leg_when_postgresql_does_not_answer(monkeypatch):
    monkeypatch.setenv("BXSYNC_TEST_LEG", "scaled")

    problem = leg_problem(database=POSTGRES_DOWN, redis_url="redis://127.0.0.1:9/1")

    assert problem is not None
    assert problem.startswith("the scaled leg's PostgreSQL does not answer")


def test_it_fails_the_scaled_leg_on_sqlite_or_without_redis(monkeypatch):
    monkeypatch.setenv("BXSYNC_TEST_LEG", "scaled")

    assert "needs DATABASE_URL=postgres" in leg_problem(database=SQLITE, redis_url="redis://127.0.0.1:6379/1")
    assert "REDIS_URL is empty" in leg_problem(database=POSTGRES_DOWN, redis_url="")


@pytest.mark.parametrize("leg_name", ["", "embedded"])
def test_it_keeps_the_embedded_leg_off_redis_and_postgresql(monkeypatch, leg_name):
    monkeypatch.setenv("BXSYNC_TEST_LEG", leg_name)

    assert leg_problem(database=SQLITE, redis_url="") is None
    assert "REDIS_URL is set" in leg_problem(database=SQLITE, redis_url="redis://127.0.0.1:6379/1")
    assert "DATABASE_URL is postgresql" in leg_problem(database=POSTGRES_DOWN, redis_url="")


def test_it_refuses_a_leg_it_does_not_know(monkeypatch):
    monkeypatch.setenv("BXSYNC_TEST_LEG", "mysql")

    assert "one of embedded, scaled" in leg_problem(database=SQLITE, redis_url="")

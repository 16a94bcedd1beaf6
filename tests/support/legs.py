"""The suite's two legs. `make test` runs the whole suite once on each (side by side, see .ci/test-legs):

- `embedded`: SQLite, the django-q2 ORM broker, the database cache and limiter, no Redis — what `make run`
  does out of the box;
- `scaled`: PostgreSQL, Redis as cache, limiter store and broker — the scale-out configuration.

BXSYNC_TEST_LEG names the leg of a run (embedded when unset); DATABASE_URL and REDIS_URL must agree with it,
and on the scaled leg both servers must answer, or the run stops before its first test: a scaled leg that
quietly ran on SQLite, or skipped what needs Redis, would prove nothing about the scale-out configuration.
"""

from __future__ import annotations

import os

import psycopg
import redis

LEGS = ("embedded", "scaled")


def leg() -> str:
    """The leg this run is: `embedded` or `scaled`."""
    return os.environ.get("BXSYNC_TEST_LEG", "") or "embedded"


def leg_problem(*, database: dict, redis_url: str) -> str | None:
    """Why this run cannot be the leg it claims to be (settings that disagree, a server that does not
    answer), or None. `database` is Django's DATABASES["default"]."""
    name = leg()
    if name not in LEGS:
        return f"BXSYNC_TEST_LEG={name!r}: it is one of {', '.join(LEGS)}"
    engine = database["ENGINE"].rsplit(".", 1)[-1]
    if name == "embedded":
        if engine != "sqlite3" or redis_url:
            return (
                f"the embedded leg runs on SQLite without Redis, but DATABASE_URL is {engine} and "
                f"REDIS_URL is {'set' if redis_url else 'empty'} (a .env may set them): run `make test`, "
                "or set BXSYNC_TEST_LEG=scaled"
            )
        return None
    if engine != "postgresql" or not redis_url:
        return (
            "the scaled leg needs DATABASE_URL=postgres://... and REDIS_URL=redis://...: "
            f"DATABASE_URL is {engine}, REDIS_URL is {'set' if redis_url else 'empty'}"
        )
    # The server's maintenance database: pytest-django has not created the test database yet.
    try:
        psycopg.connect(
            host=database.get("HOST") or None,
            port=database.get("PORT") or None,
            user=database.get("USER") or None,
            password=database.get("PASSWORD") or None,
            dbname="postgres",
            connect_timeout=5,
        ).close()
    except psycopg.OperationalError as error:
        return f"the scaled leg's PostgreSQL does not answer: {error}".strip()
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=5).ping()
    except redis.RedisError as error:
        return f"the scaled leg's Redis ({redis_url.rsplit('@', 1)[-1]}) does not answer: {error}"
    return None

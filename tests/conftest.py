"""Shared fixtures: portal settings for tests (tests/support/webhooks.py), the admin's users in their roles
(tests/support/roles.py); the leg this run is (tests/support/legs.py)."""

from __future__ import annotations

import os
import sys

import pytest
import redis
from django.conf import settings as django_settings

from tests.support.legs import LEGS, leg, leg_problem
from tests.support.roles import MANAGERS, SUPPORT, user_make
from tests.support.webhooks import CMS_TOKEN, CMS_URL, CRM_TOKEN, CRM_URL


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to start a run whose settings or servers are not the leg it claims to be."""
    problem = leg_problem(database=django_settings.DATABASES["default"], redis_url=django_settings.REDIS_URL)
    if problem:
        raise pytest.UsageError(problem)
    # A fast hasher: hundreds of tests make a user with a password, and PBKDF2's 1,000,000 rounds cost 0.6 s
    # each on CI's machine. Hashing is Django's; no test here is about its strength (the e2e stacks and the
    # deploy check run in processes of their own, with the production settings).
    django_settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    _redis_empty()


def _redis_empty() -> None:
    url = os.environ.get("REDIS_URL", "")
    if url and leg() == "scaled":
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()


def pytest_report_header(config: pytest.Config) -> str:
    database = django_settings.DATABASES["default"]
    where = database["ENGINE"].rsplit(".", 1)[-1]
    if where == "postgresql":
        where += f" at {database.get('HOST') or 'localhost'}:{database.get('PORT') or 5432}"
    redis_url = django_settings.REDIS_URL.rsplit("@", 1)[-1] or "no Redis"
    return f"bxsync leg: {leg()} ({where}, {redis_url})"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """`@pytest.mark.only_leg("scaled", reason=...)`: a test that means something on one leg only says why,
    and the other leg reports it as skipped with that reason."""
    marker = item.get_closest_marker("only_leg")
    if marker is None:
        return
    (wanted,) = marker.args
    reason = marker.kwargs.get("reason")
    if wanted not in LEGS or not reason:
        raise pytest.UsageError(f"{item.nodeid}: only_leg needs a leg and a reason")
    if wanted != leg():
        pytest.skip(f"{wanted} leg only: {reason}")


@pytest.fixture(autouse=True)
def _redis_emptied():
    """On the scaled leg, Redis holds the cache, the limiter's buckets and the broker's queues. A test's
    database rows are rolled back after it; its Redis keys are emptied here, so no test sees another's
    wake-up flags, rate-limit debt or queued tasks (and a run starts on an empty one). The e2e stacks use
    Redis databases of their own."""
    yield
    _redis_empty()


@pytest.fixture(scope="session", autouse=True)
def _test_database_left_alone(request):
    """PostgreSQL will not drop the test database while another session holds it (SQLite's in-memory one
    never minds). A connection a test's thread left open is named here, with its last query, and ended, so
    the run says which instead of failing at its very end with "being accessed by other users". (Set up after
    the test database, so torn down before it.)"""
    if leg() != "scaled":
        yield
        return
    request.getfixturevalue("django_db_setup")
    blocker = request.getfixturevalue("django_db_blocker")
    yield
    from django.db import connection

    if not connection.settings_dict["NAME"].startswith("test_"):
        return  # no test database was made (a run of tests that need none)
    with blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, state, left(query, 200), pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        left_open = cursor.fetchall()
    for pid, state, query, _ in left_open:
        sys.stderr.write(f"\nleft open on the test database (ended): pid {pid}, {state}: {query}\n")


@pytest.fixture
def portals(settings):
    """bxsync configured for two (mocked) portals."""
    settings.BXSYNC_CMS_APP_TOKEN = CMS_TOKEN
    settings.BXSYNC_CRM_APP_TOKEN = CRM_TOKEN
    settings.BXSYNC_CMS_REST_URL = CMS_URL
    settings.BXSYNC_CRM_REST_URL = CRM_URL
    return settings


@pytest.fixture
def manager(db):
    """Alice, a sync manager (statussync/roles.py): edits the mapping, repairs links, replays work."""
    return user_make("alice", groups=(MANAGERS,))


@pytest.fixture
def support(db):
    """Sam, in Support (statussync/roles.py): looks at everything, changes nothing."""
    return user_make("sam", groups=(SUPPORT,))


@pytest.fixture
def staff(db):
    """A staff user in no group: signs in to the admin and may see nothing of bxsync."""
    return user_make("x")


@pytest.fixture
def manager_client(manager):
    """A test client signed in as the sync manager."""
    from django.test import Client

    client = Client()
    client.force_login(manager)
    return client


@pytest.fixture
def support_client(support):
    """A test client signed in as Support."""
    from django.test import Client

    client = Client()
    client.force_login(support)
    return client


@pytest.fixture(autouse=True)
def _operating_time_forgotten():
    """The operating-time ledger is per process (statussync/bitrix/operating.py): a test's 429 must not hold
    a method in the next test. (Only once loaded: the sandbox's tests never load the app.)"""
    yield
    operating = sys.modules.get("statussync.bitrix.operating")
    if operating is not None:
        operating.LEDGER.clear()
    moves = sys.modules.get("statussync.bitrix.moves")
    if moves is not None:
        moves.moves_forget(shared=False)  # the cache's notes go with the test's database or Redis


@pytest.fixture(autouse=True)
def _language_reset():
    """Django's LocaleMiddleware activates the reader's language in the thread and never deactivates it, so a
    test that fetched a page in Russian would leave the next test's messages in Russian."""
    yield
    translation = sys.modules.get("django.utils.translation")
    if translation is not None:
        translation.deactivate()


@pytest.fixture(autouse=True)
def _catalog_names_forgotten():
    """The catalog's names are cached in memory between requests; a test's rolled-back rows must not leak
    into the next test's labels. (Only once the app has loaded it: the sandbox's tests never load the app.)"""
    yield
    catalog = sys.modules.get("statussync.mapping.catalog")
    if catalog is not None:
        catalog.catalog_cache_clear()


@pytest.fixture(autouse=True, scope="session")
def _wake_ups_not_coalesced():
    """Every event wakes its queue at once, as the tests of wake-ups expect, with no timer thread outliving
    a test; tests/api/test_wake_coalescing.py covers the coalescing. (Settings only: loads no app.)"""
    from django.conf import settings

    settings.BXSYNC_WAKE_COALESCE_SECONDS = 0


@pytest.fixture(autouse=True)
def _portal_behaviours_forgotten():
    """What doctor found a portal to do is cached per process (statussync/doctor/quirks.py); a test's
    rolled-back answers must not steer the next test's client."""
    yield
    quirks = sys.modules.get("statussync.doctor.quirks")
    if quirks is not None:
        quirks.behaviour_cache_clear()

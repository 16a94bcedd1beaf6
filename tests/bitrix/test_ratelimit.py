"""GCRA limiter and its stores. Every store runs the same behaviour tests; the Redis store's run on the scaled
leg, against its Redis (tests/support/legs.py: the scaled leg does not start without one)."""

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from statussync.bitrix import (
    DatabaseBucketStore,
    GcraLimiter,
    MemoryBucketStore,
    RateLimitedError,
    RedisBucketStore,
    limiter_for,
)
from statussync.bitrix.ratelimit import _redis_store, bucket_key, buckets_shared, priority_reserve
from statussync.models import RateBucket

SCALED_ONLY = pytest.mark.only_leg("scaled", reason="the Redis store needs the scaled leg's Redis")


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_connect_timeout=1)
    yield client
    client.close()


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    prefix = f"bxsync-test:{uuid.uuid4().hex}:"
    yield prefix
    for key in redis_client.scan_iter(match=prefix + "*"):
        redis_client.delete(key)


@pytest.fixture(params=["memory", "database", pytest.param("redis", marks=SCALED_ONLY)])
def new_store(request) -> Callable[[], object]:
    """A factory of store handles onto one shared bucket backend (like two worker processes would have)."""
    if request.param == "database":
        request.getfixturevalue("db")
        return DatabaseBucketStore
    if request.param == "redis":
        client = request.getfixturevalue("redis_client")
        prefix = request.getfixturevalue("redis_prefix")
        return lambda: RedisBucketStore(client=client, prefix=prefix)
    shared = MemoryBucketStore()
    return lambda: shared


def make_limiter(store, clock, *, key="crm", rate=2.0, burst=50, max_wait=30.0, sleep=None) -> GcraLimiter:
    return GcraLimiter(
        key=key,
        rate=rate,
        burst=burst,
        max_wait=max_wait,
        store=store,
        clock=clock.time,
        sleep=sleep or clock.sleep,
    )


def test_it_lets_a_burst_of_50_through_then_waits_half_a_second(new_store, clock):
    limiter = make_limiter(new_store(), clock)

    for _ in range(50):
        limiter.acquire()
    assert clock.sleeps == []

    limiter.acquire()
    limiter.acquire()
    assert clock.sleeps == [pytest.approx(0.5), pytest.approx(0.5)]


def test_it_refills_at_the_rate_while_idle(new_store, clock):
    limiter = make_limiter(new_store(), clock)
    for _ in range(50):
        limiter.acquire()

    clock.now += 10.0  # 2/s * 10 s = 20 slots back
    for _ in range(20):
        limiter.acquire()
    assert clock.sleeps == []

    limiter.acquire()
    assert clock.sleeps == [pytest.approx(0.5)]


def test_it_refuses_beyond_max_wait_without_reserving(new_store, clock):
    # Sleeping does not move the clock here: many workers asking at the same instant.
    waits: list[float] = []
    limiter = make_limiter(new_store(), clock, max_wait=1.0, sleep=waits.append)
    for _ in range(52):  # 50 free, then 0.5 s and 1.0 s (== max_wait, still allowed)
        limiter.acquire()
    assert waits == [pytest.approx(0.5), pytest.approx(1.0)]

    for _ in range(3):
        with pytest.raises(RateLimitedError) as info:
            limiter.acquire()
        # Refusals reserved nothing: the next slot is still 1.5 s away, not 2.0, 2.5...
        assert info.value.retry_after == pytest.approx(1.5)
        assert info.value.portal == "crm"

    clock.now += 0.5
    limiter.acquire()
    assert waits[-1] == pytest.approx(1.0)


def test_it_shares_the_bucket_between_limiter_instances(new_store, clock):
    first = make_limiter(new_store(), clock)
    second = make_limiter(new_store(), clock)

    for _ in range(50):
        first.acquire()
    second.acquire()

    assert clock.sleeps == [pytest.approx(0.5)]


def test_it_keeps_buckets_apart_by_key(new_store, clock):
    crm = make_limiter(new_store(), clock, key="crm")
    cms = make_limiter(new_store(), clock, key="cms")

    for _ in range(50):
        crm.acquire()
    cms.acquire()

    assert clock.sleeps == []


def test_it_returns_the_refused_wait_from_the_store(new_store, clock):
    store = new_store()
    args = {"key": "crm", "rate": 2.0, "burst": 1, "now": clock.now}

    assert store.reserve(**args, max_wait=0.0) == 0.0
    assert store.reserve(**args, max_wait=0.0) == pytest.approx(0.5)  # refused
    assert store.reserve(**args, max_wait=0.5) == pytest.approx(0.5)  # the refusal reserved nothing


def test_it_rejects_nonsense_settings():
    with pytest.raises(ValueError, match="rate"):
        GcraLimiter(key="crm", rate=0, burst=50, max_wait=30, store=MemoryBucketStore())


@pytest.mark.django_db
def test_it_keeps_the_database_bucket_in_its_model(clock):
    store = DatabaseBucketStore()

    store.reserve(key="crm", rate=2.0, burst=50, now=clock.now, max_wait=30.0)

    assert RateBucket.objects.get(key="crm").tat == pytest.approx(clock.now + 0.5)
    assert store.peek(key="crm") == pytest.approx(clock.now + 0.5)
    assert store.peek(key="cms") is None


@SCALED_ONLY
def test_it_expires_idle_redis_buckets(redis_client, redis_prefix, clock):
    store = RedisBucketStore(client=redis_client, prefix=redis_prefix)

    store.reserve(key="crm", rate=2.0, burst=50, now=clock.now, max_wait=30.0)

    assert 1 <= redis_client.ttl(redis_prefix + "crm") <= 2


def test_it_builds_a_database_limiter_from_settings(portals):
    settings = portals
    settings.REDIS_URL = ""
    settings.BXSYNC_RATE_PER_SECOND = 5.0
    settings.BXSYNC_RATE_BURST = 250
    settings.BXSYNC_RATE_MAX_WAIT = 10.0
    settings.BXSYNC_RATE_PRIORITY_RESERVE = 20

    settings.BXSYNC_RATE_SHARE = 0.8

    limiter = limiter_for("crm", priority=True)

    # 80% of the Enterprise bucket: the rest is the portal's other applications' [docs/bitrix.md "Limits"].
    assert (limiter.key, limiter.rate, limiter.burst, limiter.max_wait) == ("crm.example.ru", 4.0, 200, 10.0)
    assert isinstance(limiter.store, DatabaseBucketStore)
    assert limiter_for("crm").burst == 180  # the last 20 of bxsync's slots are kept for payments


@pytest.mark.parametrize(
    ("shop", "crm", "shared"),
    [
        ("https://b24-x.bitrix24.ru/rest/1/a/", "https://b24-x.bitrix24.ru/rest/1/b/", True),
        ("https://B24-X.bitrix24.ru:443/rest/1/a/", "https://b24-x.bitrix24.ru/rest/9/b/", True),
        ("https://shop.example.ru/rest/1/a/", "https://b24-x.bitrix24.ru/rest/1/b/", False),
        ("http://127.0.0.1:8101/rest/1/a/", "http://127.0.0.1:8102/rest/1/b/", False),
    ],
)
def test_it_counts_one_portals_two_webhooks_in_one_bucket(settings, shop, crm, shared):
    # settings/performance/limits.md: the limit is tracked per Bitrix24, whoever calls it.
    settings.BXSYNC_CMS_REST_URL, settings.BXSYNC_CRM_REST_URL = shop, crm

    assert (limiter_for("cms").key == limiter_for("crm").key) is shared
    assert buckets_shared() is shared


@pytest.mark.parametrize(
    ("shop", "ordinary", "reserve"),
    [("https://b24-x.bitrix24.ru/rest/1/a/", 20, 20), ("https://shop.example.ru/rest/1/a/", 30, 10)],
)
def test_it_keeps_a_payment_reserve_for_each_role_drawing_from_a_bucket(settings, shop, ordinary, reserve):
    settings.BXSYNC_CMS_REST_URL, settings.BXSYNC_CRM_REST_URL = shop, "https://b24-x.bitrix24.ru/rest/1/b/"
    settings.BXSYNC_RATE_BURST, settings.BXSYNC_RATE_SHARE = 50, 0.8
    settings.BXSYNC_RATE_PRIORITY_RESERVE = 10

    assert priority_reserve() == reserve
    assert (limiter_for("crm").burst, limiter_for("crm", priority=True).burst) == (ordinary, 40)


def test_it_names_a_bucket_without_the_webhook_code(portals):
    settings = portals
    assert bucket_key("cms") == "shop.example.ru"
    settings.BXSYNC_CMS_REST_URL = ""
    assert bucket_key("cms") == "cms"  # not configured: the role's own bucket


def test_it_fills_its_share_of_one_portals_bucket_from_both_roles(settings, new_store, clock):
    settings.BXSYNC_CMS_REST_URL = "https://b24-x.bitrix24.ru/rest/1/a/"
    settings.BXSYNC_CRM_REST_URL = "https://b24-x.bitrix24.ru/rest/1/b/"
    settings.BXSYNC_RATE_PER_SECOND, settings.BXSYNC_RATE_BURST = 2.0, 50
    settings.BXSYNC_RATE_SHARE, settings.BXSYNC_RATE_PRIORITY_RESERVE = 0.8, 10
    store = new_store()
    waits: list[float] = []

    def limiter(side: str, priority: bool = False) -> GcraLimiter:
        built = limiter_for(side, priority=priority)
        return GcraLimiter(
            key=built.key,
            rate=built.rate,
            burst=built.burst,
            max_wait=60.0,
            store=store,
            clock=clock.time,
            sleep=waits.append,
        )

    for n in range(20):
        limiter("cms" if n % 2 else "crm").acquire()
    assert waits == []
    limiter("cms").acquire()  # the 21st ordinary request of the portal, whichever role: it waits
    assert len(waits) == 1
    for n in range(19):
        # Payments still have both roles' 10: a payment reads the shop and reads and writes the CRM ...
        limiter("cms" if n % 3 == 0 else "crm", priority=True).acquire()
    assert len(waits) == 1  # ... and 10 of the portal's 50 stay with its other applications
    limiter("crm", priority=True).acquire()
    assert len(waits) == 2


def test_it_keeps_the_last_slots_of_a_saturated_bucket_for_payments(new_store, clock):
    # Sleeping does not move the clock: everything below asks at the same instant.
    bulk_waits: list[float] = []
    payment_waits: list[float] = []
    bulk = make_limiter(new_store(), clock, burst=40, max_wait=60.0, sleep=bulk_waits.append)
    payment = make_limiter(new_store(), clock, burst=50, max_wait=60.0, sleep=payment_waits.append)

    for _ in range(41):
        bulk.acquire()  # the 41st has to wait for the bucket to drain ...
    assert bulk_waits == [pytest.approx(0.5)]

    for _ in range(9):
        payment.acquire()  # ... while payments still go at once
    assert payment_waits == []


def test_it_builds_a_redis_limiter_when_redis_is_configured(settings):
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"  # only named: a client connects at its first command
    try:
        first, second = limiter_for("crm"), limiter_for("cms")
    finally:
        _redis_store.cache_clear()

    assert isinstance(first.store, RedisBucketStore)
    assert first.store is second.store  # one connection pool per process
    assert first.store.prefix == "bxsync:rate:"

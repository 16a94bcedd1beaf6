"""Client-side rate limiting, so that we stay under Bitrix's leaky bucket instead of collecting 503s.

Bitrix cloud counts every HTTP request per portal (and source IP) in a bucket that drains 2/s and
rejects above 50 (Enterprise: 5/s, 250) with ``503 QUERY_LIMIT_EXCEEDED``; a batch of up to 50 commands is
one request [docs/bitrix.md "Limits"]. All our workers, and both our roles when the shop and the CRM are one
portal, share one bucket on the Bitrix side, so our mirror of it is keyed by the portal's host and shared
too: a database row or a Redis key, updated atomically. Other applications of the portal share it as well,
unseen: bxsync keeps to its share (BXSYNC_RATE_SHARE) and leaves them the rest.

The algorithm is GCRA: the bucket is a single "theoretical arrival time" (tat). A request reserves the
slot ``tat = max(tat, now) + 1/rate`` and may go at ``tat - burst/rate``, so ``burst`` requests pass at once
and the rest are spaced ``1/rate`` apart.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, transaction

from statussync.models import RateBucket

from .errors import RateLimitedError

__all__ = [
    "BucketStore",
    "DatabaseBucketStore",
    "GcraLimiter",
    "MemoryBucketStore",
    "RateLimiter",
    "RedisBucketStore",
    "bucket_key",
    "bucket_share",
    "buckets_shared",
    "gcra_reserve",
    "limiter_for",
    "limiter_level",
    "priority_reserve",
]


class RateLimiter(Protocol):
    def acquire(self) -> None:
        """Block until one request may go; raise ``RateLimitedError`` if that would take over max_wait."""


class BucketStore(Protocol):
    def reserve(self, *, key: str, rate: float, burst: int, now: float, max_wait: float) -> float:
        """Atomically reserve a slot and return the seconds to wait for it (>= 0).

        If the wait would exceed ``max_wait`` nothing is reserved and that (larger) wait is returned.
        """

    def peek(self, *, key: str) -> float | None:
        """The bucket's theoretical arrival time, read without reserving; None when nothing is recorded."""


def gcra_reserve(
    tat: float | None, *, rate: float, burst: int, now: float, max_wait: float
) -> tuple[float | None, float]:
    """One GCRA step: ``(new_tat, wait)``; ``new_tat`` is None when refused (wait > max_wait)."""
    new_tat = max(tat if tat is not None else now, now) + 1.0 / rate
    wait = new_tat - now - burst / rate
    if wait > max_wait:
        return None, wait
    return new_tat, max(wait, 0.0)


class GcraLimiter:
    """A ``RateLimiter`` that reserves a slot in a (shared) ``BucketStore`` and then sleeps until it."""

    def __init__(
        self,
        *,
        key: str,
        rate: float,
        burst: int,
        max_wait: float,
        store: BucketStore,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or burst < 1 or max_wait < 0:
            raise ValueError("need rate > 0, burst >= 1 and max_wait >= 0")
        self.key = key
        self.rate = rate
        self.burst = burst
        self.max_wait = max_wait
        self.store = store
        self.clock = clock
        self.sleep = sleep

    def acquire(self) -> None:
        """Wait for our slot. A refused slot is not reserved, so refusing costs the other workers nothing."""
        wait = self.store.reserve(
            key=self.key, rate=self.rate, burst=self.burst, now=self.clock(), max_wait=self.max_wait
        )
        if wait > self.max_wait:
            raise RateLimitedError(
                portal=self.key,
                method="",
                description=f"local rate limit: next slot in {wait:.1f}s (max_wait {self.max_wait:g}s)",
                retry_after=wait,
            )
        if wait > 0:
            self.sleep(wait)


class MemoryBucketStore:
    """Per-process store (tests, a single worker)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tats: dict[str, float] = {}

    def reserve(self, *, key: str, rate: float, burst: int, now: float, max_wait: float) -> float:
        with self._lock:
            new_tat, wait = gcra_reserve(
                self._tats.get(key), rate=rate, burst=burst, now=now, max_wait=max_wait
            )
            if new_tat is not None:
                self._tats[key] = new_tat
            return wait

    def peek(self, *, key: str) -> float | None:
        with self._lock:
            return self._tats.get(key)


class DatabaseBucketStore:
    """Store shared by all processes using one database (SQLite or PostgreSQL): the `RateBucket` model.

    Do not call it inside a long transaction of your own: the row lock (and, on SQLite, the database write
    lock) would be held until that transaction ends, and a rollback would undo the reservation.
    """

    def __init__(self, *, using: str = DEFAULT_DB_ALIAS) -> None:
        self.using = using

    def reserve(self, *, key: str, rate: float, burst: int, now: float, max_wait: float) -> float:
        buckets = RateBucket.objects.using(self.using)
        # select_for_update serializes on PostgreSQL. SQLite has no row locks (Django leaves the clause
        # out), but our settings open transactions with BEGIN IMMEDIATE: the database write lock up front.
        with transaction.atomic(using=self.using):
            # The row exists first (INSERT ... ON CONFLICT DO NOTHING): two workers never race on creating it.
            buckets.bulk_create([RateBucket(key=key, tat=0.0)], ignore_conflicts=True)
            tat = buckets.select_for_update().values_list("tat", flat=True).get(key=key)
            new_tat, wait = gcra_reserve(tat, rate=rate, burst=burst, now=now, max_wait=max_wait)
            if new_tat is not None:
                buckets.filter(key=key).update(tat=new_tat)
            return wait

    def peek(self, *, key: str) -> float | None:
        # A plain read outside any transaction: it takes no lock, so the dashboard never slows a worker.
        return RateBucket.objects.using(self.using).filter(key=key).values_list("tat", flat=True).first()


# KEYS[1] bucket key; ARGV: now, rate, burst, max_wait. Returns the wait as a string: Redis would truncate
# a Lua number to an integer. The key expires once the bucket is full again, so idle portals leave nothing.
_GCRA_LUA = """
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + 1 / rate
local wait = new_tat - now - burst / rate
if wait > max_wait then return tostring(wait) end
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'EX', math.ceil(new_tat - now) + 1)
if wait < 0 then wait = 0 end
return tostring(wait)
"""


class RedisBucketStore:
    """Store shared by every process that reaches one Redis; the GCRA step runs as one atomic Lua script."""

    def __init__(
        self, *, url: str | None = None, client: redis.Redis | None = None, prefix: str = "bxsync:rate:"
    ) -> None:
        self.prefix = prefix
        self.redis = client if client is not None else redis.Redis.from_url(url or settings.REDIS_URL)
        self._script = self.redis.register_script(_GCRA_LUA)

    def reserve(self, *, key: str, rate: float, burst: int, now: float, max_wait: float) -> float:
        # repr() keeps full float precision; Lua's tonumber() reads it back exactly.
        result = self._script(
            keys=[self.prefix + key], args=[repr(now), repr(float(rate)), burst, repr(max_wait)]
        )
        return float(result)

    def peek(self, *, key: str) -> float | None:
        value = self.redis.get(self.prefix + key)
        return float(value) if value is not None else None


@functools.lru_cache(maxsize=4)
def _redis_store(url: str) -> RedisBucketStore:
    # One connection pool per process, not one per client.
    return RedisBucketStore(url=url)


_REST_URL_SETTINGS = {"cms": "BXSYNC_CMS_REST_URL", "crm": "BXSYNC_CRM_REST_URL"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


def bucket_key(portal: str) -> str:
    """The bucket ``portal`` ('cms' or 'crm') draws from: its portal's host.

    Bitrix counts requests per portal (and source address), whoever makes them; applications calling one
    portal from one server share its bucket (settings/performance/limits.md) [docs/bitrix.md "Limits"]. A shop
    and a CRM on one Bitrix24 are one portal, so their two webhooks share one bucket here too. Without a URL
    (not configured) the role names its own bucket.
    """
    side = str(portal).lower()
    url = str(getattr(settings, _REST_URL_SETTINGS.get(side, ""), "") or "")
    parts = urlsplit(url)
    if not parts.hostname:
        return side
    port = parts.port
    host = parts.hostname.lower()
    return host if port is None or port == _DEFAULT_PORTS.get(parts.scheme) else f"{host}:{port}"


def buckets_shared() -> bool:
    """True when the shop and the CRM are one portal, drawing from one bucket."""
    return bucket_key("cms") == bucket_key("crm")


def bucket_share() -> tuple[float, int]:
    """bxsync's part of a portal's bucket: ``(rate, burst)``, BXSYNC_RATE_SHARE of the portal's
    BXSYNC_RATE_PER_SECOND and BXSYNC_RATE_BURST. The rest is headroom for the portal's other applications,
    which share the bucket (settings/performance/limits.md) and whose requests our mirror never sees."""
    share = min(max(float(settings.BXSYNC_RATE_SHARE), 0.05), 1.0)
    rate = float(settings.BXSYNC_RATE_PER_SECOND) * share
    burst = max(int(settings.BXSYNC_RATE_BURST * share), 1)
    return rate, burst


def priority_reserve() -> int:
    """The slots of bxsync's share of a bucket that only payment work may use: BXSYNC_RATE_PRIORITY_RESERVE
    per role drawing from the bucket. A payment costs requests on both roles (the shop's read, the CRM's read
    and write), so a shop and a CRM on one portal keep both roles' reserves in their one bucket, as two
    portals keep one each in theirs. Ordinary work always keeps at least one slot."""
    _, burst = bucket_share()
    roles = 2 if buckets_shared() else 1
    return max(min(int(settings.BXSYNC_RATE_PRIORITY_RESERVE) * roles, burst - 1), 0)


def limiter_for(portal: str, *, priority: bool = False) -> GcraLimiter:
    """The shared limiter for ``portal``'s bucket (``bucket_key``) from settings: Redis when ``REDIS_URL`` is
    set, else the database.

    bxsync fills only its share of the portal's bucket (``bucket_share``), and ordinary callers only up to
    that share less ``priority_reserve``: the last slots are kept for ``priority`` callers (payments), so
    a bulk edit that saturates the portal does not make a payment queue behind it.
    """
    redis_url = settings.REDIS_URL
    store: BucketStore = _redis_store(redis_url) if redis_url else DatabaseBucketStore()
    rate, burst = bucket_share()
    reserve = priority_reserve()
    return GcraLimiter(
        key=bucket_key(portal),
        rate=rate,
        burst=burst if priority else max(burst - reserve, 1),
        max_wait=settings.BXSYNC_RATE_MAX_WAIT,
        store=store,
    )


def limiter_level(portal: str, *, now: float | None = None) -> float | None:
    """How many requests ``portal``'s shared bucket holds now, as our mirror of Bitrix's leaky bucket
    counts them: 0 when idle, up to bxsync's share of the burst when saturated (more while callers wait for a
    slot). None when no request was ever recorded. A read only: it reserves nothing and writes nothing.
    """
    redis_url = settings.REDIS_URL
    store: BucketStore = _redis_store(redis_url) if redis_url else DatabaseBucketStore()
    tat = store.peek(key=bucket_key(portal))
    if tat is None:
        return None
    rate, _ = bucket_share()
    return max(tat - (time.time() if now is None else now), 0.0) * rate

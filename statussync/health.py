"""Health in one home: what workers record about each portal, and the report `/api/health/` serves.

The report never calls a portal. A portal's health is what the workers saw on their last calls, recorded
through `portal_contact_record`; the report adds the database, the cache, the broker and the queues.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F, Min
from django.db.models.functions import Coalesce
from django.utils import timezone

from statussync.bitrix import AuthError, BitrixError, RateLimitedError
from statussync.bitrix.moves import moves_seen, origin
from statussync.jobs import jobs_release_waiting
from statussync.models import ConnectedPortal, ConnectionState, Job, JobState, PortalHealth, Queue, Side

logger = logging.getLogger(__name__)

# A queue whose oldest due job waits longer than this has no live worker behind it.
STUCK_AFTER = timedelta(minutes=10)
# The health check must answer even when Redis is unreachable (a load balancer or monitor is waiting).
REDIS_PING_TIMEOUT_SECONDS = 2.0


def portal_contact_record(
    *, portal: str, error: BitrixError | None = None, at: datetime | None = None
) -> None:
    """Record the outcome of a call to `portal` ('cms' or 'crm'): a success when `error` is None.

    A failure after the last success starts (or continues) an outage: `failing_since` keeps the time of its
    first failure until a call succeeds. An auth error keeps the portal red until a success, even when
    later failures are of another kind (a timeout does not prove the webhook works again). Only `str(error)`
    is stored, which never holds the webhook URL (see `statussync.bitrix.errors`).

    A success that ends an outage keeps when it began and when it ended (`last_outage_since`, `recovered_at`)
    and releases the jobs waiting for the portal (`jobs_release_waiting`). `at` is when the portal answered
    (default now): a run that read the portal just before an outage began, and records it only at its end,
    ends nothing.

    A `RateLimitedError` records nothing: our own limiter refused to wait, so no call reached the portal.
    """
    if isinstance(error, RateLimitedError):
        return
    now = timezone.now()
    if error is None:
        _success_record(portal=portal, at=min(at or now, now))
        return
    # Coalesce in the UPDATE itself: two workers failing at once must not move the start of the outage.
    changes: dict[str, Any] = {
        "last_error": str(error)[:500],
        "last_error_at": now,
        "failing_since": Coalesce("failing_since", now),
    }
    if isinstance(error, AuthError):
        changes["auth_failed"] = True
    if PortalHealth.objects.filter(portal=portal).update(**changes):
        return
    try:
        with transaction.atomic():
            PortalHealth.objects.create(
                portal=portal,
                last_error=str(error)[:500],
                last_error_at=now,
                failing_since=now,
                auth_failed=isinstance(error, AuthError),
            )
    except IntegrityError:
        # Another worker created the row between our update and insert.
        PortalHealth.objects.filter(portal=portal).update(**changes)


def _success_record(*, portal: str, at: datetime) -> None:
    if _outage_end(portal=portal, at=at):
        return
    # No outage: the last contact moves on. An outage that began after `at` stays: an answer from before it
    # proves nothing about now.
    if PortalHealth.objects.filter(portal=portal, failing_since__isnull=True).update(
        last_contact_at=at, auth_failed=False
    ):
        return
    try:
        with transaction.atomic():
            PortalHealth.objects.get_or_create(portal=portal, defaults={"last_contact_at": at})
    except IntegrityError:
        pass  # another worker created the row meanwhile


def _outage_end(*, portal: str, at: datetime) -> bool:
    """End the portal's outage if it began before the answer `at`; True if it did. One UPDATE decides which of
    several workers succeeding at once ends it; the SET reads `failing_since` before it is cleared."""
    ended = PortalHealth.objects.filter(portal=portal, failing_since__lte=at).update(
        last_contact_at=at,
        last_outage_since=F("failing_since"),
        recovered_at=at,
        failing_since=None,
        auth_failed=False,
    )
    if ended:
        released = jobs_release_waiting(portal=portal)
        logger.info("the %s portal answers again; %d job(s) waiting for it released", portal, released)
    return bool(ended)


def health_live() -> dict[str, Any]:
    """The database only: what a load balancer needs to keep sending webhooks during a portal outage."""
    database = _database_check()
    return {"ok": database["ok"], "database": database}


def health_report() -> dict[str, Any]:
    """Database, cache, broker, queues and each portal, without calling the portals.

    `ok` is false when anything is: the database, cache or broker fails, a queue is stuck, or a portal is
    unconfigured or failing. A portal is failing when its last call failed after its last success; it then
    reports the reason (`last_error`) and since when (`failing_since`).
    """
    database = _database_check()
    if not database["ok"]:
        # Everything else reads the database (or, embedded, lives in it).
        return {"ok": False, "database": database}
    report: dict[str, Any] = {
        "database": database,
        "cache": _cache_check(),
        "broker": _broker_check(),
        "queue": _queues_report(now=timezone.now()),
        "portals": _portals_report(),
    }
    healthy = (
        report["cache"]["ok"]
        and report["broker"]["ok"]
        and all(q["ok"] for q in report["queue"].values())
        and all(p["ok"] for p in report["portals"].values())
    )
    return {"ok": healthy, **report}


def _database_check() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        logger.warning("health: the database does not answer: %s", type(exc).__name__)
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True}


def _cache_check() -> dict[str, Any]:
    """A round trip through the shared cache, which holds the workers' wake-up flags."""
    key, value = f"bxsync:health:{uuid.uuid4().hex}", uuid.uuid4().hex
    try:
        cache.set(key, value, timeout=30)
        ok = cache.get(key) == value
        cache.delete(key)
    except Exception as exc:  # any backend's error: Redis, database, pickling
        # The class name only: a connection error's text can name hosts and credentials of the cache URL.
        logger.warning("health: the cache failed: %s", type(exc).__name__)
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True} if ok else {"ok": False, "error": "the cache lost a value it was just given"}


def _broker_check() -> dict[str, Any]:
    """The django-q2 broker: a Redis ping, or the database itself for the ORM broker."""
    redis_url = settings.Q_CLUSTER.get("redis")
    if not redis_url:
        return {"kind": "orm", "ok": True}  # the database answered above
    import redis

    try:
        client = redis.Redis.from_url(
            redis_url,
            socket_connect_timeout=REDIS_PING_TIMEOUT_SECONDS,
            socket_timeout=REDIS_PING_TIMEOUT_SECONDS,
        )
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        logger.warning("health: the Redis broker does not answer: %s", type(exc).__name__)
        return {"kind": "redis", "ok": False, "error": type(exc).__name__}
    return {"kind": "redis", "ok": True}


def _queues_report(*, now: datetime) -> dict[str, Any]:
    queues: dict[str, Any] = {}
    for queue in (Queue.DEFAULT, Queue.PAYMENTS):
        jobs = Job.objects.filter(queue=queue)
        pending = jobs.filter(state=JobState.PENDING)
        oldest_due = pending.filter(not_before__lte=now).aggregate(t=Min("not_before"))["t"]
        stuck = oldest_due is not None and now - oldest_due > STUCK_AFTER
        queues[queue] = {
            "pending": pending.count(),
            "running": jobs.filter(state=JobState.RUNNING).count(),
            "dead": jobs.filter(state=JobState.DEAD).count(),
            "oldest_due_seconds": int((now - oldest_due).total_seconds()) if oldest_due else 0,
            "ok": not stuck,
        }
    return queues


def _portals_report() -> dict[str, Any]:
    moves = moves_seen()  # one cache read for both
    sides = (Side.CMS, Side.CRM)
    return {side: {**_portal_report(side), "moved_to": _moved_to(side, moves)} for side in sides}


def _portal_report(side: str) -> dict[str, Any]:
    row = PortalHealth.objects.filter(portal=side).first()
    # Webhooks both ways, or connected as an application (statussync.applications).
    configured = (bool(_rest_url(side)) and bool(_app_token(side))) or ConnectedPortal.objects.filter(
        portal=side, state=ConnectionState.CONNECTED
    ).exists()
    failing_since = _failing_since(row)
    auth_failed = bool(row and row.auth_failed)
    return {
        "configured": configured,
        "failing": failing_since is not None or auth_failed,
        "failing_since": _iso(failing_since),
        "last_contact": _iso(row.last_contact_at if row else None),
        "last_error": row.last_error if row else "",
        "last_error_at": _iso(row.last_error_at if row else None),
        "auth_failed": auth_failed,
        # The last outage that ended: when the portal began failing and when it answered again.
        "last_outage_since": _iso(row.last_outage_since if row else None),
        "recovered_at": _iso(row.recovered_at if row else None),
        "ok": configured and failing_since is None and not auth_failed,
    }


def _moved_to(side: str, moves: dict[str, dict[str, Any]]) -> str | None:
    """The address the portal now answers at, when it redirected bxsync there and the REST URL still names
    the old one (only the origin: the URL's path is a secret) [docs/bitrix.md "Calling the REST API"]."""
    seen = moves.get(side)
    configured = _rest_url(side)
    if not seen or not configured or seen.get("to") == origin(configured):
        return None
    return str(seen.get("to") or "") or None


def _failing_since(row: PortalHealth | None) -> datetime | None:
    if row is None:
        return None
    if row.failing_since is not None:
        return row.failing_since
    # A row written without `failing_since` (before this field, or by code that predates
    # portal_contact_record): the last error still counts when no success came after it.
    if row.last_error_at and (row.last_contact_at is None or row.last_error_at > row.last_contact_at):
        return row.last_error_at
    return None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _app_token(side: str) -> str:
    return settings.BXSYNC_CMS_APP_TOKEN if side == Side.CMS else settings.BXSYNC_CRM_APP_TOKEN


def _rest_url(side: str) -> str:
    return settings.BXSYNC_CMS_REST_URL if side == Side.CMS else settings.BXSYNC_CRM_REST_URL

"""System checks: settings that would quietly break a guarantee are reported at start-up."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Warning, register


@register()
def lease_outlasts_the_write_round(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """A run renews its lease just before its write round, and between the calls of a long round (hundreds
    of items write in several calls of 50 commands) once less than two calls plus 10 s of it is left
    (statussync/sync/write.py); a call waits up to BXSYNC_RATE_MAX_WAIT for the limiter and
    BXSYNC_REST_TIMEOUT for the reply. A lease shorter than that could run out with a write still in flight,
    and the worker that takes over would send it a second time. Twice a call, plus a margin: the handling of
    the answers between two calls, and a redirect repeating a call."""
    round_seconds = 2 * (settings.BXSYNC_RATE_MAX_WAIT + settings.BXSYNC_REST_TIMEOUT)
    lease = settings.BXSYNC_JOB_LEASE_SECONDS
    if lease >= round_seconds + 10:
        return []
    return [
        Warning(
            f"BXSYNC_JOB_LEASE_SECONDS ({lease}) is shorter than a write round can take "
            f"({round_seconds:.0f} s, plus 10 s of margin)",
            hint="Raise BXSYNC_JOB_LEASE_SECONDS, or lower BXSYNC_RATE_MAX_WAIT / BXSYNC_REST_TIMEOUT; "
            "otherwise a worker taking over an expired run may send a write still in flight a second time.",
            id="bxsync.W001",
        )
    ]


# settings/performance/limits.md: "one REST request must finish within 60 seconds" in the cloud.
CLOUD_REQUEST_SECONDS = 60.0


@register()
def rest_timeout_within_the_cloud_cutoff(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """Bitrix cloud interrupts a request after 60 s [docs/bitrix.md "Limits"]: waiting longer for an answer
    waits for one that cannot come (a boxed portal may allow more: its server decides)."""
    timeout = settings.BXSYNC_REST_TIMEOUT
    if timeout <= CLOUD_REQUEST_SECONDS:
        return []
    return [
        Warning(
            f"BXSYNC_REST_TIMEOUT ({timeout:g} s) is longer than Bitrix cloud lets a request run "
            f"({CLOUD_REQUEST_SECONDS:g} s)",
            hint="Lower it to 60 s or less for a cloud portal; a boxed portal's own limit is its server's.",
            id="bxsync.W002",
        )
    ]

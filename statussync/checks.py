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

"""System checks: settings that would quietly break a guarantee are reported at start-up."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Warning, register

from statussync.leases import HEARTBEAT_SECONDS

# A lease must survive this many heartbeats that come late or fail.
BEATS_PER_LEASE = 3


@register()
def lease_outlasts_the_write_round(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """A write round takes minutes for hundreds of items (calls of 50 commands, each waiting up to
    BXSYNC_RATE_MAX_WAIT for the limiter and BXSYNC_REST_TIMEOUT for the reply). The lease does not have to
    outlast it: the run's heartbeat renews its leases every HEARTBEAT_SECONDS while a call is in flight, and
    the run renews and checks its locks before each call (statussync/sync/write.py). What the lease must
    outlast is a few heartbeats that come late or fail — a busy database, a pause of the process. A shorter
    lease runs out under a live run, and the worker that takes over may send a write still in flight a second
    time."""
    lease = settings.BXSYNC_JOB_LEASE_SECONDS
    least = BEATS_PER_LEASE * HEARTBEAT_SECONDS
    if lease >= least:
        return []
    return [
        Warning(
            f"BXSYNC_JOB_LEASE_SECONDS ({lease}) is shorter than {BEATS_PER_LEASE} heartbeats "
            f"({least:.0f} s): a live run's write round can outlast it",
            hint=f"Raise BXSYNC_JOB_LEASE_SECONDS to {least:.0f} s or more; otherwise a worker taking over a "
            "live run whose renewal came late may send a write still in flight a second time.",
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

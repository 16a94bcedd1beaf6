"""A portal outage, tracked once for all workers: while a portal is down, one probe every few seconds (never a
storm of retries), and the jobs that failed on it are released the moment it answers.

A job that fails because its portal is down (`statussync.bitrix.portal_unreachable`) is put back marked as
waiting for that portal (`Job.waiting_for_portal`); no worker claims it while the portal's health says it is
failing (`statussync.jobs.portals_down`). A worker with nothing else to do calls `outage_hold`, which probes
the portal if no process has in the last PROBE_SECONDS; the first success, the probe's or any run's, ends the
outage in `statussync.health.portal_contact_record`, which releases the waiting jobs and wakes their queues.
Auth failures are not outages: they keep the longest backoff and health red until a call succeeds.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured
from django.db.models import Q
from django.utils import timezone

from statussync.bitrix import BitrixError, client_for
from statussync.health import portal_contact_record
from statussync.jobs import portals_down
from statussync.models import Job, JobState, PortalHealth

logger = logging.getLogger(__name__)

# One probe of a down portal per this many seconds, shared by every process. With the workers' poll
# (jobs.OUTAGE_POLL_SECONDS) and a run's own start, the backlog flows within about three seconds of the
# portal's return [docs/reliability.md 8].
PROBE_SECONDS = 2.0


def outage_hold() -> bool:
    """Probe each down portal some pending job waits for, unless another process did within PROBE_SECONDS.
    Returns True while jobs still wait for a down portal: the worker should stay and look again shortly."""
    waited_for = _portals_waited_for()
    for portal in waited_for:
        portal_probe(portal=portal)
    return bool(waited_for) and bool(_portals_waited_for())


def portal_probe(*, portal: str) -> bool | None:
    """Probe a failing `portal` if no process has in the last PROBE_SECONDS, and record what it answered.
    Returns whether it answered, or None when it was not this process's turn."""
    now = timezone.now()
    due = Q(probed_at__isnull=True) | Q(probed_at__lt=now - timedelta(seconds=PROBE_SECONDS))
    # Compare-and-set: of the workers looking at once, one probes.
    if not PortalHealth.objects.filter(due, portal=portal, failing_since__isnull=False).update(probed_at=now):
        return None
    try:
        client_for(portal).probe()
    except BitrixError as exc:
        portal_contact_record(portal=portal, error=exc)
        return False
    except ImproperlyConfigured:
        logger.warning("cannot probe the %s portal: its REST URL is not set", portal)
        return False
    portal_contact_record(portal=portal)
    return True


def _portals_waited_for() -> list[str]:
    waiting = Job.objects.filter(state=JobState.PENDING, waiting_for_portal__in=portals_down())
    return sorted(set(waiting.values_list("waiting_for_portal", flat=True).distinct()))

"""Leases on links: while a run holds a link, no other run decides or writes for it.

A short lease (compare-and-set on `lease_until`) rather than a database lock: the lock must survive REST calls
that take seconds, and on SQLite an open write transaction would block every webhook for that long.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from statussync.models import Link

if TYPE_CHECKING:
    from .run import SyncRun


def links_lease(run: SyncRun) -> None:
    """Take the lease of every item's link; an item whose link another run holds is marked busy."""
    now = timezone.now()
    ids = [i.link.id for i in run.items if i.link]
    if not ids:
        return
    Link.objects.filter(id__in=ids).filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now)).update(
        lease_until=now + timedelta(seconds=settings.BXSYNC_JOB_LEASE_SECONDS),
        lease_token=run.lease_token,
    )
    mine = set(Link.objects.filter(id__in=ids, lease_token=run.lease_token).values_list("id", flat=True))
    for item in run.items:
        if item.link and item.link.id not in mine:
            item.busy = True


def links_release(run: SyncRun) -> None:
    """Give back every lease this run holds."""
    Link.objects.filter(lease_token=run.lease_token).update(lease_until=None, lease_token="")

"""Locks by order id: while a run holds an order, no other run reads, decides or writes for it or its deal.

Taken before reading (for a deal seen without a link, as soon as the deal names its order), renewed by the
run's heartbeat while it is alive (statussync/leases.py) and before each call of the write round, checked by
every write the run records (fencing) and released at the end. A run that lost its lock — its renewals failed
for a lease and another worker took the order, or a payment's run took it over — sends no write for it and
records nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from statussync.models import Job, JobState, SyncLock

if TYPE_CHECKING:
    from .items import Item
    from .run import SyncRun


def orders_lock(run: SyncRun, items: Iterable[Item]) -> None:
    """Take the lock of each item's order; an item whose order another run holds is marked busy."""
    wanted = {i.order_id: i for i in items if i.order_id and i.live and i.order_id not in run.locked}
    if not wanted:
        return
    now = timezone.now()
    until = now + timedelta(seconds=settings.BXSYNC_JOB_LEASE_SECONDS)
    ids = list(wanted)
    # Free or expired locks are taken by compare-and-set: on PostgreSQL the UPDATE re-checks `until` on the
    # row it waited for, and SQLite runs one writer at a time, so two runs never both win. A payment's run
    # also takes the order from a run of the default queue rather than wait behind it (polling the payment
    # meanwhile): that run's write round checks its locks before each call and drops what it lost, and
    # recording checks the lock too (fencing).
    takeable = Q(until__lt=now) | Q(priority=False) if run.priority else Q(until__lt=now)
    taken = {"token": run.lock_token, "until": until, "priority": run.priority}
    SyncLock.objects.filter(takeable, order_id__in=ids).update(**taken)
    SyncLock.objects.bulk_create([SyncLock(order_id=o, **taken) for o in ids], ignore_conflicts=True)
    mine = set(
        SyncLock.objects.filter(order_id__in=ids, token=run.lock_token).values_list("order_id", flat=True)
    )
    run.locked |= mine
    for item in run.items:
        if item.live and item.order_id in wanted and item.order_id not in mine:
            item.busy = True


def locks_renew(run: SyncRun) -> None:
    """Before each call of the write round: extend the run's locks and its jobs' leases, and mark busy every
    item whose lock has gone (the run outlived its lease and another worker took the order), so its write is
    not sent."""
    held = run_claims_renew(lock_token=run.lock_token, claim_tokens=run_claim_tokens(run))
    run.locked &= held
    for item in run.live():
        if item.order_id and item.order_id not in held:
            item.busy = True


def run_claim_tokens(run: SyncRun) -> set[str]:
    """The claim tokens of the jobs a run works on (one per claim that handed it jobs)."""
    return {job.claim_token for item in run.items for job in item.jobs if job.claim_token}


def run_claims_renew(*, lock_token: str, claim_tokens: set[str]) -> set[str]:
    """Extend the order locks held with `lock_token` and the jobs claimed with `claim_tokens` by a lease;
    returns the order ids still held. The heartbeat calls it from its own thread, so it touches only the
    database. Only what was still ours: an expired lock keeps our token until another run takes it, but it is
    no longer held — that run may take it between this renewal and our write."""
    now = timezone.now()
    until = now + timedelta(seconds=settings.BXSYNC_JOB_LEASE_SECONDS)
    SyncLock.objects.filter(token=lock_token, until__gte=now).update(until=until)
    held = set(SyncLock.objects.filter(token=lock_token, until__gte=now).values_list("order_id", flat=True))
    if claim_tokens:
        Job.objects.filter(claim_token__in=claim_tokens, state=JobState.RUNNING, lease_until__gte=now).update(
            lease_until=until
        )
    return held


def lock_held(run: SyncRun, order_id: str) -> bool:
    """Whether the run still holds `order_id`'s lock; call inside the transaction that records a write, which
    then keeps the lock row from being taken until it commits (fencing)."""
    return not order_id or order_id in locks_held(run, [order_id])


def locks_held(run: SyncRun, order_ids: Iterable[str]) -> set[str]:
    """Which of `order_ids` the run still holds, in one query; inside a transaction, as `lock_held`."""
    held = SyncLock.objects.filter(
        order_id__in=set(order_ids), token=run.lock_token, until__gte=timezone.now()
    )
    if connection.features.has_select_for_update:
        held = held.select_for_update()
    return set(held.values_list("order_id", flat=True))


def locks_give_back(run: SyncRun, order_ids: Iterable[str]) -> None:
    """Give back the locks of orders whose items are recorded, before the run ends: the next run may take
    them at once instead of handing their jobs back as busy."""
    order_ids = set(order_ids) & run.locked
    if order_ids:
        SyncLock.objects.filter(token=run.lock_token, order_id__in=order_ids).delete()
        run.locked -= order_ids


def locks_release(run: SyncRun) -> None:
    """Give back every lock this run holds."""
    SyncLock.objects.filter(token=run.lock_token).delete()

"""Pending jobs that a run's read covers: an event that came in before the run sent its read of the entity
announces a change the read saw, so the job it left would only read the same again.

Bitrix sends an event once the change is saved: `OnSaleOrderSaved` "occurs at the end of the order saving
process, when the order and all related entities have already been saved" (api-reference/sale/events/
on-sale-order-saved.md); the deal events are "notifications about data changes" that Bitrix queues and
then sends (api-reference/events/index.md "How Events Work"). So a job whose last event (`Job.updated_at`,
bumped by every event coalesced into it) came before the read left names nothing the read missed.

The two stamps are of two clocks when the webhooks and the workers run on different hosts: the event must
have come in CLOCK_MARGIN before the read by them, so hosts whose clocks agree that closely (NTP keeps a LAN
within a millisecond) never cover an event that came after the read (docs/deploy.md).

Only what cannot change the decision is covered: a pending job of an event (not a manager's resync, never
one carrying a manager's `wins`), of the order or the deal that was read, finished with the item's record
in its transaction, and only while it is still the job that was looked at (compare-and-set).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db.models import Q
from django.utils import timezone

from statussync.models import Job, JobKind, JobOrigin, JobState

from .items import Item

if TYPE_CHECKING:
    from .run import SyncRun

CLOCK_MARGIN = timedelta(milliseconds=10)


def _reads(item: Item) -> list[tuple[str, str, datetime]]:
    """The item's entities this run read, as (job kind, entity id, when the read was sent)."""
    reads: list[tuple[str, str, datetime]] = []
    if item.order_id and item.order_read_at is not None:
        reads.append((JobKind.ORDER, item.order_id, item.order_read_at))
    if item.deal_id and item.deal_read_at is not None:
        reads.append((JobKind.DEAL, item.deal_id, item.deal_read_at))
    return reads


def covers_find(run: SyncRun) -> None:
    """Before the run records its items: each item's pending event jobs whose last event came before the
    run's read of that entity (one query for the run). They are finished with the item (`covers_finish`)."""
    reads = {item: _reads(item) for item in run.items if not item.busy and item.error is None}
    wanted = Q()
    for kind in (JobKind.ORDER, JobKind.DEAL):
        ids = {entity for item_reads in reads.values() for k, entity, _ in item_reads if k == kind}
        if ids:
            wanted |= Q(kind=kind, entity_id__in=ids)
    if not wanted:
        return
    pending: dict[tuple[str, str], list[Job]] = {}
    jobs = Job.objects.filter(wanted, state=JobState.PENDING, origin=JobOrigin.EVENT, wins="")
    for job in jobs:
        pending.setdefault((job.kind, job.entity_id), []).append(job)
    for item, item_reads in reads.items():
        item.covers = [
            (job, read_at)
            for kind, entity, read_at in item_reads
            for job in pending.get((kind, entity), [])
            if job.updated_at < read_at - CLOCK_MARGIN
        ]


def covers_finish(item: Item) -> list[dict[str, Any]]:
    """Finish the jobs the item's reads cover — each only if it is still pending as it was found (no event
    since) — and say which, for the item's audit entry. Called in the transaction recording the item."""
    now = timezone.now()
    covered = []
    for job, read in item.covers:
        note = f"covered: its events came before the read sent at {read.isoformat()} ({item.describe()})"
        finished = Job.objects.filter(
            id=job.id,
            state=JobState.PENDING,
            updated_at=job.updated_at,
            events_coalesced=job.events_coalesced,
            wins="",
        ).update(state=JobState.DONE, last_error=note, finished_at=now, updated_at=now)
        if finished:
            covered.append(
                {
                    "job": job.id,
                    "kind": job.kind,
                    "entity": job.entity_id,
                    "event": job.event,
                    "events": job.events_coalesced,
                    "last_event_at": job.updated_at.isoformat(),
                    "read_at": read.isoformat(),
                }
            )
    return covered

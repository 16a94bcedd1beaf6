"""The sync run, as the rules read: claim → lease → read (batch) → decide (engine) → write (batch) → record →
release. Jobs are claimed by the worker (`statussync.jobs`) before `jobs_handle` is called with them.

A run handles many items at once so that a bulk edit costs a few `batch` calls instead of thousands of
single calls against a portal limited to 2 requests/s: one read round per portal (two when a deal's order
must be found first), one write round per portal.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from statussync.bitrix import BitrixClient, BitrixError, client_for
from statussync.jobs import jobs_fail
from statussync.models import Job, JobState, Queue, Side

from . import comments, decide, echoes, locks, read, record, write
from .items import Item, ItemResult, items_from_jobs

logger = logging.getLogger(__name__)


@dataclass
class SyncRun:
    """What every step of one run shares: its items, the portal clients, its lease token and what the
    portals answered (for their health)."""

    items: list[Item]
    cms: BitrixClient
    crm: BitrixClient
    dry_run: bool = False
    lock_token: str = field(default_factory=lambda: uuid.uuid4().hex)
    locked: set[str] = field(default_factory=set)  # the order ids whose lock this run holds
    contacts: dict[str, BitrixError | None] = field(default_factory=dict)
    comments_planned: bool = False  # the CRM explanations have found their batch (statussync.sync.comments)

    def live(self) -> list[Item]:
        """The items still on their way to a decision."""
        return [i for i in self.items if i.live]

    def contact(self, portal: str, error: BitrixError | None) -> None:
        """Note how a call to `portal` went; one failure in a run marks the portal as failing."""
        if error is None:
            self.contacts.setdefault(portal, None)
        else:
            self.contacts[portal] = error


def jobs_handle(jobs: list[Job]) -> None:
    """Sync a claimed batch of jobs, then finish or retry each of them."""
    try:
        priority = any(job.queue == Queue.PAYMENTS for job in jobs)
        items_sync(items=items_from_jobs(jobs=jobs), priority=priority)
    except Exception as exc:
        # A bug or a database outage must not strand the claimed jobs until their lease runs out.
        logger.exception("sync run failed; its %d job(s) will be retried", len(jobs))
        running = list(Job.objects.filter(id__in=[j.id for j in jobs], state=JobState.RUNNING))
        jobs_fail(jobs=running, error=exc)


def items_sync(*, items: list[Item], dry_run: bool = False, priority: bool = False) -> list[ItemResult]:
    """Read, decide, write and record a batch of items. With `dry_run` nothing is written anywhere;
    `priority` (payments) may use the rate-limit slots kept for it."""
    run = SyncRun(
        items=items,
        cms=client_for(Side.CMS, priority=priority),
        crm=client_for(Side.CRM, priority=priority),
        dry_run=dry_run,
    )
    try:
        read.payments_resolve(run)  # a payment event names a payment: find its order
        read.links_attach(run)  # known links; both sides of one link become one item
        if not dry_run:
            locks.orders_lock(run, run.items)  # by order id: new pairs are held too
            echoes.echoes_recognise(run)  # the event of our own confirmed write: settled unread
        read.sides_read(run)  # orders, deals and the deals naming each unlinked order
        read.unlinked_deals_read(run)  # deals seen without a link: lock and read their order
        decide.decisions_make(run)
        if not dry_run:
            write.writes_send(run)  # intents first, then the CRM's batch (payments), then the shop's
            comments.comments_send(run)  # explanations for a run with no CRM write to ride along with
        return [record.item_record_safely(run, item) for item in run.items]
    finally:
        if not dry_run:
            locks.locks_release(run)
            record.portal_contacts_record(run.contacts)

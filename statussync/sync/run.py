"""The sync run, as the rules read: claim → lease → read (batch) → decide (engine) → write (batch) → record →
release. Jobs are claimed by the worker (`statussync.jobs`) before `jobs_handle` is called with them.

A run handles many items at once so that a bulk edit costs a few `batch` calls instead of thousands of
single calls against a portal limited to 2 requests/s: one read round per portal (two when a deal's order
must be found first), one write round per portal.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from statussync.bitrix import BitrixClient, BitrixError, client_for
from statussync.jobs import jobs_fail
from statussync.leases import heartbeat
from statussync.models import Job, Queue, Side

from . import at_base, comments, covered, decide, echoes, locks, read, record, write
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
    priority: bool = False  # a payment's run: it may take its orders over from the default queue's runs
    lock_token: str = field(default_factory=lambda: uuid.uuid4().hex)
    locked: set[str] = field(default_factory=set)  # the order ids whose lock this run holds
    contacts: dict[str, BitrixError | None] = field(default_factory=dict)
    answered_at: dict[str, datetime] = field(default_factory=dict)  # each portal's last successful call
    comments_planned: bool = False  # the CRM explanations have found their batch (statussync.sync.comments)

    def live(self) -> list[Item]:
        """The items still on their way to a decision (or to their write)."""
        return [i for i in self.items if i.live and not i.at_base]

    def contact(self, portal: str, error: BitrixError | None) -> None:
        """Note how a call to `portal` went; one failure in a run marks the portal as failing."""
        if error is None:
            self.contacts.setdefault(portal, None)
            self.answered_at[portal] = timezone.now()
        else:
            self.contacts[portal] = error


def jobs_handle(jobs: list[Job]) -> None:
    """Sync a claimed batch of jobs, then finish or retry each of them."""
    try:
        priority = any(job.queue == Queue.PAYMENTS for job in jobs)
        items_sync(items=items_from_jobs(jobs=jobs), priority=priority)
    except Exception as exc:
        # A bug or a database outage must not strand the claimed jobs until their lease runs out. Only the
        # claims this run holds: `jobs` carry our tokens, and jobs_fail changes a job only while its token is
        # still ours, so a job another worker took over after our lease ran out stays with that worker.
        logger.exception("sync run failed; its %d job(s) will be retried", len(jobs))
        jobs_fail(jobs=jobs, error=exc)


def items_sync(*, items: list[Item], dry_run: bool = False, priority: bool = False) -> list[ItemResult]:
    """Read, decide, write and record a batch of items. With `dry_run` nothing is written anywhere;
    `priority` (payments) may use the rate-limit slots kept for it."""
    run = SyncRun(
        items=items,
        cms=client_for(Side.CMS, priority=priority),
        crm=client_for(Side.CRM, priority=priority),
        dry_run=dry_run,
        priority=priority,
    )
    # While the run is alive its heartbeat keeps its jobs and order locks; the claims are known now (merging
    # items later adds no job), and the heartbeat's thread touches only the database, never the items.
    tokens = locks.run_claim_tokens(run)
    beat = heartbeat(
        renew=lambda: locks.run_claims_renew(lock_token=run.lock_token, claim_tokens=tokens),
        what="a sync run",
    )
    with contextlib.nullcontext() if dry_run else beat:
        return _steps(run)


def _steps(run: SyncRun) -> list[ItemResult]:
    """The steps of `items_sync`, in order."""
    dry_run = run.dry_run
    try:
        read.payments_resolve(run)  # a payment event names a payment: find its order
        read.links_attach(run)  # known links; both sides of one link become one item
        if not dry_run:
            locks.orders_lock(run, run.items)  # by order id: new pairs are held too
            read.links_reread(run)  # the base as it stands under the lock
            echoes.echoes_recognise(run)  # the event of our own confirmed write: settled unread
            if run.priority:
                at_base.payments_write_at_base(run)  # the deal still at its base: checked and written at once
        read.sides_read(run)  # orders, deals and the deals naming each unlinked order
        read.unlinked_deals_read(run)  # deals seen without a link: lock and read their order
        decide.decisions_make(run)
        if not dry_run:
            write.writes_send(run)  # intents first, then the CRM's batch (payments), then the shop's
            comments.comments_send(run)  # explanations for a run with no CRM write to ride along with
        if not dry_run:
            covered.covers_find(run)  # the pending jobs whose events came before this run's reads
        return record.items_record(run)
    finally:
        if not dry_run:
            locks.locks_release(run)
            record.portal_contacts_record(run.contacts, answered_at=run.answered_at)

"""What one sync run works on: an item per order, deal or linked pair, from jobs or asked for on demand."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from statussync.bitrix import NotFoundError
from statussync.engine import DealState, Decision, OrderState, Origin, SideName, side_name
from statussync.models import Job, JobKind, Link, Outcome
from statussync.reasons import Reason

_ORIGIN_OF_KIND: dict[str, Origin] = {JobKind.ORDER: "cms", JobKind.PAYMENT: "payment", JobKind.DEAL: "crm"}


@dataclass(eq=False)
class Item:
    """One order, deal or linked pair to sync, and everything learnt about it during the run."""

    origin: Origin
    order_id: str = ""
    deal_id: str = ""
    payment_id: str = ""  # a payment event's id, until its order is known
    source: str = "event"  # what asked for it: event, reconcile or admin (for the audit)
    wins: SideName | None = None  # a manager's "take this side's value" (a job's `wins`)
    events: list[str] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    started: datetime | None = None
    link: Link | None = None
    order: OrderState | None = None
    # When the read that gave `order` was sent. One read before the run held the order's lock (a payment's
    # order, read with it) is kept only if no other run may have written the order since
    # (statussync/sync/read.py: links_reread). Both moments tell which pending jobs the read covers
    # (statussync/sync/covered.py).
    order_read_at: datetime | None = None
    order_missing: bool = False
    deal: DealState | None = None
    deal_read_at: datetime | None = None  # when the read that gave `deal` was sent
    deal_missing: bool = False
    candidates: list[DealState] | None = None  # the deals naming the order, for a link not yet made
    calls: int = 0
    # A failed call, or a bug met while handling this item alone (the rest of the run goes on).
    error: Exception | None = None
    decision: Decision | None = None
    landed: str = ""  # an earlier write, sent but unconfirmed, that the target now shows: how it was noticed
    write_sent: bool = False
    # Decided and written in one call with the check that the deal stood at its base (a payment's run,
    # statussync/sync/at_base.py): the run's later steps pass it by, to its recording.
    at_base: bool = False
    written: OrderState | DealState | None = None  # the target side as read right after our write
    outcome: str = ""  # set when the item ends before the engine (unlinked, ambiguous, ignored)
    reason: Reason | None = None
    busy: bool = False
    # Pending jobs this run's reads may cover, each with when the read covering it was sent (covered.py).
    covers: list[tuple[Job, datetime]] = field(default_factory=list)

    @property
    def live(self) -> bool:
        """Still on its way to a decision (not busy, failed or settled early)."""
        return not self.busy and not self.error and not self.outcome

    def settle(self, outcome: str, reason: Reason) -> None:
        """End the item before the engine (unlinked, ambiguous, ignored), with the reason for the audit."""
        self.outcome, self.reason = outcome, reason

    def fail(self, error: Exception, *, if_missing: Reason | None = None) -> None:
        """Record a failed call; the first error is the one retried and audited. With `if_missing`, an
        entity that no longer exists settles the item as ignored instead."""
        if if_missing is not None and isinstance(error, NotFoundError):
            self.settle(Outcome.IGNORED, if_missing)
        elif self.error is None:
            self.error = error

    def describe(self) -> str:
        """ "order 1 ↔ deal 2", as far as known."""
        parts = []
        if self.order_id or self.link:
            parts.append(f"order {self.link.order_id if self.link else self.order_id}")
        if self.deal_id or self.link:
            parts.append(f"deal {self.link.deal_id if self.link else self.deal_id}")
        return " ↔ ".join(parts)


@dataclass
class ItemResult:
    """How an item ended: the outcome recorded in the audit, and why."""

    item: Item
    outcome: str
    reason: Reason

    @property
    def message(self) -> str:
        """The reason in English, for the console."""
        return str(self.reason)


def items_from_jobs(*, jobs: list[Job]) -> list[Item]:
    """One item per order/deal; payment jobs become order items once their payment is read."""
    items: dict[tuple[str, str], Item] = {}
    for job in jobs:
        key = (job.kind, job.entity_id)
        item = items.get(key)
        if item is None:
            origin = _ORIGIN_OF_KIND[job.kind] if job.origin == "event" else None
            item = Item(origin=origin, started=job.created_at, source=job.origin)
            if job.kind == JobKind.DEAL:
                item.deal_id = job.entity_id
            elif job.kind == JobKind.PAYMENT:
                item.payment_id = job.entity_id
            else:
                item.order_id = job.entity_id
            items[key] = item
        item.jobs.append(job)
        item.events.append(job.event or job.origin)
        if job.wins:
            item.wins = side_name(job.wins)
    return list(items.values())


def items_for(
    *, order_ids: Iterable[str] = (), deal_ids: Iterable[str] = (), source: str = "reconcile"
) -> list[Item]:
    """Items for an on-demand sync (reconciliation, admin resync), without jobs. No side asked for them, so
    a difference on both sides is settled by the conflict policy."""
    now = timezone.now()
    items = [Item(origin=None, order_id=str(o), started=now, source=source) for o in order_ids]
    items += [Item(origin=None, deal_id=str(d), started=now, source=source) for d in deal_ids]
    return items


def items_merge(items: list[Item], key: Callable[[Item], Hashable | None]) -> list[Item]:
    """One item per key: jobs and events join; the origin is the payment's, or nobody's when mixed."""
    first: dict[Hashable, Item] = {}
    merged: list[Item] = []
    for item in items:
        k = key(item)
        other = first.get(k) if k is not None else None
        if other is None:
            if k is not None:
                first[k] = item
            merged.append(item)
            continue
        other.jobs += item.jobs
        other.events += item.events
        other.wins = other.wins or item.wins
        if "payment" in (other.origin, item.origin):
            other.origin = "payment"
        elif other.origin != item.origin:
            other.origin = None
    return merged

"""The sync run: I/O around the engine. Lock the links, read both sides, decide, write, move the base, audit.

A run handles many items at once so that a bulk edit costs a few `batch` calls instead of thousands of
single calls against a portal limited to 2 requests/s: one read round per portal (two when a deal's order
must be found first), one write round per portal.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from statussync import portals
from statussync.bitrix import (
    AuthError,
    BatchResult,
    BitrixClient,
    BitrixError,
    NotFoundError,
    TransientError,
    client_for,
)
from statussync.engine import Base, DealState, Decision, OrderState, Origin, decide, link_resolve
from statussync.jobs import job_release, job_request, job_retry, jobs_finish
from statussync.mapping import mapping_load
from statussync.models import (
    AuditEntry,
    Job,
    JobKind,
    JobState,
    Link,
    LinkState,
    Outcome,
    PortalHealth,
    Queue,
    Side,
    UnmappedValue,
)

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Item:
    """One order, deal or linked pair to sync, and everything learnt about it during the run."""

    origin: Origin
    order_id: str = ""
    deal_id: str = ""
    payment_id: str = ""  # a payment event's id, until its order is known
    source: str = "event"  # what asked for it: event, reconcile or admin (for the audit)
    events: list[str] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    started: datetime | None = None
    link: Link | None = None
    order: OrderState | None = None
    order_missing: bool = False
    deal: DealState | None = None
    deal_missing: bool = False
    calls: int = 0
    error: BitrixError | None = None
    decision: Decision | None = None
    outcome: str = ""  # set when the item ends before the engine (unlinked, ambiguous, ignored)
    message: str = ""
    busy: bool = False

    @property
    def live(self) -> bool:
        """Still on its way to a decision (not busy, failed or settled early)."""
        return not self.busy and not self.error and not self.outcome

    def describe(self) -> str:
        parts = []
        if self.order_id or self.link:
            parts.append(f"order {self.link.order_id if self.link else self.order_id}")
        if self.deal_id or self.link:
            parts.append(f"deal {self.link.deal_id if self.link else self.deal_id}")
        return " ↔ ".join(parts)


@dataclass
class ItemResult:
    item: Item
    outcome: str
    message: str


def items_from_jobs(*, jobs: list[Job]) -> list[Item]:
    """One item per order/deal; payment jobs become order items once their payment is read."""
    items: dict[tuple[str, str], Item] = {}
    for job in jobs:
        key = (job.kind, job.entity_id)
        origin: Origin = {JobKind.ORDER: "cms", JobKind.PAYMENT: "payment", JobKind.DEAL: "crm"}[job.kind]
        if job.origin != "event":
            origin = None
        item = items.get(key)
        if item is None:
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
    return list(items.values())


def jobs_handle(jobs: list[Job]) -> None:
    """Sync a claimed batch of jobs, then finish or retry each of them."""
    try:
        priority = any(job.queue == Queue.PAYMENTS for job in jobs)
        items_sync(items=items_from_jobs(jobs=jobs), priority=priority)
    except Exception as exc:
        # A bug or a database outage must not strand the claimed jobs until their lease runs out.
        logger.exception("sync run failed; its %d job(s) will be retried", len(jobs))
        for job in Job.objects.filter(id__in=[j.id for j in jobs], state=JobState.RUNNING):
            job_retry(job=job, error=f"{type(exc).__name__}: {str(exc)[:500]}")


def items_sync(*, items: list[Item], dry_run: bool = False, priority: bool = False) -> list[ItemResult]:
    """Read, decide, write and record a batch of items. With `dry_run` nothing is written anywhere;
    `priority` (payments) may use the rate-limit slots kept for it."""
    return _SyncRun(items=items, dry_run=dry_run, priority=priority).execute()


class _SyncRun:
    def __init__(self, *, items: list[Item], dry_run: bool, priority: bool) -> None:
        self.items = items
        self.dry_run = dry_run
        self.cms: BitrixClient = client_for(Side.CMS, priority=priority)
        self.crm: BitrixClient = client_for(Side.CRM, priority=priority)
        self.lease_token = uuid.uuid4().hex
        self.portal_errors: dict[str, BitrixError | None] = {}

    # --- the run -------------------------------------------------------------------------------------------
    def execute(self) -> list[ItemResult]:
        try:
            self._resolve_payments()
            self._attach_links()
            if not self.dry_run:
                self._lease_links()
            self._read_round_one()
            self._read_round_two()
            # An order and a deal never linked before, both in this batch: found twice, decided once.
            self._merge_by(
                lambda i: (i.order_id, i.deal_id) if i.live and i.link is None and i.deal else None
            )
            self._decide()
            if not self.dry_run:
                self._write()
            return [self._record(item) for item in self.items]
        finally:
            if not self.dry_run:
                self._release_links()
                self._note_portal_health()

    def _live(self) -> list[Item]:
        return [i for i in self.items if i.live]

    # --- phases --------------------------------------------------------------------------------------------
    def _resolve_payments(self) -> None:
        pay_items = [i for i in self.items if i.payment_id]
        commands = {f"p{n}": portals.payment_get(i.payment_id) for n, i in enumerate(pay_items)}
        results = self._batch(self.cms, commands, lambda n: pay_items[n])
        for n, item in enumerate(pay_items):
            if item.error:
                continue
            key = f"p{n}"
            if key in results.errors:
                self._item_error(item, results.errors[key], missing_outcome="payment not found")
                continue
            order_id = portals.payment_order_id(results.results.get(key) or {})
            if not order_id:
                item.outcome, item.message = Outcome.IGNORED, "payment has no order"
                continue
            item.order_id = order_id
        # A payment and an order event for the same order in one batch: one item, and the payment counts.
        self._merge_by(lambda i: i.order_id if i.order_id and not i.deal_id and i.live else None)

    def _attach_links(self) -> None:
        order_ids = {i.order_id for i in self.items if i.order_id}
        deal_ids = {i.deal_id for i in self.items if i.deal_id}
        links = Link.objects.filter(state=LinkState.ACTIVE).filter(
            Q(order_id__in=order_ids) | Q(deal_id__in=deal_ids)
        )
        by_order = {link.order_id: link for link in links}
        by_deal = {link.deal_id: link for link in links}
        for item in self.items:
            link = by_order.get(item.order_id) if item.order_id else by_deal.get(item.deal_id)
            if link is not None:
                item.link = link
                item.order_id, item.deal_id = link.order_id, link.deal_id
        # Both sides of one link in one batch: one decision.
        self._merge_by(lambda i: i.link.id if i.link else None)

    def _merge_by(self, key: Callable[[Item], Hashable | None]) -> None:
        """One item per key: jobs and events join; the origin is the payment's, or nobody's when mixed."""
        first: dict[Hashable, Item] = {}
        merged: list[Item] = []
        for item in self.items:
            k = key(item)
            other = first.get(k) if k is not None else None
            if other is None:
                if k is not None:
                    first[k] = item
                merged.append(item)
                continue
            other.jobs += item.jobs
            other.events += item.events
            if "payment" in (other.origin, item.origin):
                other.origin = "payment"
            elif other.origin != item.origin:
                other.origin = None
        self.items = merged

    def _lease_links(self) -> None:
        now = timezone.now()
        ids = [i.link.id for i in self.items if i.link]
        if not ids:
            return
        Link.objects.filter(id__in=ids).filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now)).update(
            lease_until=now + timedelta(seconds=settings.BXSYNC_JOB_LEASE_SECONDS),
            lease_token=self.lease_token,
        )
        mine = set(Link.objects.filter(id__in=ids, lease_token=self.lease_token).values_list("id", flat=True))
        for item in self.items:
            if item.link and item.link.id not in mine:
                item.busy = True

    def _release_links(self) -> None:
        Link.objects.filter(lease_token=self.lease_token).update(lease_until=None, lease_token="")

    def _read_round_one(self) -> None:
        items = self._live()
        cms_cmds: dict[str, portals.Command] = {}
        crm_cmds: dict[str, portals.Command] = {}
        for n, item in enumerate(items):
            if item.order_id:
                cms_cmds[f"o{n}"] = portals.order_get(item.order_id)
            if item.deal_id:
                crm_cmds[f"d{n}"] = portals.deal_get(item.deal_id)
            if item.link is None and item.order_id:
                crm_cmds[f"l{n}"] = portals.deals_by_order(item.order_id)
        self._apply_reads(items, cms_cmds, crm_cmds)

    def _read_round_two(self) -> None:
        """Deals seen without a link: find their order through the deal order field."""
        items = [i for i in self._live() if i.link is None and not i.order_id and i.deal is not None]
        cms_cmds: dict[str, portals.Command] = {}
        crm_cmds: dict[str, portals.Command] = {}
        for n, item in enumerate(items):
            order_id = item.deal.order_id if item.deal else ""
            if not order_id:
                item.outcome = Outcome.UNLINKED
                item.message = f"deal {item.deal_id} has no order id in {portals.deal_order_field()}"
                continue
            existing = Link.objects.filter(state=LinkState.ACTIVE, order_id=order_id).first()
            if existing is not None:
                item.outcome = Outcome.AMBIGUOUS
                item.message = (
                    f"deal {item.deal_id} names order {order_id}, which is linked to deal {existing.deal_id}"
                )
                continue
            item.order_id = order_id
            cms_cmds[f"o{n}"] = portals.order_get(order_id)
            crm_cmds[f"l{n}"] = portals.deals_by_order(order_id)
        self._apply_reads(items, cms_cmds, crm_cmds)

    def _apply_reads(
        self, items: list[Item], cms_cmds: dict[str, portals.Command], crm_cmds: dict[str, portals.Command]
    ) -> None:
        cms = self._batch(self.cms, cms_cmds, lambda n: items[n])
        crm = self._batch(self.crm, crm_cmds, lambda n: items[n])
        for n, item in enumerate(items):
            if item.error:
                continue
            for key, source, handler in (
                (f"o{n}", cms, self._got_order),
                (f"d{n}", crm, self._got_deal),
                (f"l{n}", crm, self._got_candidates),
            ):
                if key in source.errors:
                    error = source.errors[key]
                    if isinstance(error, NotFoundError) and key[0] == "o":
                        item.order_missing = True
                    elif isinstance(error, NotFoundError) and key[0] == "d":
                        item.deal_missing = True
                    else:
                        self._item_error(item, error)
                elif key in source.results:
                    handler(item, source.results[key])

    def _got_order(self, item: Item, result: Any) -> None:
        item.order = portals.order_from_rest(result)

    def _got_deal(self, item: Item, result: Any) -> None:
        item.deal = portals.deal_from_rest(result)

    def _got_candidates(self, item: Item, result: Any) -> None:
        rows = result if isinstance(result, list) else []
        candidates = [portals.deal_from_rest(r) for r in rows]
        resolution = link_resolve(order_id=item.order_id, candidates=candidates)
        if resolution.outcome == "unlinked":
            item.outcome = Outcome.UNLINKED
            item.message = f"no deal has order {item.order_id} in {portals.deal_order_field()}"
        elif resolution.outcome == "ambiguous":
            item.outcome = Outcome.AMBIGUOUS
            item.message = (
                f"deals {', '.join(resolution.candidates)} all name order {item.order_id}; nothing written"
            )
        else:
            deal = resolution.deal
            assert deal is not None
            if (
                Link.objects.filter(state=LinkState.ACTIVE, deal_id=deal.deal_id)
                .exclude(order_id=item.order_id)
                .exists()
            ):
                item.outcome = Outcome.AMBIGUOUS
                item.message = f"deal {deal.deal_id} is already linked to another order"
                return
            if item.deal is None or item.deal.deal_id == deal.deal_id:
                item.deal_id = deal.deal_id
                item.deal = item.deal or deal

    def _decide(self) -> None:
        items = self._live()
        if not items:
            return
        mapping = mapping_load()
        pipelines = sorted({i.deal.pipeline for i in items if i.deal} & set(mapping.pipelines))
        try:
            stages = portals.pipeline_stages(crm=self.crm, pipelines=pipelines) if pipelines else {}
            self._contact(Side.CRM)
        except BitrixError as exc:
            self._contact(Side.CRM, exc)
            for item in items:
                self._item_error(item, exc)
            return
        mapping = replace(
            mapping,
            pipelines={
                pid: replace(
                    pm,
                    success_stages=stages.get(pid, portals.PipelineStages()).success,
                    stage_order=stages.get(pid, portals.PipelineStages()).order,
                )
                for pid, pm in mapping.pipelines.items()
            },
        )
        for item in items:
            if item.order is None and not item.order_missing and item.link is None:
                item.outcome, item.message = Outcome.IGNORED, "nothing to sync"
                continue
            if item.link is None and (item.order_missing or item.deal_missing):
                item.outcome = Outcome.IGNORED
                item.message = "the order or deal no longer exists and was never linked"
                continue
            base = _base_of(item.link)
            item.decision = decide(
                base=base,
                order=None if item.order_missing else item.order,
                deal=None if item.deal_missing else item.deal,
                mapping=mapping,
                origin=_echo_origin(item, base),
                tolerance_seconds=settings.BXSYNC_CONFLICT_TOLERANCE_SECONDS,
            )

    def _write(self) -> None:
        items = [i for i in self._live() if i.decision and i.decision.write]
        cms_cmds: dict[str, portals.Command] = {}
        crm_cmds: dict[str, portals.Command] = {}
        for n, item in enumerate(items):
            write = item.decision.write  # type: ignore[union-attr]
            assert write is not None
            if write.side == "crm":
                crm_cmds[f"w{n}"] = portals.deal_stage_update(item.deal_id, write.value)
            else:
                cms_cmds[f"w{n}"] = portals.order_status_update(item.order_id, write.value)
        # Payments first: the CRM write round goes before the shop's.
        crm = self._batch(self.crm, crm_cmds, lambda n: items[n])
        cms = self._batch(self.cms, cms_cmds, lambda n: items[n])
        for n, item in enumerate(items):
            error = crm.errors.get(f"w{n}") or cms.errors.get(f"w{n}")
            if error is not None and not item.error:
                self._item_error(item, error)

    # --- recording -----------------------------------------------------------------------------------------
    def _record(self, item: Item) -> ItemResult:
        if item.busy:
            if self.dry_run:
                return ItemResult(item, "busy", "link busy in another worker")
            for job in item.jobs or self._jobs_for_later(item):
                job_release(job=job)
            return ItemResult(item, "busy", "link busy in another worker; retried shortly")
        if item.error is not None:
            return self._record_error(item)
        if item.decision is not None:
            outcome, message = item.decision.outcome, item.decision.reason
        else:
            outcome, message = item.outcome or Outcome.IGNORED, item.message
        if self.dry_run:
            return ItemResult(item, outcome, message)
        try:
            with transaction.atomic():
                link = self._save_link(item)
                _audit(item, outcome=outcome, message=message, link=link, after=_after_dict(item))
                if item.decision and item.decision.unmapped:
                    _unmapped_seen(*item.decision.unmapped)
        except IntegrityError as exc:
            # Another worker linked the same order or deal a moment ago; the retry will find its link.
            item.error = TransientError(portal="db", method="link", code="race", description=str(exc)[:200])
            return self._record_error(item)
        jobs_finish(jobs=item.jobs)
        return ItemResult(item, outcome, message)

    def _save_link(self, item: Item) -> Link | None:
        decision = item.decision
        link = item.link
        if decision is None:
            return link
        now = timezone.now()
        if decision.close:
            if link is not None:
                Link.objects.filter(id=link.id).update(
                    state=LinkState.CLOSED, closed_at=now, close_reason=decision.reason[:200]
                )
            return link
        if link is None:
            link = Link.objects.create(
                order_id=item.order_id,
                deal_id=item.deal_id,
                pipeline_id=item.deal.pipeline if item.deal else None,
            )
        updates: dict[str, Any] = {}
        if decision.new_base is not None:
            base = decision.new_base
            updates.update(
                base_order_status=base.order_status,
                base_deal_stage=base.deal_stage,
                base_paid=base.paid,
                pipeline_id=base.pipeline,
                base_at=now,
            )
            if decision.write is not None:
                updates.update(
                    last_write_side=decision.write.side,
                    last_write_value=decision.write.value,
                    last_write_at=now,
                )
        if decision.flag:
            updates.update(needs_attention=True, attention_reason=decision.flag[:300])
        elif decision.write is not None or (
            decision.outcome == Outcome.NO_CHANGE and decision.new_base is not None
        ):
            # A later agreement settles an earlier conflict or regression.
            updates.update(needs_attention=False, attention_reason="")
        if updates:
            Link.objects.filter(id=link.id).update(**updates, updated_at=now)
        return link

    def _record_error(self, item: Item) -> ItemResult:
        error = item.error
        assert error is not None
        message = str(error)
        if self.dry_run:
            return ItemResult(item, Outcome.FAILED, message)
        states = []
        for job in item.jobs or self._jobs_for_later(item):
            if isinstance(error, AuthError):
                # No storm against a portal that refuses our credentials: wait the longest backoff.
                states.append(job_retry(job=job, error=message, delay=settings.BXSYNC_RETRY_MAX_SECONDS))
            elif isinstance(error, TransientError):
                states.append(job_retry(job=job, error=message))
            else:
                # A permanent error will not go away by retrying: straight to the dead-letter list.
                states.append(job_retry(job=job, error=message, final=True))
        outcome = Outcome.FAILED if JobState.DEAD in states else Outcome.RETRIED
        _audit(item, outcome=outcome, message=message[:2000], link=item.link, after={})
        return ItemResult(item, outcome, message)

    # --- helpers -------------------------------------------------------------------------------------------
    def _jobs_for_later(self, item: Item) -> list[Job]:
        """An on-demand item (reconciliation) that could not finish becomes a job, so it is not lost."""
        kind, entity = (JobKind.ORDER, item.order_id) if item.order_id else (JobKind.DEAL, item.deal_id)
        job_request(kind=kind, entity_id=entity, origin="reconcile", event="reconcile")
        return []  # the new pending job is the retry; there is no claimed job to give back

    def _batch(
        self, client: BitrixClient, commands: dict[str, portals.Command], item_of: Callable[[int], Item]
    ) -> BatchResult:
        """Run `commands` as batch calls; a failure of the whole call fails every item that had a command."""
        if not commands:
            return BatchResult()  # and no contact with the portal to report
        for key in commands:
            item_of(int(key[1:])).calls += 1
        try:
            result = client.batch(commands)
        except BitrixError as exc:
            self._contact(client.portal, exc)
            for key in commands:
                self._item_error(item_of(int(key[1:])), exc)
            return BatchResult()
        self._contact(client.portal)
        return result

    def _item_error(self, item: Item, error: BitrixError, missing_outcome: str = "") -> None:
        if missing_outcome and isinstance(error, NotFoundError):
            item.outcome, item.message = Outcome.IGNORED, missing_outcome
            return
        if item.error is None:
            item.error = error

    def _contact(self, portal: str, error: BitrixError | None = None) -> None:
        if error is None:
            self.portal_errors.setdefault(portal, None)
        else:
            self.portal_errors[portal] = error

    def _note_portal_health(self) -> None:
        now = timezone.now()
        for portal, error in self.portal_errors.items():
            if error is None:
                PortalHealth.objects.update_or_create(
                    portal=portal, defaults={"last_contact_at": now, "auth_failed": False}
                )
            else:
                PortalHealth.objects.update_or_create(
                    portal=portal,
                    defaults={
                        "last_error": str(error)[:500],
                        "last_error_at": now,
                        "auth_failed": isinstance(error, AuthError),
                    },
                )


def _base_of(link: Link | None) -> Base | None:
    if link is None or link.base_at is None:
        return None
    return Base(
        order_status=link.base_order_status,
        deal_stage=link.base_deal_stage,
        paid=link.base_paid,
        pipeline=link.pipeline_id,
        last_write_side=link.last_write_side,  # type: ignore[arg-type]
        last_write_value=link.last_write_value,
    )


def _echo_origin(item: Item, base: Base | None) -> Origin:
    """Events from both sides of a link in one run leave no single origin. With a base, the engine uses the
    origin only to name an echo, so name the side bxsync last wrote to if one of the events came from it."""
    if item.origin is not None or base is None or not base.last_write_side:
        return item.origin
    job_sides = {
        Side.CRM if job.kind == JobKind.DEAL else Side.CMS for job in item.jobs if job.origin == "event"
    }
    return base.last_write_side if base.last_write_side in job_sides else None


def _audit(item: Item, *, outcome: str, message: str, link: Link | None, after: dict[str, Any]) -> None:
    """The audit entry of one item: what asked, what was seen, what was decided or went wrong."""
    AuditEntry.objects.create(
        side=_side_of(item.origin),
        event=", ".join(sorted(set(item.events)))[:64],
        order_id=item.order_id,
        deal_id=item.deal_id,
        link=link,
        outcome=outcome,
        before=_state_dict(item),
        after=after,
        message=message,
        rest_calls=item.calls,
        latency_ms=_latency_ms(item),
        origin=item.source,
    )


def _side_of(origin: Origin) -> str:
    return {"cms": Side.CMS, "payment": Side.CMS, "crm": Side.CRM}.get(origin or "", "")


def _state_dict(item: Item) -> dict[str, Any]:
    state: dict[str, Any] = {}
    if item.order is not None:
        state["order_status"] = item.order.status
        state["order_paid"] = item.order.paid
    elif item.order_missing:
        state["order"] = "deleted"
    if item.deal is not None:
        state["deal_stage"] = item.deal.stage
        state["pipeline"] = item.deal.pipeline
    elif item.deal_missing:
        state["deal"] = "deleted"
    base = _base_of(item.link)
    if base is not None:
        state["base"] = {"order_status": base.order_status, "deal_stage": base.deal_stage, "paid": base.paid}
    return state


def _after_dict(item: Item) -> dict[str, Any]:
    decision = item.decision
    if decision is None:
        return {}
    after: dict[str, Any] = {}
    if decision.write is not None:
        key = "deal_stage" if decision.write.side == "crm" else "order_status"
        after[key] = decision.write.value
    if decision.new_base is not None:
        after["base"] = {
            "order_status": decision.new_base.order_status,
            "deal_stage": decision.new_base.deal_stage,
            "paid": decision.new_base.paid,
        }
    if decision.close:
        after["link"] = "closed"
    if decision.flag:
        after["needs_attention"] = decision.flag
    return after


def _latency_ms(item: Item) -> int | None:
    if item.started is None:
        return None
    return max(int((timezone.now() - item.started).total_seconds() * 1000), 0)


def _unmapped_seen(side: str, pipeline: int, value: str) -> None:
    updated = UnmappedValue.objects.filter(side=side, pipeline_id=pipeline, value=value).update(
        times_seen=F("times_seen") + 1, last_seen=timezone.now()
    )
    if not updated:
        try:
            with transaction.atomic():
                UnmappedValue.objects.create(side=side, pipeline_id=pipeline, value=value)
        except IntegrityError:
            pass


def items_for(
    *, order_ids: Iterable[str] = (), deal_ids: Iterable[str] = (), source: str = "reconcile"
) -> list[Item]:
    """Items for an on-demand sync (reconciliation, admin resync), without jobs. No side asked for them, so
    a difference on both sides is settled by the conflict policy."""
    now = timezone.now()
    items = [Item(origin=None, order_id=str(o), started=now, source=source) for o in order_ids]
    items += [Item(origin=None, deal_id=str(d), started=now, source=source) for d in deal_ids]
    return items

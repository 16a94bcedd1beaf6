"""Writing: record each write's intent on its link, then one `batch` per portal — the CRM's first, so payments
land first — with a read-back of what was written in the same call."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from statussync import leases, portals
from statussync.bitrix import TransientError
from statussync.models import Link

from . import comments
from .items import Item
from .locks import lock_held, locks_renew
from .plan import BatchPlan

if TYPE_CHECKING:
    from .run import SyncRun


def writes_send(run: SyncRun) -> None:
    """Send every live item's write; a refused write fails its item (retried or dead-lettered)."""
    if not any(i.decision and i.decision.write for i in run.live()):
        return
    renewed_at = time.monotonic()
    locks_renew(run)  # a run that outlived its lease sends nothing
    items = [i for i in run.live() if i.decision and i.decision.write]
    for item in items:
        intent_record(run, item)
    crm, cms = BatchPlan(run.crm), BatchPlan(run.cms)
    written_deals: list[Item] = []
    for item in items:
        write = item.decision.write if item.live and item.decision else None
        if write is None:
            continue
        item.write_sent = True
        if write.side == "crm":
            crm.add(
                portals.deal_stage_update(item.deal_id, write.value),
                items=[item],
                on_result=_ignore,
                guarded=True,
            )
            written_deals.append(item)
        else:
            cms.add(
                portals.order_status_update(item.order_id, write.value),
                items=[item],
                # sale.order.update answers with the saved order: the read-back comes free.
                on_result=partial(_got_written_order, item),
                guarded=True,
            )
    if written_deals:
        # crm.deal.update answers `true` even when it changed nothing (a stage of another pipeline, or the
        # deal moved to another pipeline since we read it) [docs/bitrix.md "Deals"]; the batch runs
        # its commands in order, so a list after the updates reads what they did, in the same HTTP request.
        by_id = {item.deal_id: item for item in written_deals}
        ids = list(by_id)
        for start in range(0, len(ids), portals.LIST_PAGE):
            chunk = ids[start : start + portals.LIST_PAGE]
            crm.add(
                portals.deals_by_ids(chunk),
                items=[by_id[deal_id] for deal_id in chunk],
                on_result=lambda rows: _got_written_deals(by_id, rows),
            )
        comments.comments_plan(run, crm)  # explanations ride in the CRM's write batch
    renew = _renewal(run, renewed_at=renewed_at)
    crm.run(contact=run.contact, before_send=renew)
    cms.run(contact=run.contact, before_send=renew)


def _renewal(run: SyncRun, *, renewed_at: float) -> Callable[[], None]:
    """Before each call of the write round (a run of hundreds of items writes in several calls of 50): check
    the locks again, and drop the writes of orders the run no longer holds. A payment's run may take an
    order from a run of the default queue at any moment, so that run checks before every call. A payment's
    own run is taken over only once its lease runs out, and within a heartbeat of a check its locks have two
    beats or more left (statussync/checks.py): its short round adds no database write to the one check
    before its intents."""
    renewed = renewed_at  # before the intents were recorded: they take a while for hundreds of items

    def before_send() -> None:
        nonlocal renewed
        if not run.priority or time.monotonic() - renewed >= leases.HEARTBEAT_SECONDS:
            locks_renew(run)
            renewed = time.monotonic()

    return before_send


def intent_record(run: SyncRun, item: Item) -> None:
    """Before the write leaves: the link (made now for a pair seen for the first time) records the write and
    the base it leads to, under the run's lock. No lock, no write."""
    decision = item.decision
    assert decision is not None
    assert decision.write is not None
    assert decision.new_base is not None
    base = decision.new_base
    try:
        with transaction.atomic():
            if not lock_held(run, item.order_id):
                item.busy = True
                return
            link = item.link or Link.objects.create(
                order_id=item.order_id,
                deal_id=item.deal_id,
                pipeline_id=item.deal.pipeline if item.deal else None,
            )
            Link.objects.filter(id=link.id).update(
                intent_side=decision.write.side,
                intent_value=decision.write.value,
                intent_base={
                    "order_status": base.order_status,
                    "deal_stage": base.deal_stage,
                    "paid": base.paid,
                    "pipeline": base.pipeline,
                    # What the write was, so the run that finds it landed can say so in the audit.
                    "outcome": decision.outcome,
                    "reason": decision.reason.as_json(),
                },
                intent_at=timezone.now(),
            )
            item.link = link
    except IntegrityError as exc:
        # Another worker linked this order or deal a moment ago; the retry will find its link.
        item.fail(TransientError(portal="db", method="link", code="race", description=str(exc)[:200]))


def _got_written_order(item: Item, result: Any) -> None:
    item.written = portals.order_from_rest(result)


def _got_written_deals(by_id: dict[str, Item], rows: Any) -> None:
    for row in rows if isinstance(rows, list) else []:
        item = by_id.get(str(row.get("ID")))
        if item is not None:
            item.written = portals.deal_from_rest(row)


def _ignore(result: object) -> None:
    return None

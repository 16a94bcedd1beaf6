"""A payment's deal read and write in one CRM call: a compare-and-set on the link's base.

A payment's run knows where its deal stood when both sides last agreed (the link's base: stage, pipeline,
order field). While the deal still stands there, the engine's decision does not depend on reading it, so the
write can go in the same `batch` as the read: `crm.deal.list` filtered by the deal's id and that base, then
`crm.deal.update` whose id is `$result[list][0][ID]`, then the read-back. A deal that moved on since matches
no row, so the update's id names nothing: the server leaves an unresolved reference as its text (b24restdocs
sdk/b24gosdk/index.md "Batch Requests"), which is no positive integer, and crm.deal.update refuses it ("ID is
not defined or invalid", api-reference/crm/deals/crm-deal-update.md); with halt 0 the read-back runs anyway
(settings/how-to-call-rest-api/batch.md "Error Handling"). Whatever the server put there, an empty answer
holds no deal's id, so no deal moves. That read-back is then the run's read of the deal, and the item is
decided as usual, a write still due going in the run's write round: as many requests as before.

So a payment costs two requests, the shop's and this one, where reading the deal and writing it were three
[docs/benchmarks.md "A payment checked and written in one call"].
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from statussync import portals
from statussync.bitrix import BitrixError
from statussync.bitrix.client import BATCH_LIMIT
from statussync.engine import DealState, Decision
from statussync.models import Link, Outcome

from .decide import decision_for
from .items import Item
from .locks import locks_renew
from .plan import BatchPlan
from .stages import mapping_with_stages
from .write import intent_record

if TYPE_CHECKING:
    from .run import SyncRun

logger = logging.getLogger(__name__)

# An item's three commands must share one call (a reference names an answer of its own call only).
_COMMANDS = 3
_MOST_ITEMS = BATCH_LIMIT // _COMMANDS


def payments_write_at_base(run: SyncRun) -> None:
    """For a payment's run: each item whose decision, with its deal where the base left it, is to move the
    deal to the paid stage gets that write in one call with the check that the deal is still there. The
    items written so are done (`Item.at_base`); the others go on to the usual read, decision and write."""
    items = [i for i in run.live() if _at_base_known(i)][:_MOST_ITEMS]
    if not items:
        return
    stages_seen: dict[int, set[str]] = {}
    for item in items:
        link = _link(item)
        stages_seen.setdefault(link.pipeline_id or 0, set()).add(link.base_deal_stage)
    try:
        mapping, unreadable = mapping_with_stages(run, pipelines=set(stages_seen), stages_seen=stages_seen)
    except BitrixError:
        return  # the usual path reads the stages again and reports the portal's trouble
    planned: list[tuple[Item, DealState, str]] = []
    for item in items:
        deal = _deal_at_base(_link(item))
        pm = mapping.pipelines.get(deal.pipeline)
        if pm is None or deal.pipeline in unreadable:
            continue
        decision = _decision_at_base(item, deal, mapping)
        if decision is not None:
            item.decision = decision
            semantics = portals.stage_semantics_in(
                deal.stage, success=pm.success_stages, failure=pm.failure_stages
            )
            planned.append((item, deal, semantics))
    if not planned:
        return
    locks_renew(run)  # a run that outlived its lease sends nothing
    plan = BatchPlan(run.crm)
    for item, deal, semantics in planned:
        if item.live:
            intent_record(run, item)  # before the write leaves, as every write's
        if item.live:
            _plan(plan, item, deal=deal, semantics=semantics)
        else:
            item.decision = None
    plan.run(contact=run.contact)


def _at_base_known(item: Item) -> bool:
    """A linked pair with an agreed base, no write of bxsync's unconfirmed, and its order read."""
    link = item.link
    return (
        link is not None
        and link.base_at is not None
        and link.pipeline_id is not None
        and bool(link.base_deal_stage)
        and not link.intent_side
        and item.order is not None
        and item.deal is None
    )


def _link(item: Item) -> Link:
    assert item.link is not None
    return item.link


def _deal_at_base(link: Link) -> DealState:
    """The deal as it stood when both sides last agreed."""
    stage, pipeline = link.base_deal_stage, link.pipeline_id or 0
    return DealState(deal_id=link.deal_id, stage=stage, pipeline=pipeline, order_id=link.order_id)


def _decision_at_base(item: Item, deal: DealState, mapping: Any) -> Decision | None:
    """The engine's decision with the deal where the base left it, if that is a payment's move to the CRM."""
    item.deal = deal
    try:
        decision = decision_for(item, mapping)
    finally:
        item.deal = None
    write = decision.write
    if decision.outcome != Outcome.PAYMENT_APPLIED or write is None or write.side != "crm":
        return None
    return decision


def _plan(plan: BatchPlan, item: Item, *, deal: DealState, semantics: str) -> None:
    """The check, the write that names the deal only through the check's answer, and the read-back."""
    assert item.decision is not None
    assert item.decision.write is not None
    wanted = (deal.deal_id, deal.stage, deal.pipeline, deal.order_id)
    seen: list[DealState] = []  # the deal as the check found it, before the write
    check = portals.deal_at(
        deal_id=deal.deal_id,
        stage=deal.stage,
        pipeline=deal.pipeline,
        semantics=semantics,
        order_id=deal.order_id,
    )
    read = portals.deals_read([deal.deal_id])

    def listed(rows: Any) -> None:
        row = check.first(rows)
        if row is not None:
            seen.append(portals.deal_from_rest(row))

    def at_base() -> bool:
        if not seen:
            return False
        found = seen[0]
        if (found.deal_id, found.stage, found.pipeline, found.order_id) == wanted:
            return True
        # A portal that left out part of the filter: the write went by a deal that is not where we asked.
        # Decide again from the read-back, which is the truth now, and say so in the log.
        logger.error("crm.deal.list answered %s for the filter %s: a filter field ignored", found, wanted)
        return False

    def not_written(error: BitrixError) -> None:
        if at_base():
            item.fail(error)  # the deal stood at its base and the write itself failed

    def read_back(rows: Any) -> None:
        after = read.first(rows)
        now = portals.deal_from_rest(after) if after is not None else None
        # The check and the read-back left in one call: the one the item keeps is the run's read of the deal.
        if at_base():
            if item.live:
                item.deal, item.written, item.write_sent, item.at_base = seen[0], now, True, True
                item.deal_read_at = plan.sent_at
            return
        # The deal moved on: nothing was written, and the read-back is the run's read of the deal (none: the
        # usual read asks for it again, and tells a deleted deal from a hidden one).
        item.decision, item.deal = None, now
        item.deal_read_at = plan.sent_at if now is not None else None

    def read_back_failed(error: BitrixError) -> None:
        if at_base():
            item.fail(error)  # written, but what it did is unknown: the retry settles the intent
        else:
            item.decision = None  # the usual read tries again

    key = plan.add(
        check.command(),
        items=[item],
        on_result=listed,
        on_error=lambda error: None,  # then the update's reference names nothing either
    )
    plan.add(
        portals.deal_stage_update(portals.first_row_id(key), item.decision.write.value),
        items=[item],
        on_result=lambda result: None,
        on_error=not_written,
        guarded=True,
    )
    plan.add(read.command(), items=[item], on_result=read_back, on_error=read_back_failed)

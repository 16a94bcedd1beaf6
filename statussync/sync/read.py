"""Reading both sides: which order a payment belongs to, which link an item has, the order and the deal as
they are now, and — for pairs never linked — the deal that names the order (or the order a deal names)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import Q

from statussync import portals
from statussync.bitrix import NotFoundError
from statussync.engine import link_resolve
from statussync.models import Link, LinkState, Outcome
from statussync.reasons import why

from . import locks
from .items import Item, items_merge
from .plan import BatchPlan

if TYPE_CHECKING:
    from .run import SyncRun


def payments_resolve(run: SyncRun) -> None:
    """A payment event carries the payment's id: read each payment for its order."""
    plan = BatchPlan(run.cms)
    for item in run.items:
        if item.payment_id:
            plan.add(
                portals.payment_get(item.payment_id),
                items=[item],
                on_result=lambda result, item=item: _got_payment(item, result),
                on_error=lambda error, item=item: item.fail(
                    error, if_missing=why("payment_not_found", payment=item.payment_id)
                ),
            )
    plan.run(contact=run.contact)
    # A payment and an order event for the same order in one batch: one item, and the payment counts.
    run.items = items_merge(
        run.items, lambda i: i.order_id if i.order_id and not i.deal_id and i.live else None
    )


def _got_payment(item: Item, result: Any) -> None:
    order_id = portals.payment_order_id(result or {})
    if order_id:
        item.order_id = order_id
    else:
        item.settle(Outcome.IGNORED, why("payment_no_order", payment=item.payment_id))


def links_attach(run: SyncRun) -> None:
    """Attach each item's active link (one query for the run); both sides of one link become one item."""
    order_ids = {i.order_id for i in run.items if i.order_id}
    deal_ids = {i.deal_id for i in run.items if i.deal_id}
    links = Link.objects.filter(state=LinkState.ACTIVE).filter(
        Q(order_id__in=order_ids) | Q(deal_id__in=deal_ids)
    )
    by_order = {link.order_id: link for link in links}
    by_deal = {link.deal_id: link for link in links}
    for item in run.items:
        link = by_order.get(item.order_id) if item.order_id else by_deal.get(item.deal_id)
        if link is not None:
            item.link = link
            item.order_id, item.deal_id = link.order_id, link.deal_id
    run.items = items_merge(run.items, lambda i: i.link.id if i.link else None)


def sides_read(run: SyncRun) -> None:
    """Round one: every known order and deal, and the deals naming each order that has no link yet."""
    items = run.live()
    cms, crm = BatchPlan(run.cms), BatchPlan(run.crm)
    for item in items:
        if item.order_id:
            _plan_order(cms, item)
        if item.deal_id:
            _plan_deal(crm, item)
        if item.link is None and item.order_id:
            _plan_candidates(crm, item)
    cms.run(contact=run.contact)
    crm.run(contact=run.contact)
    _candidates_resolve(items)


def unlinked_deals_read(run: SyncRun) -> None:
    """Round two: a deal seen without a link names its order in the deal order field; read that order and the
    deals naming it (another deal may name the same order)."""
    items = [i for i in run.live() if i.link is None and not i.order_id and i.deal is not None]
    if not items:
        return
    named = {i.deal.order_id for i in items if i.deal and i.deal.order_id}
    linked = dict(
        Link.objects.filter(state=LinkState.ACTIVE, order_id__in=named).values_list("order_id", "deal_id")
    )
    cms, crm = BatchPlan(run.cms), BatchPlan(run.crm)
    for item in items:
        order_id = item.deal.order_id if item.deal else ""
        if not order_id:
            field = portals.deal_order_field()
            item.settle(Outcome.UNLINKED, why("deal_no_order_field", deal=item.deal_id, field=field))
        elif order_id in linked:
            reason = why("order_linked_elsewhere", deal=item.deal_id, order=order_id, other=linked[order_id])
            item.settle(Outcome.AMBIGUOUS, reason)
        else:
            item.order_id = order_id
    if not run.dry_run:
        locks.orders_lock(run, items)  # before reading the order: another run may be deciding this pair
    for item in items:
        if item.live and item.order_id:
            _plan_order(cms, item)
            _plan_candidates(crm, item)
    cms.run(contact=run.contact)
    crm.run(contact=run.contact)
    _candidates_resolve(items)
    # An order and a deal never linked before, both in this batch: found twice, decided once.
    run.items = items_merge(
        run.items, lambda i: (i.order_id, i.deal_id) if i.live and i.link is None and i.deal else None
    )


def _plan_order(plan: BatchPlan, item: Item) -> None:
    def missing(error: Any) -> None:
        if isinstance(error, NotFoundError):
            item.order_missing = True
        else:
            item.fail(error)

    plan.add(
        portals.order_get(item.order_id),
        items=[item],
        on_result=lambda result: setattr(item, "order", portals.order_from_rest(result)),
        on_error=missing,
    )


def _plan_deal(plan: BatchPlan, item: Item) -> None:
    def missing(error: Any) -> None:
        if isinstance(error, NotFoundError):
            item.deal_missing = True
        else:
            item.fail(error)

    plan.add(
        portals.deal_get(item.deal_id),
        items=[item],
        on_result=lambda result: setattr(item, "deal", portals.deal_from_rest(result)),
        on_error=missing,
    )


def _plan_candidates(plan: BatchPlan, item: Item) -> None:
    def got(result: Any) -> None:
        rows = result if isinstance(result, list) else []
        item.candidates = [portals.deal_from_rest(r) for r in rows]

    plan.add(portals.deals_by_order(item.order_id), items=[item], on_result=got)


def _candidates_resolve(items: list[Item]) -> None:
    """Link discovery: no deal names the order (unlinked), several do (ambiguous), or one does — unless that
    deal is linked to another order already (one query for the whole round)."""
    resolutions = {}
    for item in items:
        if item.candidates is not None and item.live:
            resolutions[item] = link_resolve(order_id=item.order_id, candidates=item.candidates)
    found = [r.deal.deal_id for r in resolutions.values() if r.deal is not None]
    linked = dict(
        Link.objects.filter(state=LinkState.ACTIVE, deal_id__in=found).values_list("deal_id", "order_id")
    )
    for item, resolution in resolutions.items():
        deal = resolution.deal
        if resolution.outcome == "unlinked":
            field = portals.deal_order_field()
            item.settle(Outcome.UNLINKED, why("no_deal_for_order", order=item.order_id, field=field))
        elif resolution.outcome == "ambiguous":
            deals = ", ".join(resolution.candidates)
            item.settle(Outcome.AMBIGUOUS, why("several_deals", deals=deals, order=item.order_id))
        elif deal is not None and linked.get(deal.deal_id, item.order_id) != item.order_id:
            item.settle(Outcome.AMBIGUOUS, why("deal_linked_elsewhere", deal=deal.deal_id))
        elif deal is not None and (item.deal is None or item.deal.deal_id == deal.deal_id):
            item.deal_id = deal.deal_id
            item.deal = item.deal or deal

"""Reading both sides: which order a payment belongs to, which link an item has, the order and the deal as
they are now, and — for pairs never linked — the deal that names the order (or the order a deal names)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from django.db.models import Q
from django.utils import timezone

from statussync import portals
from statussync.bitrix import AuthError, BitrixError, NotFoundError
from statussync.bitrix.client import BATCH_LIMIT
from statussync.engine import DealState, link_resolve
from statussync.models import Link, LinkState, Outcome
from statussync.reasons import why

from . import locks
from .items import Item, items_merge
from .plan import BatchPlan

if TYPE_CHECKING:
    from .run import SyncRun

logger = logging.getLogger(__name__)


def payments_resolve(run: SyncRun) -> None:
    """A payment event carries the payment's id: read the payments for their orders. A payment's run (a few
    payments) reads each payment and its order in one request; many payments are read 50 to a command."""
    wanted = _by_id(run.items, lambda item: item.payment_id)
    plan = BatchPlan(run.cms)
    if wanted and len(wanted) <= BATCH_LIMIT // 2:
        _plan_payments_with_orders(plan, wanted)
        plan.run(contact=run.contact)
        _payments_merge(run)
        return

    def found(payment_id: str, result: Any) -> None:
        for item in wanted[payment_id]:
            _got_payment(item, result)

    def missing(payment_id: str, error: BitrixError) -> None:
        for item in wanted[payment_id]:
            item.fail(error, if_missing=why("payment_not_found", payment=payment_id))

    # A portal doctor found refusing (or ignoring) an array in `=id` is asked one payment at a time: a
    # refused list would cost a failed command per 50 payments first
    # [docs/bitrix.md "Undocumented behaviours"].
    read = portals.payments_read if run.cms.behaviour.payment_array_filter else None
    _plan_by_id(plan, wanted, read=read, get=portals.payment_get, found=found, missing=missing)
    plan.run(contact=run.contact)
    _payments_merge(run)


def _payments_merge(run: SyncRun) -> None:
    # A payment and an order event for the same order in one batch: one item, and the payment counts.
    run.items = items_merge(
        run.items, lambda i: i.order_id if i.order_id and not i.deal_id and i.live else None
    )


def _plan_payments_with_orders(plan: BatchPlan, wanted: dict[str, list[Item]]) -> None:
    """Each payment (`sale.payment.get`) and, in the same call, its order (`sale.order.get` by the payment's
    `orderId`, a `$result` reference): one request where a list of payments and a list of their orders
    would be two, and a payment's run is a request shorter [docs/benchmarks.md "One portal, both roles"].

    The order is read before the run holds its lock (the order id is unknown until the payment is read), so
    it is kept only as `early_order`: `links_reread` drops it when another run may have written the order
    meanwhile, and `sides_read` then reads it again under the lock. An error of the order's command (a
    payment not found, a deleted order) is left to that read, which tells the cases apart."""
    read_at = timezone.now()
    for payment_id, items in wanted.items():
        key = plan.add(
            portals.payment_get(payment_id),
            items=items,
            on_result=partial(_got_payments, items),
            on_error=partial(_payment_missing, payment_id, items),
        )
        plan.add(
            portals.order_of_payment(key),
            items=items,
            on_result=partial(_got_early_order, items, read_at),
            on_error=lambda error: None,
        )


def _got_payments(items: list[Item], result: Any) -> None:
    for item in items:
        _got_payment(item, result)


def _payment_missing(payment_id: str, items: list[Item], error: BitrixError) -> None:
    for item in items:
        item.fail(error, if_missing=why("payment_not_found", payment=payment_id))


def _got_early_order(items: list[Item], read_at: datetime, result: Any) -> None:
    order = portals.order_from_rest(result)
    for item in items:
        if item.live and item.order_id == order.order_id:
            item.order, item.order_read_at = order, read_at


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


def links_reread(run: SyncRun) -> None:
    """Under the order locks: read the links attached before them again (one query). A run that finished
    between our first read and our lock may have moved a base; decided from the old one, a person's later
    change would look like a conflict, or be reverted under `cms_wins`/`crm_wins`. A link closed, or made for
    an order we took as unlinked, meanwhile gives the item back to be tried again."""
    held = [i for i in run.live() if i.order_id in run.locked]
    ids = {i.link.id for i in held if i.link}
    unlinked = {i.order_id for i in held if not i.link}
    if not held:
        return
    fresh = list(Link.objects.filter(Q(id__in=ids) | Q(order_id__in=unlinked, state=LinkState.ACTIVE)))
    by_id = {link.id: link for link in fresh}
    linked_since = {link.order_id for link in fresh if link.id not in ids}
    for item in held:
        link = by_id.get(item.link.id) if item.link else None
        if item.link and link is not None and link.state == LinkState.ACTIVE:
            item.link = link
        elif item.link or item.order_id in linked_since:
            item.busy = True
        early = item.order_read_at
        if early is not None and link is not None and _link_moved_since(link, early):
            item.order, item.order_read_at = None, None  # read before the lock: read again under it


# Other hosts stamp the link by their own clocks: a write recorded up to this long before our read (by our
# clock) may have landed after it.
_CLOCK_MARGIN = timedelta(seconds=5)


def _link_moved_since(link: Link, moment: datetime) -> bool:
    """Whether another run may have written the link's order since `moment`: a write still unconfirmed, or
    one confirmed since. Every write of bxsync's records its intent before it leaves and, once it landed, its
    confirmation (`last_write_at`, clearing the intent), both under the order's lock; a run that only read
    changed nothing on the portal, so its stamps do not count."""
    if link.intent_side:
        return True
    since = moment - _CLOCK_MARGIN
    stamps = (link.intent_at, link.last_write_at)
    return any(stamp is not None and stamp >= since for stamp in stamps)


def sides_read(run: SyncRun) -> None:
    """Round one: every known order and deal, and the deals naming each order that has no link yet."""
    items = run.live()
    cms, crm = BatchPlan(run.cms), BatchPlan(run.crm)
    _plan_orders(cms, [i for i in items if i.order is None])  # a payment's order may be read with it
    _plan_deals(crm, [i for i in items if i.deal is None])  # a payment's deal may be read with its check
    _plan_candidates(crm, [i for i in items if i.link is None])
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
    _plan_orders(cms, items)
    _plan_candidates(crm, items)
    cms.run(contact=run.contact)
    crm.run(contact=run.contact)
    _candidates_resolve(items)
    # An order and a deal never linked before, both in this batch: found twice, decided once.
    run.items = items_merge(
        run.items, lambda i: (i.order_id, i.deal_id) if i.live and i.link is None and i.deal else None
    )


def _by_id(items: list[Item], key: Callable[[Item], str]) -> dict[str, list[Item]]:
    """The live items by an id of theirs (two items may name one order: two deals naming it)."""
    wanted: dict[str, list[Item]] = {}
    for item in items:
        if item.live and key(item):
            wanted.setdefault(key(item), []).append(item)
    return wanted


def _plan_by_id(
    plan: BatchPlan,
    wanted: dict[str, list[Item]],
    *,
    read: Callable[[list[str]], portals.ListRead] | None,
    get: Callable[[str], portals.Command],
    found: Callable[[str, Any], None],
    missing: Callable[[str, BitrixError], None],
) -> None:
    """Read the entities `wanted` names with list commands of up to 50 ids [docs/bitrix.md "Lists"] (with no
    `read`, one at a time by `get`).

    An id a list leaves out is asked for by itself, in the plan's next round: a list leaves out what the
    webhook's user may not see as well as what was deleted, and only the single read tells them apart (an
    access error, or "not found"). A link is closed on "not found", so guessing would close links of deals
    that a change of rights hid. Deletions are rare, so this costs nothing in a bulk edit. A list command that
    fails is read the same way, one id at a time, rather than failing its items [docs/bitrix.md "Lists"]."""
    ids = list(wanted)

    def one_by_one(entity_ids: list[str]) -> None:
        for entity_id in entity_ids:
            plan.add(
                get(entity_id),
                items=wanted[entity_id],
                on_result=partial(found, entity_id),
                on_error=partial(missing, entity_id),
            )

    if read is None:  # no list to read them with on this portal
        one_by_one(ids)
        return
    for start in range(0, len(ids), portals.LIST_PAGE):
        chunk = ids[start : start + portals.LIST_PAGE]

        def got(rows: list[dict[str, Any]], chunk: list[str] = chunk) -> None:
            seen = set()
            for row in rows:
                entity_id = portals.row_id(row)
                if entity_id in chunk and entity_id not in seen:
                    seen.add(entity_id)
                    _each(wanted[entity_id], partial(found, entity_id, row))
            one_by_one([entity_id for entity_id in chunk if entity_id not in seen])

        def list_failed(error: BitrixError, chunk: list[str] = chunk) -> None:
            # The list refused (a filter form this portal does not take, its method held by the operating
            # limit...): the single gets, another method, still tell each entity's state, and a deleted one
            # still closes its link. A refused credential fails the gets too: no point sending them.
            if isinstance(error, AuthError):
                for entity_id in chunk:
                    for item in wanted[entity_id]:
                        item.fail(error)
                return
            logger.info("%s failed (%s); reading its %d ids one by one", error.method, error, len(chunk))
            one_by_one(chunk)

        plan.add_list(
            read(chunk),
            items=[i for entity_id in chunk for i in wanted[entity_id]],
            on_rows=got,
            on_error=list_failed,
        )


def _each(items: list[Item], handle: Callable[[], None]) -> None:
    """Handle one entity of a list's answer: a row we cannot handle (an unexpected shape, a bug) fails the
    items it serves, not the 49 others of its command."""
    try:
        handle()
    except Exception as exc:
        logger.exception("could not handle the answer for %s", ", ".join(i.describe() for i in items))
        for item in items:
            item.fail(exc)


def _plan_orders(plan: BatchPlan, items: list[Item]) -> None:
    wanted = _by_id(items, lambda item: item.order_id)

    def found(order_id: str, result: Any) -> None:
        order = portals.order_from_rest(result)
        for item in wanted[order_id]:
            item.order, item.order_read_at = order, plan.sent_at

    def missing(order_id: str, error: BitrixError) -> None:
        for item in wanted[order_id]:
            if isinstance(error, NotFoundError):
                item.order_missing, item.order_read_at = True, plan.sent_at
            else:
                item.fail(error)

    _plan_by_id(plan, wanted, read=portals.orders_read, get=portals.order_get, found=found, missing=missing)


def _plan_deals(plan: BatchPlan, items: list[Item]) -> None:
    wanted = _by_id(items, lambda item: item.deal_id)

    def found(deal_id: str, result: Any) -> None:
        deal = portals.deal_from_rest(result)
        for item in wanted[deal_id]:
            item.deal, item.deal_read_at = deal, plan.sent_at

    def missing(deal_id: str, error: BitrixError) -> None:
        for item in wanted[deal_id]:
            if isinstance(error, NotFoundError):
                item.deal_missing, item.deal_read_at = True, plan.sent_at
            else:
                item.fail(error)

    _plan_by_id(plan, wanted, read=portals.deals_read, get=portals.deal_get, found=found, missing=missing)


def _plan_candidates(plan: BatchPlan, items: list[Item]) -> None:
    """The deals naming each item's order, 50 orders to a command; every page of the answer is read, since
    several deals naming one order is exactly what link discovery must see (ambiguous)."""
    wanted = _by_id(items, lambda item: item.order_id)
    ids = list(wanted)
    for start in range(0, len(ids), portals.LIST_PAGE):
        chunk = ids[start : start + portals.LIST_PAGE]

        def got(rows: list[dict[str, Any]], chunk: list[str] = chunk) -> None:
            naming: dict[str, list[DealState]] = {order_id: [] for order_id in chunk}
            for row in rows:
                try:
                    deal = portals.deal_from_rest(row)
                except Exception as exc:
                    # A row we cannot read: every order of the command may miss a candidate, so none links.
                    logger.exception("could not read a deal naming one of the orders %s", chunk)
                    for order_id in chunk:
                        for item in wanted[order_id]:
                            item.fail(exc)
                    return
                if deal.order_id in naming:
                    naming[deal.order_id].append(deal)
                elif len(chunk) == 1:
                    naming[chunk[0]].append(deal)  # the portal says it names this order: it is a candidate
                else:
                    # The portal matched the field in a way we do not read it (case, inner spaces), and which
                    # of the orders it names is unknown: say so rather than drop it silently.
                    logger.warning("deal %s names order %r, asked for %s", deal.deal_id, deal.order_id, chunk)
            for order_id, deals in naming.items():
                for item in wanted[order_id]:
                    item.candidates = deals

        items_of_chunk = [i for order_id in chunk for i in wanted[order_id]]
        plan.add_list(portals.deals_naming_orders(chunk), items=items_of_chunk, on_rows=got)


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

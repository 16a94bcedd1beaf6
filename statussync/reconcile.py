"""Reconciliation: Bitrix never re-sends a lost event [R: api-reference/events/index.md], so a pass lists what
changed on both portals since a watermark (with overlap) and syncs it [bitrix-api.md §6, step 5]."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from statussync.bitrix import client_for
from statussync.jobs import job_request
from statussync.models import JobKind, Link, LinkState, Side, Watermark
from statussync.sync import ItemResult, items_for, items_sync

CHUNK = 50


@dataclass
class ReconcileReport:
    """What a reconciliation pass looked at and decided."""

    since: dict[str, datetime]
    orders: list[str] = field(default_factory=list)
    deals: list[str] = field(default_factory=list)
    results: list[ItemResult] = field(default_factory=list)
    queued: int = 0

    def counts(self) -> dict[str, int]:
        counts = Counter(r.outcome for r in self.results)
        return {"orders": len(self.orders), "deals": len(self.deals), "queued": self.queued, **counts}


def reconcile_run(
    *,
    dry_run: bool = False,
    process_inline: bool = True,
    progress: Callable[[str], None] | None = None,
) -> ReconcileReport:
    """List orders and deals changed since the watermarks and sync them.

    `process_inline` syncs here (the `reconcile` command); otherwise they are queued as jobs for the workers
    (the schedule). `dry_run` decides without writing to the portals or the database.
    """
    started = timezone.now()
    since = {side: _since(side) for side in (Side.CMS, Side.CRM)}
    report = ReconcileReport(since=since)
    say = progress or (lambda _msg: None)

    crm = client_for(Side.CRM)
    cms = client_for(Side.CMS)
    # `>DATE_MODIFY` / `>dateUpdate` filters: the reconciliation feeds of the contract (DESIGN.md).
    report.deals = [
        str(row["ID"])
        for row in crm.list_all(
            "crm.deal.list",
            {
                "filter": {">DATE_MODIFY": since[Side.CRM].isoformat()},
                "select": ["ID"],
                "order": {"ID": "ASC"},
            },
        )
    ]
    report.orders = [
        str(row["id"])
        for row in cms.list_all(
            "sale.order.list",
            {
                "filter": {">dateUpdate": since[Side.CMS].isoformat()},
                "select": ["id"],
                "order": {"id": "asc"},
            },
            items_key="orders",
        )
    ]
    say(f"changed since the watermarks: {len(report.orders)} order(s), {len(report.deals)} deal(s)")

    # A linked deal whose order is also in the list is covered by the order's item.
    linked_orders = dict(
        Link.objects.filter(state=LinkState.ACTIVE, deal_id__in=report.deals).values_list(
            "deal_id", "order_id"
        )
    )
    order_set = set(report.orders)
    deals = [d for d in report.deals if linked_orders.get(d) not in order_set]

    if process_inline or dry_run:
        items = items_for(order_ids=report.orders, deal_ids=deals)
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            report.results += items_sync(items=chunk, dry_run=dry_run)
            say(f"checked {min(start + CHUNK, len(items))}/{len(items)}")
    else:
        for order_id in report.orders:
            job_request(kind=JobKind.ORDER, entity_id=order_id, origin="reconcile", event="reconcile")
        for deal_id in deals:
            job_request(kind=JobKind.DEAL, entity_id=deal_id, origin="reconcile", event="reconcile")
        report.queued = len(report.orders) + len(deals)

    if not dry_run:
        for side in (Side.CMS, Side.CRM):
            Watermark.objects.update_or_create(portal=side, defaults={"value": started})
    return report


def _since(side: str) -> datetime:
    mark = Watermark.objects.filter(portal=side).values_list("value", flat=True).first()
    if mark is None:
        return timezone.now() - timedelta(days=settings.BXSYNC_RECONCILE_INITIAL_DAYS)
    # Overlap: clocks differ between us and the portal, and a change may commit after its DATE_MODIFY.
    return mark - timedelta(seconds=settings.BXSYNC_RECONCILE_OVERLAP_SECONDS)

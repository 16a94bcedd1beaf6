"""Reconciliation: Bitrix never re-sends a lost event [docs/bitrix.md "Events"], so a pass lists what changed
on both portals since a watermark (with overlap) and syncs it; `reconcile --all` compares every link.

Each portal's change feed is read a page (50 rows) at a time in id order — `start=-1` and a `>ID` filter, as
Bitrix recommends for big scans — and the watermark records after every page how far the pass got. A pass cut
short by the task timeout, an outage or a restart resumes there; the window never grows because a pass failed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from statussync import portals
from statussync.bitrix import BitrixClient, client_for
from statussync.bitrix.query import filter_datetime_after
from statussync.jobs import job_request
from statussync.models import JobKind, Link, LinkState, Side, Watermark
from statussync.sync import ItemResult, items_for, items_sync

CHUNK = 50
Progress = Callable[[str], None]


@dataclass
class ReconcileReport:
    """What a reconciliation pass looked at and decided."""

    since: dict[str, datetime]
    orders: list[str] = field(default_factory=list)
    deals: list[str] = field(default_factory=list)
    results: list[ItemResult] = field(default_factory=list)
    queued: int = 0
    complete: bool = True  # False: the pass stopped at its time limit and the next one resumes
    covered_orders: set[str] = field(default_factory=set)  # the orders of the deals taken so far

    def counts(self) -> dict[str, int]:
        """Orders and deals listed, jobs queued, and the outcomes of what was synced here."""
        counts = Counter(r.outcome for r in self.results)
        return {"orders": len(self.orders), "deals": len(self.deals), "queued": self.queued, **counts}


@dataclass(frozen=True)
class _Feed:
    """One portal's change feed: the list method, its change-time and id fields, and the job kind."""

    side: str
    method: str
    changed_field: str
    id_field: str
    order: dict[str, str]
    items_key: str | None
    kind: str


# `>DATE_MODIFY` / `>dateUpdate`: the reconciliation feeds of the contract [docs/bitrix.md "Reconciliation"].
_FEEDS = (
    _Feed(Side.CMS, "sale.order.list", "dateUpdate", "id", {"id": "asc"}, "orders", JobKind.ORDER),
    _Feed(Side.CRM, "crm.deal.list", "DATE_MODIFY", "ID", {"ID": "ASC"}, None, JobKind.DEAL),
)


def reconcile_run(
    *,
    dry_run: bool = False,
    process_inline: bool = True,
    progress: Progress | None = None,
    max_seconds: float | None = None,
) -> ReconcileReport:
    """Read each portal's changes since its watermark and sync them.

    `process_inline` syncs here (the `reconcile` command); otherwise each page is queued as jobs for the
    workers (the schedule). `dry_run` decides without writing to the portals or the database, and moves no
    watermark. With `max_seconds` the pass stops after the page it is on and the next pass resumes there.
    """
    say = progress or (lambda _msg: None)
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    report = ReconcileReport(since={})
    feeds: list[tuple[_Feed, Watermark, Iterator[list[dict]]]] = []
    for feed in _FEEDS:
        mark = _window_open(feed.side, dry_run=dry_run)
        report.since[feed.side] = mark.window_since  # type: ignore[assignment]
        feeds.append((feed, mark, _pages(client_for(feed.side), feed, mark)))
    # A page of each feed in turn: a long backlog on one portal must not starve the other's changes until
    # the pass runs out of time (a pass cut short resumes both where they stopped).
    while feeds:
        for entry in list(feeds):
            feed, mark, pages = entry
            page = next(pages, None)
            if page is None:
                feeds.remove(entry)
                if not dry_run:
                    Watermark.objects.filter(id=mark.id).update(
                        value=mark.window_started, window_since=None, window_started=None, window_after_id=0
                    )
                continue
            ids = [str(row[feed.id_field]) for row in page]
            _page_sync(feed, page, report, dry_run=dry_run, process_inline=process_inline)
            if not dry_run:
                Watermark.objects.filter(id=mark.id).update(window_after_id=int(ids[-1]))
            say(
                f"{feed.side}: {len(report.orders if feed.side == Side.CMS else report.deals)} changed so far"
            )
            if deadline is not None and time.monotonic() >= deadline:
                report.complete = False
                return report
    say(f"changed since the watermarks: {len(report.orders)} order(s), {len(report.deals)} deal(s)")
    return report


def _window_open(side: str, *, dry_run: bool) -> Watermark:
    """The window to read: the one a cut-short pass left open, or a new one from the watermark (less the
    overlap: clocks differ between us and the portal, and a change may commit after its change time)."""
    now = timezone.now()
    mark = Watermark.objects.filter(portal=side).first()
    if mark is not None and mark.window_since is not None:
        return mark
    if mark is None:
        initial = now - timedelta(days=settings.BXSYNC_RECONCILE_INITIAL_DAYS)
        mark = Watermark(portal=side, value=initial, window_since=initial)
    else:
        mark.window_since = mark.value - timedelta(seconds=settings.BXSYNC_RECONCILE_OVERLAP_SECONDS)
    mark.window_started, mark.window_after_id = now, 0
    if not dry_run:
        mark.save()
    return mark


def _pages(client: BitrixClient, feed: _Feed, mark: Watermark) -> Iterator[list[dict]]:
    assert mark.window_since is not None
    params = {
        "filter": {f">{feed.changed_field}": filter_datetime_after(mark.window_since)},
        # A deal's order field too: a deal naming an order this pass listed is covered by the order's item.
        "select": [feed.id_field] if feed.side == Side.CMS else [feed.id_field, portals.deal_order_field()],
        "order": feed.order,
    }
    return client.paging.pages_by_id(
        feed.method, params, id_field=feed.id_field, after=mark.window_after_id, items_key=feed.items_key
    )


def _page_sync(
    feed: _Feed, page: list[dict], report: ReconcileReport, *, dry_run: bool, process_inline: bool
) -> None:
    """Sync one page of changed orders or deals, or queue them as jobs."""
    ids = [str(row[feed.id_field]) for row in page]
    if feed.side == Side.CMS:
        report.orders += ids
        # An order whose deal this pass already took (the feeds alternate) is covered by the deal's item.
        order_ids, deal_ids = [o for o in ids if o not in report.covered_orders], []
    else:
        report.deals += ids
        # A deal linked to, or naming, an order this pass listed is covered by the order's item.
        linked = dict(
            Link.objects.filter(state=LinkState.ACTIVE, deal_id__in=ids).values_list("deal_id", "order_id")
        )
        named = {str(row["ID"]): str(row.get(portals.deal_order_field()) or "").strip() for row in page}
        listed = set(report.orders)
        order_ids = []
        deal_ids = [d for d in ids if linked.get(d) not in listed and named.get(d) not in listed]
        report.covered_orders.update(o for d in deal_ids for o in (linked.get(d), named.get(d)) if o)
    if process_inline or dry_run:
        report.results += items_sync(items=items_for(order_ids=order_ids, deal_ids=deal_ids), dry_run=dry_run)
        return
    for entity_id in order_ids or deal_ids:
        job_request(kind=feed.kind, entity_id=entity_id, origin="reconcile", event="reconcile")
    report.queued += len(order_ids or deal_ids)


def links_reconcile(*, dry_run: bool = False, progress: Progress | None = None) -> ReconcileReport:
    """Compare every active link with both portals now, 50 links a run (`reconcile --all`)."""
    say = progress or (lambda _msg: None)
    report = ReconcileReport(since={})
    total = Link.objects.filter(state=LinkState.ACTIVE).count()
    after = 0
    while True:
        chunk = list(
            Link.objects.filter(state=LinkState.ACTIVE, id__gt=after)
            .order_by("id")
            .values_list("id", "order_id")[:CHUNK]
        )
        if not chunk:
            break
        after = chunk[-1][0]
        order_ids = [order_id for _, order_id in chunk]
        report.orders += order_ids
        report.results += items_sync(
            items=items_for(order_ids=order_ids, source="reconcile"), dry_run=dry_run
        )
        say(f"checked {len(report.orders)}/{total} link(s)")
    return report

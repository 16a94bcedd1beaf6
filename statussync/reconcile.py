"""Reconciliation: Bitrix never re-sends a lost event [docs/bitrix.md "Events"], so a pass lists what changed
on both portals since a watermark (with overlap) and syncs it; `reconcile --all` compares every link.

Each portal's change feed is read a page (50 rows) at a time in id order — `start=-1` and a `>ID` filter, as
Bitrix recommends for big scans — and the watermark records after every page how far the pass got. A pass cut
short by the task timeout, an outage or a restart resumes there; the window never grows because a pass failed.

Where `bitrix doctor` found a portal doing otherwise than assumed, the feeds adapt (the client's
`behaviour`, docs/bitrix.md "Undocumented behaviours"): a portal that does not honour the datetime filter is
read newest change first, stopping at the window's start; a CRM whose pipeline moves leave `DATE_MODIFY` as
it was is also read by `>MOVED_TIME`, in the same window.
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
    """One portal's change feed: the list method, its change-time and id fields, and the job kind.
    `resumes`: the feed whose progress the watermark keeps (a side's other feed reads its window again)."""

    side: str
    method: str
    changed_field: str
    id_field: str
    order: dict[str, str]
    items_key: str | None
    kind: str
    resumes: bool = True


# `>DATE_MODIFY` / `>dateUpdate`: the reconciliation feeds of the contract [docs/bitrix.md "Reconciliation"].
_FEEDS = (
    _Feed(Side.CMS, "sale.order.list", "dateUpdate", "id", {"id": "asc"}, "orders", JobKind.ORDER),
    _Feed(Side.CRM, "crm.deal.list", "DATE_MODIFY", "ID", {"ID": "ASC"}, None, JobKind.DEAL),
)
# A pipeline move sets the deal's MOVED_TIME (its stage changes); read where it leaves DATE_MODIFY alone.
_MOVES_FEED = _Feed(
    Side.CRM, "crm.deal.list", "MOVED_TIME", "ID", {"ID": "ASC"}, None, JobKind.DEAL, resumes=False
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
    feeds: list[tuple[_Feed, Watermark, tuple[Iterator[list[dict]], bool]]] = []
    for side_feed in _FEEDS:
        client = client_for(side_feed.side)
        mark = _window_open(side_feed.side, dry_run=dry_run)
        report.since[side_feed.side] = mark.window_since  # type: ignore[assignment]
        side_feeds = [side_feed]
        if side_feed.side == Side.CRM and not client.behaviour.move_changes_date_modify:
            side_feeds.append(_MOVES_FEED)
        feeds += [(feed, mark, _pages(client, feed, mark)) for feed in side_feeds]
    reading = Counter(feed.side for feed, _, _ in feeds)
    # A page of each feed in turn: a long backlog on one portal must not starve the other's changes until
    # the pass runs out of time (a pass cut short resumes both where they stopped).
    while feeds:
        for entry in list(feeds):
            feed, mark, (pages, by_id) = entry
            page = next(pages, None)
            if page is None:
                feeds.remove(entry)
                reading[feed.side] -= 1
                if not dry_run and not reading[feed.side]:  # the side's window is read to its end
                    Watermark.objects.filter(id=mark.id).update(
                        value=mark.window_started, window_since=None, window_started=None, window_after_id=0
                    )
                continue
            ids = [str(row[feed.id_field]) for row in page]
            _page_sync(feed, page, report, dry_run=dry_run, process_inline=process_inline)
            if not dry_run and feed.resumes and by_id:
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


def _pages(client: BitrixClient, feed: _Feed, mark: Watermark) -> tuple[Iterator[list[dict]], bool]:
    """The feed's pages in this window, and whether they come in id order (the watermark can resume them)."""
    assert mark.window_since is not None
    # A deal's order field too: a deal naming an order this pass listed is covered by the order's item.
    select = [feed.id_field] if feed.side == Side.CMS else [feed.id_field, portals.deal_order_field()]
    if not client.behaviour.datetime_filter:
        return _pages_newest_first(client, feed, since=mark.window_since, select=select), False
    params = {
        "filter": {f">{feed.changed_field}": filter_datetime_after(mark.window_since)},
        "select": select,
        "order": feed.order,
    }
    after = mark.window_after_id if feed.resumes else 0
    pages = client.paging.pages_by_id(
        feed.method, params, id_field=feed.id_field, after=after, items_key=feed.items_key
    )
    return pages, True


def _pages_newest_first(
    client: BitrixClient, feed: _Feed, *, since: datetime, select: list[str]
) -> Iterator[list[dict]]:
    """The feed on a portal that does not honour a datetime filter (doctor's `datetime_offset_filter`): the
    list ordered by change time, newest first, read until a row changed before the window (the second
    before `since`, as `filter_datetime_after` sends it). Offsets, not ids, move it on, so a pass cut short
    reads its window again; a row changed meanwhile moves to the top and is seen again, never missed."""
    oldest = since.replace(microsecond=0) - timedelta(seconds=1)
    params = {
        "select": [*select, feed.changed_field],
        "order": {feed.changed_field: "DESC", feed.id_field: "DESC"},
    }
    page: list[dict] = []
    for row in client.paging.list_all(feed.method, params, items_key=feed.items_key):
        changed = portals.parse_time(row.get(feed.changed_field))
        if changed is None or changed <= oldest:  # no date sorts last (MySQL's DESC)
            break
        page.append(row)
        if len(page) == CHUNK:
            yield page
            page = []
    if page:
        yield page


def _page_sync(
    feed: _Feed, page: list[dict], report: ReconcileReport, *, dry_run: bool, process_inline: bool
) -> None:
    """Sync one page of changed orders or deals, or queue them as jobs."""
    listed = set(report.orders if feed.side == Side.CMS else report.deals)
    # A side's second feed, or a newest-first read whose rows shifted, may list a row again: sync it once.
    page = [row for row in page if str(row[feed.id_field]) not in listed]
    ids = [str(row[feed.id_field]) for row in page]
    if not ids:
        return
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

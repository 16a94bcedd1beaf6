"""Reconciliation that cannot fall behind for good: a page at a time, resumed where it stopped, and
`reconcile --all` (issue: reliability, "Reconciliation can fall behind for good")."""

from __future__ import annotations

from datetime import datetime, timedelta
from io import StringIO
from types import SimpleNamespace

from django.core.management import call_command
from django.db.models import F

from statussync.models import Job, Link, LinkState, Watermark
from statussync.reconcile import links_reconcile, reconcile_run


def count_calls(sb, method: str) -> int:
    return sum(c.get("rest_calls", {}).get(method, 0) for c in sb.counters().values())


def test_it_reads_the_change_feeds_fifty_rows_a_page_by_id(sb):
    sb.seed(120, pipeline_share=0, orders_without_deal=0, deals_without_order=0)
    sb.reset_counters()

    report = reconcile_run(process_inline=False)

    assert (len(report.orders), len(report.deals), report.queued) == (120, 120, 120)
    # 120 rows: pages of 50, 50 and 20 on each portal; no offsets, no counts.
    assert count_calls(sb, "sale.order.list") == 3
    assert count_calls(sb, "crm.deal.list") == 3
    mark = Watermark.objects.get(portal="cms")
    assert (mark.window_since, mark.window_after_id) == (None, 0)  # the window was read to its end


def test_it_resumes_a_pass_cut_short_where_it_stopped(sb):
    pairs = sb.seed(120, pipeline_share=0, orders_without_deal=0, deals_without_order=0)
    sb.advance_clock(5)
    for order_id, _ in pairs:
        sb.shop.set_order_status(order_id, "P")  # every event lost

    first = reconcile_run(process_inline=False, max_seconds=0)  # the task timeout strikes after one page
    assert not first.complete
    assert len(first.orders) == 50
    mark = Watermark.objects.get(portal="cms")
    assert mark.window_after_id == int(first.orders[-1])
    window = mark.window_since

    second = reconcile_run(process_inline=False)

    assert second.complete
    assert second.since["cms"] == window  # the same window, not a larger one
    assert sorted(map(int, first.orders + second.orders)) == sorted(o for o, _ in pairs)  # each order once
    assert Job.objects.filter(kind="order").count() == 120


def test_it_compares_every_link_with_reconcile_all_and_reports_progress(sb):
    pairs = sb.seed(60, pipeline_share=0, orders_without_deal=0, deals_without_order=0)
    call_command("reconcile", stdout=StringIO(), stderr=StringIO())
    assert Link.objects.filter(state=LinkState.ACTIVE).count() == 60
    (order_id, deal_id) = pairs[7]
    sb.crm.move_deal(deal_id, "WON")  # its event lost, and changed before the watermark's overlap, say
    progress: list[str] = []

    report = links_reconcile(progress=progress.append)

    assert sb.shop.get_order(order_id)["statusId"] == "F"
    assert len(report.orders) == 60
    assert progress[-1] == "checked 60/60 link(s)"
    out = StringIO()
    call_command("reconcile", "--all", "--dry-run", stdout=out, stderr=StringIO())
    assert "every link" in out.getvalue()
    assert "would write 0 change(s)" in out.getvalue()


def test_it_sends_the_change_feeds_whole_seconds_with_an_offset_missing_nothing(sb, settings):
    # api-reference/data-types.md: a datetime is YYYY-MM-DDThh:mm:ss±hh:mm; the sandbox refuses any other.
    [(_, deal_id)] = sb.seed(1, pipeline_share=0, orders_without_deal=0, deals_without_order=0)
    changed = sb.crm.get_deal(deal_id)["DATE_MODIFY"]
    # The watermark falls inside the second of the deal's change: sent as-is, `>` would skip the deal.
    Watermark.objects.create(
        portal="crm", value=datetime.fromisoformat(changed) + timedelta(milliseconds=700)
    )
    settings.BXSYNC_RECONCILE_OVERLAP_SECONDS = 0

    report = reconcile_run(process_inline=False)

    assert str(deal_id) in report.deals


def test_it_reads_the_crms_changes_while_a_long_shop_backlog_drains(sb, settings, monkeypatch):
    settings.BXSYNC_RECONCILE_OVERLAP_SECONDS = 0  # the next window holds only what changes below
    pairs = sb.seed(120, pipeline_share=0, orders_without_deal=0, deals_without_order=0)
    reconcile_run(process_inline=False)
    # The filters start a second before the window (whole seconds, as documented): as if this pass had run a
    # few seconds after the seed, so the next window does not hold the seed's second again.
    Watermark.objects.update(value=F("value") + timedelta(seconds=3))
    Job.objects.all().delete()
    sb.advance_clock(5)
    for order_id, _ in pairs[:110]:
        sb.shop.set_order_status(order_id, "P")  # a bulk edit in the shop, its events lost
    moved = pairs[115][1]
    sb.crm.move_deal(moved, "PREPARATION")  # a manager's move, its event lost too
    clock = iter(range(1000))
    # A clock that moves a second each time the pass looks at it (once to start, once after each page).
    monkeypatch.setattr("statussync.reconcile.time", SimpleNamespace(monotonic=lambda: next(clock)))

    report = reconcile_run(process_inline=False, max_seconds=1.5)  # time for two pages, not the shop's three

    assert not report.complete
    assert report.deals == [str(moved)]
    assert Job.objects.filter(kind="deal", entity_id=str(moved)).exists()

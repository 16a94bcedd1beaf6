"""The sync adapts to what `bitrix doctor` found each portal to do where the docs leave it open
[docs/bitrix.md "Undocumented behaviours"]: the sandbox is made to refuse, doctor probes it, and the sync's
reads go the other way."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import F

from statussync.bitrix import BitrixError
from statussync.doctor import doctor_run
from statussync.doctor.quirks import portal_quirks_store
from statussync.jobs import job_request
from statussync.models import Job, JobKind, JobState, Watermark
from statussync.reconcile import reconcile_run
from tests.support.sandbox import pay, run_worker


def commands(sb, method: str) -> int:
    return sum(c.get("rest_calls", {}).get(method, 0) for c in sb.counters().values())


def seeded(sb, n: int) -> list[tuple[str, str]]:
    pairs = sb.seed(n, pipeline_share=0, orders_without_deal=0, deals_without_order=0)
    return [(str(o), str(d)) for o, d in pairs]


def quiet_window(sb, settings) -> None:
    """A first pass reads the seed; the next window holds only what changes after it."""
    settings.BXSYNC_RECONCILE_OVERLAP_SECONDS = 0
    reconcile_run(process_inline=False)
    # The filters start a second before the window (whole seconds, as documented).
    Watermark.objects.update(value=F("value") + timedelta(seconds=3))
    Job.objects.all().delete()
    sb.advance_clock(5)


def test_it_reconciles_a_shop_that_refuses_start_minus_one_once_doctor_found_it(sb):
    pairs = seeded(sb, 60)
    sb.set_account("shop", start_minus_one="error")
    with pytest.raises(BitrixError):
        reconcile_run(process_inline=False)  # unprobed, the client assumes start=-1 works

    doctor_run()
    report = reconcile_run(process_inline=False)

    assert report.complete
    assert sorted(report.orders, key=int) == sorted((o for o, _ in pairs), key=int)


def test_it_reads_payments_one_by_one_where_the_array_filter_is_refused(sb):
    pairs = seeded(sb, 3)
    payment_ids = [pay(sb, order_id) for order_id, _ in pairs]
    sb.set_account("shop", payment_array_filter="error")
    doctor_run()
    sb.reset_counters()
    for payment_id in payment_ids:
        job_request(kind=JobKind.PAYMENT, entity_id=payment_id)

    run_worker("payments")

    # No list command that the portal would refuse first: each payment by its own get.
    assert (commands(sb, "sale.payment.list"), commands(sb, "sale.payment.get")) == (0, 3)
    assert all(sb.crm.get_deal(int(d))["STAGE_ID"] == "PREPAYMENT_INVOICE" for _, d in pairs)
    assert not Job.objects.filter(state=JobState.DEAD).exists()


@pytest.mark.parametrize("answer", ["error", "ignored"])
def test_it_reads_only_the_window_newest_first_where_the_datetime_filter_fails(sb, settings, answer):
    pairs = seeded(sb, 70)
    quiet_window(sb, settings)
    sb.set_account("both", datetime_offset_filter=answer)
    doctor_run()
    changed_orders = [o for o, _ in pairs[:3]]
    for order_id in changed_orders:
        sb.shop.set_order_status(order_id, "P")  # their events lost
    moved_deal = pairs[60][1]
    sb.crm.move_deal(moved_deal, "PREPARATION")
    sb.reset_counters()

    report = reconcile_run(process_inline=False)

    assert report.complete
    assert sorted(report.orders) == sorted(changed_orders)
    assert report.deals == [moved_deal]
    # Newest first, one page each: the 67 unchanged rows are never read.
    assert (commands(sb, "sale.order.list"), commands(sb, "crm.deal.list")) == (1, 1)


def test_it_sees_a_pipeline_move_that_leaves_date_modify_where_doctor_found_so(sb, settings):
    pairs = seeded(sb, 2)
    quiet_window(sb, settings)
    sb.set_account("crm", move_changes_date_modify=False)
    deal_id = pairs[0][1]
    sb.crm.move_deal_to_pipeline(int(deal_id), 1)  # ONCRMDEALMOVETOCATEGORY: an outgoing webhook never hears
    assert reconcile_run(process_inline=False, dry_run=True).deals == []  # DATE_MODIFY alone misses it

    portal_quirks_store(portal="crm", found={"pipeline_move_changes_date_modify": False})
    report = reconcile_run(process_inline=False)

    assert report.deals == [deal_id]
    assert Job.objects.filter(kind=JobKind.DEAL, entity_id=deal_id).exists()
    assert Watermark.objects.get(portal="crm").window_since is None  # both feeds read the window to its end

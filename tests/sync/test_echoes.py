"""Echoes known without reading (statussync/sync/echoes.py): the event of bxsync's own confirmed write costs
no request, and nothing a human did is missed for it."""

from __future__ import annotations

from statussync.jobs import job_request
from statussync.models import AuditEntry, JobKind, Link
from tests.support.sandbox import linked_pair, run_worker


def requests_sent(sb) -> int:
    return sum(portal.get("rest_requests", 0) for portal in sb.counters().values())


def order_moved_by_bxsync(sb) -> tuple[str, str]:
    """A linked pair whose deal bxsync just moved to PREPARATION: the shop's order went to P."""
    order_id, deal_id = linked_pair(sb)
    sb.shop.set_order_status(int(order_id), "P")
    job_request(kind=JobKind.ORDER, entity_id=order_id, event="ONSALEORDERSAVED")
    run_worker()
    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPARATION"
    return order_id, deal_id


def test_it_takes_the_echo_of_its_own_write_without_reading(sb):
    order_id, deal_id = order_moved_by_bxsync(sb)
    sb.reset_counters()

    job_request(kind=JobKind.DEAL, entity_id=deal_id, event="ONCRMDEALUPDATE")
    run_worker()

    assert requests_sent(sb) == 0
    echo = AuditEntry.objects.get(deal_id=deal_id, outcome="echo")
    assert (echo.reason["code"], echo.rest_calls, echo.link.order_id) == ("echo_known", 0, order_id)
    assert Link.objects.get(order_id=order_id).echo_expected == ""


def test_it_reads_the_second_event_after_its_write_and_finds_the_human_change(sb):
    order_id, deal_id = order_moved_by_bxsync(sb)
    sb.crm.move_deal(int(deal_id), "WON")  # a manager, a moment after bxsync's write

    # The manager's event wins the race and takes the token; bxsync's own echo comes next and is read.
    job_request(kind=JobKind.DEAL, entity_id=deal_id, event="ONCRMDEALUPDATE")
    run_worker()
    job_request(kind=JobKind.DEAL, entity_id=deal_id, event="ONCRMDEALUPDATE")
    run_worker()

    assert sb.shop.get_order(int(order_id))["statusId"] == "F"


def test_it_reads_a_job_that_coalesced_two_events(sb):
    order_id, deal_id = order_moved_by_bxsync(sb)
    sb.crm.move_deal(int(deal_id), "WON")
    sb.reset_counters()

    for _ in range(2):  # the echo and the manager's event, in one pending job
        job_request(kind=JobKind.DEAL, entity_id=deal_id, event="ONCRMDEALUPDATE")
    run_worker()

    assert requests_sent(sb) > 0
    assert sb.shop.get_order(int(order_id))["statusId"] == "F"


def test_it_reads_every_event_once_a_run_has_read_the_link(sb):
    order_id, deal_id = order_moved_by_bxsync(sb)
    job_request(kind=JobKind.ORDER, entity_id=order_id, event="ONSALEORDERSAVED")  # a late duplicate
    run_worker()
    assert Link.objects.get(order_id=order_id).echo_expected == ""
    sb.crm.move_deal(int(deal_id), "WON")

    job_request(kind=JobKind.DEAL, entity_id=deal_id, event="ONCRMDEALUPDATE")
    run_worker()

    assert sb.shop.get_order(int(order_id))["statusId"] == "F"


def test_it_reads_an_echo_of_a_write_whose_read_back_showed_another_value(sb, monkeypatch):
    from statussync.sync import write

    monkeypatch.setattr(write, "_got_written_deals", lambda by_id, rows: None)  # no read-back seen
    _, deal_id = order_moved_by_bxsync(sb)
    sb.reset_counters()

    job_request(kind=JobKind.DEAL, entity_id=deal_id, event="ONCRMDEALUPDATE")
    run_worker()

    assert requests_sent(sb) > 0
    assert AuditEntry.objects.get(deal_id=deal_id, outcome="echo").reason["code"] == "echo"

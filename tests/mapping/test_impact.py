"""What a mapping change does to existing links: counted in SQL (bounded however many links), and resynced in
chunks that move the side the changed rule now leads."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
from django.utils import timezone

from statussync.jobs import job_request
from statussync.mapping import impact
from statussync.mapping.impact import Remap, mapping_change_resync, mapping_impact, mapping_resyncs_resume
from statussync.mapping.store import mapping_change_record, mapping_export, mapping_import
from statussync.models import Job, JobKind, Link, LinkState, MappingChange
from tests.support.mappings import DESIGN_EXAMPLE
from tests.support.sandbox import run_worker

pytestmark = pytest.mark.django_db


def edited(change) -> dict:
    document = copy.deepcopy(DESIGN_EXAMPLE)
    change(document)
    return document


def rule(document: dict, status: str, stage: str) -> dict:
    return next(
        r
        for r in document["pipelines"][0]["rules"]
        if (r["order_status"], r["deal_stage"]) == (status, stage)
    )


def links(*bases: tuple[str, str], pipeline: int = 0, **fields) -> None:
    Link.objects.bulk_create(
        Link(
            order_id=str(n),
            deal_id=str(1000 + n),
            pipeline_id=pipeline,
            base_order_status=status,
            base_deal_stage=stage,
            base_at=timezone.now(),
            **fields,
        )
        for n, (status, stage) in enumerate(bases, start=Link.objects.count() + 1)
    )


P_TO_EXECUTING = edited(lambda d: rule(d, "P", "PREPARATION").update(deal_stage="EXECUTING"))


def test_it_counts_the_links_agreed_under_a_replaced_rule_and_those_that_move():
    links(("P", "PREPARATION"), ("P", "PREPARATION"), ("N", "NEW"), ("F", "WON"))
    links(("P", "PREPARATION"), pipeline=1)  # another pipeline's links keep their mapping
    links(("P", "PREPARATION"), state=LinkState.CLOSED)  # closed links are history

    impact = mapping_impact(before=DESIGN_EXAMPLE, after=P_TO_EXECUTING)

    assert (impact.affected, impact.moving) == (2, 2)
    assert {(r.move, r.target) for r in impact.sample} == {("deal", "EXECUTING")}


def test_it_moves_the_order_when_only_a_stage_rule_changed():
    after = edited(lambda d: rule(d, "C", "APOLOGY").update(order_status="F"))  # APOLOGY now means done
    links(("C", "APOLOGY"), ("C", "LOSE"))

    impact = mapping_impact(before=DESIGN_EXAMPLE, after=after)

    assert (impact.affected, impact.moving) == (1, 1)
    assert [(r.order_id, r.move, r.target) for r in impact.sample] == [("1", "order", "F")]


def test_it_tells_links_no_longer_mapped_from_links_that_move():
    after = edited(lambda d: d["pipelines"][0]["rules"].remove(rule(d, "P", "PREPARATION")))
    links(("P", "PREPARATION"))

    impact = mapping_impact(before=DESIGN_EXAMPLE, after=after)

    assert (impact.affected, impact.moving, impact.sample[0].move) == (1, 0, "unmapped")


def test_it_finds_nothing_to_do_for_a_policy_change():
    links(("P", "PREPARATION"))
    after = edited(lambda d: d["pipelines"][0].update(conflict_policy="manual"))

    impact = mapping_impact(before=DESIGN_EXAMPLE, after=after)

    assert (impact.affected, impact.moving, impact.sample, impact.changed) == (0, 0, (), True)


def many_links(total: int) -> None:
    """`total` active links, two in five agreed on (P, PREPARATION) and the rest on (N, NEW), made in one SQL
    statement (the ORM would take a minute)."""
    from django.db import connection

    links(("N", "NEW"))
    template = Link.objects.get()
    columns = [f.column for f in Link._meta.concrete_fields if f.column not in ("id",)]
    chosen = {
        "order_id": "CAST(n AS TEXT)",
        "deal_id": "CAST(n + 1000000 AS TEXT)",
        # %% with parameters: psycopg's placeholder escape, which Django's SQLite cursor turns into % too.
        "base_order_status": "CASE WHEN n %% 5 < 2 THEN 'P' ELSE 'N' END",
        "base_deal_stage": "CASE WHEN n %% 5 < 2 THEN 'PREPARATION' ELSE 'NEW' END",
    }
    select = ", ".join(chosen.get(c, f"t.{c}") for c in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Link._meta.db_table} ({', '.join(columns)}) "  # noqa: S608 - no user input
            "WITH RECURSIVE seq(n) AS (SELECT 2 UNION ALL SELECT n + 1 FROM seq WHERE n < %s) "
            f"SELECT {select} FROM seq, {Link._meta.db_table} t WHERE t.id = %s",
            [total, template.id],
        )


def test_it_previews_a_hundred_thousand_links_in_three_queries(django_assert_max_num_queries):
    many_links(100_000)

    with django_assert_max_num_queries(3):
        impact = mapping_impact(before=DESIGN_EXAMPLE, after=P_TO_EXECUTING)

    agreed_on_p = sum(1 for n in range(2, 100_001) if n % 5 < 2)  # two in five
    assert (impact.affected, impact.moving, len(impact.sample)) == (agreed_on_p, agreed_on_p, 20)
    assert impact.sample[0].order_id == "100000"  # the most recent first


def change_of(before: dict, after: dict) -> MappingChange:
    change = mapping_change_record(before=before, after=after, source="admin")
    MappingChange.objects.filter(id=change.id).update(resync_requested=True)
    return change


def test_it_queues_the_resync_in_chunks_and_resumes_where_it_stopped():
    links(*[("P", "PREPARATION")] * 5, ("N", "NEW"))
    change = change_of(DESIGN_EXAMPLE, P_TO_EXECUTING)

    first = mapping_change_resync(change_id=change.id, chunk=2, max_seconds=0)  # hands over at once
    assert first == 0
    assert mapping_change_resync(change_id=change.id, chunk=2) == 5

    change.refresh_from_db()
    assert (change.resync_queued, change.resync_finished_at is not None) == (5, True)
    assert sorted(Job.objects.values_list("entity_id", flat=True)) == ["1", "2", "3", "4", "5"]
    assert mapping_change_resync(change_id=change.id) == 0  # done: nothing queued twice


def test_it_lets_one_task_at_a_time_queue_a_change():
    links(("P", "PREPARATION"))
    change = change_of(DESIGN_EXAMPLE, P_TO_EXECUTING)
    MappingChange.objects.filter(id=change.id).update(
        resync_lease_until=timezone.now() + timedelta(minutes=1)
    )

    assert mapping_change_resync(change_id=change.id) == 0
    assert Job.objects.count() == 0


def test_it_has_a_resync_task_that_lost_its_change_stop_before_its_next_chunk(monkeypatch):
    """Finding 10: a task that stalled past its lease while another task took the change over went on
    queueing chunks beside it."""
    links(*[("P", "PREPARATION")] * 4)
    change = change_of(DESIGN_EXAMPLE, P_TO_EXECUTING)
    real = impact._link_resync

    def taken_over_during_the_first_chunk(link, remap):
        MappingChange.objects.filter(id=change.id).update(
            resync_token="another task", resync_lease_until=timezone.now() + timedelta(minutes=1)
        )
        return real(link, remap)

    monkeypatch.setattr(impact, "_link_resync", taken_over_during_the_first_chunk)

    assert mapping_change_resync(change_id=change.id, chunk=2) == 2
    change.refresh_from_db()
    assert (change.resync_queued, change.resync_token, change.resync_finished_at) == (2, "another task", None)


def test_it_wakes_a_resync_whose_task_died(django_capture_on_commit_callbacks, monkeypatch):
    change = change_of(DESIGN_EXAMPLE, P_TO_EXECUTING)
    MappingChange.objects.filter(id=change.id).update(
        created_at=timezone.now() - timedelta(minutes=5),
        resync_lease_until=timezone.now() - timedelta(seconds=1),
    )
    woken = []
    monkeypatch.setattr("statussync.mapping.impact._resync_wake", woken.append)

    assert mapping_resyncs_resume() == 1
    assert woken == [change.id]


def test_it_leaves_a_link_a_run_moved_meanwhile_as_the_run_left_it():
    links(("P", "PREPARATION"))
    change = change_of(DESIGN_EXAMPLE, P_TO_EXECUTING)
    remap = Remap(before=change.before, after=change.after)
    link = Link.objects.get()
    Link.objects.filter(id=link.id).update(base_deal_stage="EXECUTING")  # a run decided with the new rule

    from statussync.mapping.impact import _link_resync

    _link_resync(link, remap)

    assert Link.objects.get().base_order_status == "P"  # not blanked: the run's base stands


def test_it_makes_the_order_follow_when_the_stage_rule_changed(portals_up):
    """Against the sandbox: APOLOGY now means F; a link agreed on (C, APOLOGY) moves its order to F."""
    mapping_import(data=DESIGN_EXAMPLE)
    order_id, deal_id = (
        str(i) for i in portals_up.seed(1, pipeline_share=0, orders_without_deal=0, deals_without_order=0)[0]
    )
    job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()
    portals_up.crm.move_deal(int(deal_id), "APOLOGY")
    job_request(kind=JobKind.DEAL, entity_id=deal_id)
    run_worker()
    assert portals_up.shop.get_order(int(order_id))["statusId"] == "C"
    before = mapping_export()
    after = edited(lambda d: rule(d, "C", "APOLOGY").update(order_status="F"))
    mapping_import(data=after)
    change = change_of(before, mapping_export())

    assert mapping_change_resync(change_id=change.id) == 1
    run_worker()

    assert portals_up.shop.get_order(int(order_id))["statusId"] == "F"
    assert portals_up.crm.get_deal(int(deal_id))["STAGE_ID"] == "APOLOGY"
    link = Link.objects.get(order_id=order_id)
    assert (link.base_order_status, link.base_deal_stage) == ("F", "APOLOGY")

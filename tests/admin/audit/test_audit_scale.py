"""The audit list on a big table: every page reads one page of rows through an index and never counts.

~20,000 rows stand in for millions: what matters is the plan SQLite chooses (EXPLAIN QUERY PLAN) and the
number of queries, which do not change with the table's size.
"""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from statussync.models import AuditEntry, Link
from statussync.reasons import why

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.only_leg(
        "embedded",
        reason="asserts the plans SQLite chooses (EXPLAIN QUERY PLAN) and fills the table with SQLite's SQL",
    ),
]

LIST = "/admin/statussync/auditentry/"


@pytest.fixture(scope="module")
def many_rows(django_db_setup, django_db_blocker):
    """~20,000 audit entries over 30 days, in the proportions a busy shop has (made once for the module)."""
    with django_db_blocker.unblock():
        now = _many_rows_make()
    yield now
    with django_db_blocker.unblock():
        AuditEntry.objects.all().delete()


def _many_rows_make():
    now = timezone.now()
    outcomes = ["no_change"] * 6 + ["echo"] * 4 + ["applied"] * 3 + ["retried", "payment_applied"]
    rows = [
        AuditEntry(
            outcome=outcomes[i % len(outcomes)],
            side="cms" if i % 2 else "crm",
            origin="reconcile" if i % 10 == 0 else "event",
            order_id=str(i % 5000),
            deal_id=str(100_000 + i % 5000),
            message="the echo of bxsync's own write",
            reason=why("echo").as_json(),
            latency_ms=i % 900,
        )
        for i in range(20_000)
    ]
    AuditEntry.objects.bulk_create(rows, batch_size=2000)
    # Spread over 30 days (auto_now_add stamped them all now): one UPDATE on the rowid.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE statussync_auditentry SET created_at = datetime(%s, '-' || (id % 43200) || ' minutes')",
            [now.strftime("%Y-%m-%d %H:%M:%S")],
        )
    return now


def _plan(sql: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + sql)
        return [row[3] for row in cursor.fetchall()]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "p=3",
        "outcome=payment_applied",
        "origin=reconcile",
        "side__exact=crm",
        "since=2026-01-01",
        "outcome=applied&since=2026-01-01&until=2030-01-01",
        "q=123",
        "q=deal+100123",
    ],
)
def test_it_reads_one_page_through_an_index_and_never_counts(support, client, many_rows, query):
    client.force_login(support)

    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"{LIST}?{query}")

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) > 0
    sqls = [q["sql"] for q in queries.captured_queries]
    assert len(sqls) <= 8  # session, user, permissions, the page
    assert not any("COUNT(" in sql.upper() for sql in sqls)
    (page,) = [sql for sql in sqls if 'FROM "statussync_auditentry"' in sql]
    assert "LIMIT 101" in page
    plan = _plan(page)
    assert any("INDEX" in step for step in plan), plan
    assert not any(step.startswith("SCAN statussync_auditentry") and "INDEX" not in step for step in plan), (
        plan
    )
    if not query.startswith("q="):  # an id search sorts its few matches; nothing else sorts
        assert not any("TEMP B-TREE FOR ORDER BY" in step for step in plan), plan


def test_it_pages_through_millions_with_newer_and_older_links(support, client, many_rows):
    client.force_login(support)

    first = client.get(LIST).content.decode()
    second = client.get(f"{LIST}?p=2").content.decode()

    assert "Older →" in first
    assert "Newer" not in first
    assert "← Newer" in second
    assert "Show all" not in first
    assert not re.search(r"\d+ (results?|audit entr)", first)  # no count anywhere


def _plans_of_big_tables(queries) -> list[tuple[str, list[str]]]:
    return [
        (q["sql"], _plan(q["sql"]))
        for q in queries.captured_queries
        if 'FROM "statussync_auditentry"' in q["sql"] or 'FROM "statussync_inboundevent"' in q["sql"]
    ]


def test_it_reads_a_timeline_through_the_ids_not_through_every_unlinked_entry(support, client, many_rows):
    # The 20,000 rows have no link: an index on "link_id IS NULL" would read them all.
    link = Link.objects.create(order_id="123", deal_id="100123")
    client.force_login(support)

    with CaptureQueriesContext(connection) as queries:
        html = client.get(f"/admin/statussync/link/{link.id}/change/").content.decode()

    assert html.count('data-kind="decision"') == 4  # order 123's entries (i % 5000 == 123)
    for sql, plan in _plans_of_big_tables(queries):
        assert not any(step.startswith("SCAN") for step in plan), plan
        unlinked_by_index = "IS NULL" in sql and any("audit_link_time" in step for step in plan)
        assert not unlinked_by_index, plan


def test_it_counts_the_dashboards_day_from_the_time_indexes_alone(support, client, many_rows):
    client.force_login(support)

    with CaptureQueriesContext(connection) as queries:
        assert client.get("/admin/dashboard/").status_code == 200

    plans = [plan for _sql, plan in _plans_of_big_tables(queries)]
    assert plans
    for plan in plans:
        assert not any(step.startswith("SCAN") for step in plan), plan
    assert any("COVERING INDEX audit_time_outcome" in step for plan in plans for step in plan)
    # The links needing attention: a partial index, not a walk over every active link.
    attention = [_plan(q["sql"]) for q in queries.captured_queries if '"needs_attention"' in q["sql"]]
    assert len(attention) == 2
    assert all(any("link_needs_attention" in step for step in plan) for plan in attention), attention

"""The audit list: reasons in the reader's language, filters and search, CSV export, and pages that stay fast
on millions of rows."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from statussync.admin import audit as audit_admin
from statussync.models import AuditEntry, Link
from statussync.reasons import why
from tests.admin.story import link_story

pytestmark = pytest.mark.django_db

LIST = "/admin/statussync/auditentry/"
EXPORT = "/admin/statussync/auditentry/export.csv"


def entry(**fields) -> AuditEntry:
    """An audit entry as the sync run writes one: the reason as a code, and its English text."""
    reason = fields.pop("reason", why("nothing_changed"))
    created_at = fields.pop("created_at", None)
    row = AuditEntry.objects.create(
        **{"outcome": "no_change", "origin": "event", **fields}, reason=reason.as_json(), message=str(reason)
    )
    if created_at is not None:
        AuditEntry.objects.filter(id=row.id).update(created_at=created_at)
    return row


def shown_ids(response) -> list[str]:
    """The order ids in the rows of a changelist page."""
    cl = response.context["cl"]
    return [e.order_id for e in cl.result_list]


def csv_rows(response) -> list[dict[str, str]]:
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


def test_it_renders_each_reason_in_the_readers_language(admin_client, monkeypatch):
    entry(
        outcome="applied", order_id="1", reason=why("order_to_deal", status="P", stage="NEW", target="PREP")
    )
    russian = {
        "order status {status}: deal {stage} → {target}": "статус заказа {status}: сделка {stage} → {target}"
    }
    monkeypatch.setattr("statussync.admin.timeline.gettext", lambda text: russian.get(text, text))

    html = admin_client.get(LIST).content.decode()

    assert "статус заказа P: сделка NEW → PREP" in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("outcome=applied", ["2"]),
        ("side__exact=crm", ["3"]),
        ("origin=reconcile", ["3"]),
        ("origin=admin", []),
        ("since=2026-01-02&until=2026-01-02", ["2"]),  # a whole day
        ("since=2026-01-02T12:00", ["3", "2"]),
        ("until=2026-01-01", ["1"]),
        ("outcome=applied&since=2026-01-03", []),
    ],
)
def test_it_filters_by_outcome_side_origin_and_dates(admin_client, settings, query, expected):
    settings.TIME_ZONE = "Europe/Moscow"  # a range is in the reader's time zone
    msk = timezone.get_fixed_timezone(180)
    entry(order_id="1", side="cms", created_at=timezone.datetime(2026, 1, 1, 23, 0, tzinfo=msk))
    entry(
        order_id="2", side="cms", outcome="applied", created_at=timezone.datetime(2026, 1, 2, 15, tzinfo=msk)
    )
    entry(
        order_id="3", side="crm", origin="reconcile", created_at=timezone.datetime(2026, 1, 3, 1, tzinfo=msk)
    )

    response = admin_client.get(f"{LIST}?{query}")

    assert response.status_code == 200
    assert shown_ids(response) == expected


@pytest.mark.parametrize(
    ("q", "expected"),
    [("5", ["5", "6"]), ("order 5", ["5"]), ("deal 5", ["6"]), ("#6", ["6"]), ("PREPARATION", ["6"])],
)
def test_it_searches_ids_exactly_and_other_text_in_the_reason(admin_client, q, expected):
    entry(order_id="5", deal_id="50")
    entry(order_id="6", deal_id="5", outcome="applied", reason=why("deal_already_there", stage="PREPARATION"))
    entry(order_id="55", deal_id="555")

    response = admin_client.get(LIST, {"q": q})

    assert sorted(shown_ids(response)) == expected


def test_it_links_each_entry_to_its_links_timeline(admin_client):
    link = Link.objects.create(order_id="7", deal_id="70")
    entry(order_id="7", deal_id="70", link=link)

    html = admin_client.get(LIST).content.decode()

    assert f'href="/admin/statussync/link/{link.id}/change/"' in html


def test_it_exports_the_filtered_view_as_csv(admin_client):
    for i in range(3):
        entry(order_id=str(i), outcome="applied" if i else "echo", reason=why("echo"))

    response = admin_client.get(EXPORT, {"outcome": "applied"})

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = csv_rows(response)
    assert [r["order id"] for r in rows] == ["2", "1"]
    assert rows[0]["outcome"] == "Synced"
    assert rows[0]["why"] == "the echo of bxsync's own write"


def test_it_exports_a_search_and_a_date_range_like_the_list(admin_client):
    now = timezone.now()
    entry(order_id="8", created_at=now - timedelta(days=3))
    entry(order_id="8", created_at=now - timedelta(hours=2))
    entry(order_id="9", created_at=now - timedelta(hours=1))

    since = (timezone.localtime(now) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    rows = csv_rows(admin_client.get(EXPORT, {"q": "order 8", "since": since}))

    assert [r["order id"] for r in rows] == ["8"]


def test_it_exports_in_chunks_by_keyset_without_losing_or_repeating_a_row(admin_client, monkeypatch):
    monkeypatch.setattr(audit_admin, "EXPORT_CHUNK", 3)
    moment = timezone.now() - timedelta(hours=1)
    for i in range(10):
        entry(order_id=str(i), created_at=moment + timedelta(seconds=i // 4))  # ties across chunk borders

    with CaptureQueriesContext(connection) as queries:
        rows = csv_rows(admin_client.get(EXPORT))

    assert sorted(int(r["order id"]) for r in rows) == list(range(10))
    reads = [q["sql"] for q in queries.captured_queries if 'FROM "statussync_auditentry"' in q["sql"]]
    assert all("LIMIT" in sql for sql in reads)
    assert len(reads) >= 4  # 10 rows, 3 at a time (plus the list's own page read)


def test_it_keeps_spreadsheet_formulas_out_of_the_export(admin_client):
    entry(order_id="1", reason=why("error", error='=HYPERLINK("http://evil")'))

    rows = csv_rows(admin_client.get(EXPORT))

    assert rows[0]["why"].startswith("'=")
    assert rows[0]["reason in English"].startswith("'=")


def test_it_never_exports_a_secret(sb, admin_client, settings):
    link_story(sb)
    secrets = [settings.BXSYNC_CMS_REST_URL, settings.BXSYNC_CRM_REST_URL]
    codes = [url.rstrip("/").rsplit("/", 1)[-1] for url in secrets]

    text = b"".join(admin_client.get(EXPORT).streaming_content).decode("utf-8-sig")

    assert len(text.splitlines()) == 7  # the header and six decisions
    for secret in [*secrets, *codes, settings.BXSYNC_CMS_APP_TOKEN, settings.BXSYNC_CRM_APP_TOKEN]:
        assert secret not in text


def test_it_lets_support_export_and_refuses_staff_without_the_audit(staff, support, client):
    entry(order_id="1")
    client.force_login(support)
    assert client.get(EXPORT).status_code == 200

    stranger = staff
    client.force_login(stranger)
    assert client.get(EXPORT).status_code == 403
    assert client.get(LIST).status_code == 403


def test_it_changes_nothing_for_anyone(admin_client):
    row = entry(order_id="1")

    assert admin_client.post(f"{LIST}{row.id}/change/", {"outcome": "applied"}).status_code == 403
    assert admin_client.post(f"{LIST}{row.id}/delete/").status_code == 403
    assert AuditEntry.objects.get(id=row.id).outcome == "no_change"


def test_it_never_lets_anyone_edit_the_audit(admin_client):
    entry = AuditEntry.objects.create(outcome="applied")

    assert admin_client.get("/admin/statussync/auditentry/add/").status_code == 403
    assert admin_client.post(f"/admin/statussync/auditentry/{entry.id}/delete/").status_code == 403

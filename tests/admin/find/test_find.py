"""Search anywhere: an order or deal id in the admin's header leads to that link's timeline."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone

from statussync.admin.audit import id_query
from statussync.models import Link, LinkState

pytestmark = pytest.mark.django_db

FIND = "/admin/find/"


def timeline_of(link: Link) -> str:
    return f"/admin/statussync/link/{link.id}/change/"


def test_it_leads_an_order_id_to_its_links_timeline(support_client):
    link = Link.objects.create(order_id="123", deal_id="456")

    assert support_client.get(FIND, {"q": "123"})["Location"] == timeline_of(link)
    assert support_client.get(FIND, {"q": " 456 "})["Location"] == timeline_of(link)
    assert support_client.get(FIND, {"q": "order #123"})["Location"] == timeline_of(link)
    assert support_client.get(FIND, {"q": "сделка 456"})["Location"] == timeline_of(link)


def test_it_prefers_the_active_link_then_the_latest_closed_one(support_client):
    now = timezone.now()
    Link.objects.create(order_id="7", deal_id="70", state=LinkState.CLOSED, closed_at=now)
    latest_closed = Link.objects.create(order_id="7", deal_id="71", state=LinkState.CLOSED, closed_at=now)
    assert support_client.get(FIND, {"q": "7"})["Location"] == timeline_of(latest_closed)

    active = Link.objects.create(order_id="7", deal_id="72")
    assert support_client.get(FIND, {"q": "7"})["Location"] == timeline_of(active)


def test_it_takes_the_order_and_names_the_deal_with_the_same_number(support_client):
    order = Link.objects.create(order_id="5", deal_id="900")
    deal = Link.objects.create(order_id="800", deal_id="5")

    response = support_client.get(FIND, {"q": "5"})

    assert response["Location"] == timeline_of(order)
    (message,) = [str(m) for m in get_messages(response.wsgi_request)]
    assert "5 is also a deal" in message
    assert timeline_of(deal) in message
    assert support_client.get(FIND, {"q": "deal 5"})["Location"] == timeline_of(deal)


def test_it_shows_the_audit_entries_of_an_id_without_a_link(support_client):
    response = support_client.get(FIND, {"q": "999"})

    assert response["Location"] == "/admin/statussync/auditentry/?q=999"
    assert "No order or deal 999 is linked" in str(next(iter(get_messages(response.wsgi_request))))


def test_it_searches_the_audit_for_any_other_text(support_client):
    assert (
        support_client.get(FIND, {"q": "PREPARATION"})["Location"]
        == "/admin/statussync/auditentry/?q=PREPARATION"
    )


def test_it_is_in_the_header_of_every_admin_page(support_client):
    html = support_client.get("/admin/statussync/auditentry/").content.decode()

    assert 'action="/admin/find/"' in html


def test_it_refuses_staff_who_may_see_neither_links_nor_the_audit(staff, client):
    client.force_login(staff)

    assert client.get(FIND, {"q": "1"}).status_code == 403
    assert 'action="/admin/find/"' not in client.get("/admin/").content.decode()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("123", (None, "123")),
        ("#123", (None, "123")),
        ("Order 123", ("order", "123")),
        ("deal#9", ("deal", "9")),
        ("заказ 5", ("order", "5")),
        ("12a", None),
        ("", None),
    ],
)
def test_it_reads_ids_the_way_people_type_them(text, expected):
    assert id_query(text) == expected

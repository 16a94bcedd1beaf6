"""The link's timeline: the support page that answers "why is this order in this status?"."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from statussync.admin.timeline import Cursor, DecisionStep, EventStep, link_timeline, reason_text
from statussync.models import AuditEntry, InboundEvent, Link, LinkState
from statussync.reasons import why
from tests.admin.story import link_story

pytestmark = pytest.mark.django_db


def _steps_in_page(html: str) -> list[str]:
    """Each step of the page as "event:<NAME>" or "decision:<outcome>", in the order shown."""
    steps = []
    for chunk in html.split('<li class="bx-step')[1:]:
        if 'data-kind="event"' in chunk.split(">", 1)[0]:
            steps.append("event:" + re.search(r'<code class="bx-code"[^>]*>(\w+)</code>', chunk)[1])
        else:
            steps.append("decision:" + re.search(r'data-outcome="(\w+)"', chunk)[1])
    return steps


def test_it_tells_the_story_in_order(support, sb, client):
    story = link_story(sb)
    client.force_login(support)

    response = client.get(f"/admin/statussync/link/{story.link.id}/change/")

    assert response.status_code == 200
    html = response.content.decode()
    assert _steps_in_page(html) == [
        "event:ONSALEORDERSAVED",
        "decision:no_change",  # first sight: both already agree
        "event:ONSALEORDERSAVED",
        "decision:applied",  # the shop moved the order: the deal follows
        "event:ONCRMDEALUPDATE",
        "decision:echo",  # that write, reported back
        "event:ONPAYMENTENTITYSAVED",
        "decision:payment_applied",
        "event:ONCRMDEALUPDATE",
        "decision:echo",
        "event:ONCRMDEALUPDATE",
        "decision:regression_blocked",
    ]


def test_it_says_why_in_plain_words_with_the_write_and_its_cost(support, sb, client):
    story = link_story(sb)
    client.force_login(support)

    html = client.get(f"/admin/statussync/link/{story.link.id}/change/").content.decode()

    assert "order status P: deal NEW → PREPARATION" in html  # the reason, rendered from its code
    assert "in the CRM: deal stage → PREPARATION" in html  # the write
    assert re.search(r"\d+ REST calls · done \d+ ms after it was asked for", html)
    assert "Echo recognised" in html
    assert "wrote nothing, so a change never bounces" in html
    # Terms a support person cannot know are explained where they appear.
    assert "bxsync calls this the base" in html
    assert "Bitrix sent it 2 times; handled once." in html  # the duplicate, counted


def test_it_makes_payments_and_blocked_regressions_stand_out(support, sb, client):
    story = link_story(sb)
    client.force_login(support)

    html = client.get(f"/admin/statussync/link/{story.link.id}/change/").content.decode()

    assert re.search(r'class="bx-step bx-payment"[^>]*data-outcome="payment_applied"', html)
    assert re.search(r'class="bx-step bx-payment-event"[^>]*data-kind="event"', html)
    assert re.search(r'class="bx-step bx-blocked"[^>]*data-outcome="regression_blocked"', html)
    assert f"Payment {story.payment_id} of order {story.order_id} was saved in the shop" in html
    # The summary answers the question first: where it stands and which decision explains it.
    summary = html[html.index("Where it stands") : html.index("Its story")]
    assert "Needs attention:" in summary
    assert "deal moved to NEW, which would put paid order back to N" in summary
    assert "order status P, paid; deal stage NEW" in summary


def test_it_changes_nothing_for_support(support, sb, client):
    story = link_story(sb)
    client.force_login(support)
    url = f"/admin/statussync/link/{story.link.id}/change/"

    html = client.get(url).content.decode()
    post = client.post(url, {"base_order_status": "F", "_save": "Save"})

    assert 'name="_save"' not in html
    assert "<form" not in html.split('id="content-main"')[1]
    assert post.status_code == 403
    assert Link.objects.get(id=story.link.id).base_order_status == "P"


def test_it_leaves_out_another_portals_entity_with_the_same_number(client, admin_user):
    # Order 7 in the shop and deal 7 in the CRM are different things.
    link = Link.objects.create(order_id="7", deal_id="70")
    InboundEvent.objects.create(side="cms", event="ONSALEORDERSAVED", entity_id="7", dedupe_key="a")
    InboundEvent.objects.create(side="crm", event="ONCRMDEALUPDATE", entity_id="7", dedupe_key="b")
    InboundEvent.objects.create(side="crm", event="ONCRMDEALUPDATE", entity_id="70", dedupe_key="c")

    page = link_timeline(link=link)

    assert [(s.side, s.event) for s in page.steps if isinstance(s, EventStep)] == [
        ("Shop", "ONSALEORDERSAVED"),
        ("CRM", "ONCRMDEALUPDATE"),
    ]


def test_it_keeps_an_earlier_links_story_out_of_a_new_one():
    old = Link.objects.create(order_id="8", deal_id="80", state=LinkState.CLOSED)
    AuditEntry.objects.create(outcome="applied", order_id="8", deal_id="80", link=old)
    InboundEvent.objects.create(side="cms", event="ONSALEORDERSAVED", entity_id="8", dedupe_key="old")
    AuditEntry.objects.create(outcome="closed", order_id="8", deal_id="80")  # the deal was deleted
    Link.objects.filter(id=old.id).update(closed_at=timezone.now())
    new = Link.objects.create(order_id="8", deal_id="81")
    InboundEvent.objects.create(side="cms", event="ONSALEORDERSAVED", entity_id="8", dedupe_key="new")
    AuditEntry.objects.create(outcome="no_change", order_id="8", deal_id="81", link=new)

    new_story = link_timeline(link=new).steps
    old_story = link_timeline(link=Link.objects.get(id=old.id)).steps

    assert [s.outcome for s in new_story if isinstance(s, DecisionStep)] == ["no_change"]
    assert len([s for s in new_story if isinstance(s, EventStep)]) == 1
    assert [s.outcome for s in old_story if isinstance(s, DecisionStep)] == ["applied", "closed"]


def _long_history(link: Link, n: int) -> None:
    start = timezone.now() - timedelta(days=1)
    for i in range(n):
        InboundEvent.objects.create(
            side="cms", event="ONSALEORDERSAVED", entity_id=link.order_id, dedupe_key=f"{link.id}:{i}"
        )
        AuditEntry.objects.create(
            outcome="no_change", order_id=link.order_id, deal_id=link.deal_id, link=link
        )
    # Spread them in time, two of each kind at each moment: a cursor must not lose or repeat rows on a tie.
    for i, event in enumerate(InboundEvent.objects.filter(entity_id=link.order_id).order_by("id")):
        InboundEvent.objects.filter(id=event.id).update(received_at=start + timedelta(seconds=i // 2))
    for i, entry in enumerate(AuditEntry.objects.filter(link=link).order_by("id")):
        AuditEntry.objects.filter(id=entry.id).update(created_at=start + timedelta(seconds=i // 2))


def test_it_pages_through_a_long_story_without_losing_or_repeating_a_step():
    link = Link.objects.create(order_id="9", deal_id="90")
    _long_history(link, 25)

    seen = []
    page = link_timeline(link=link, size=7)
    assert page.latest
    assert page.newer is None
    while True:
        seen = [(s.kind, s.id) for s in page.steps] + seen
        if page.older is None:
            break
        page = link_timeline(link=link, before=page.older, size=7)
    forward = []
    page = link_timeline(link=link, after=Cursor(timezone.now() - timedelta(days=2), 0, 0), size=7)
    while True:
        forward += [(s.kind, s.id) for s in page.steps]
        if page.newer is None:
            break
        page = link_timeline(link=link, after=page.newer, size=7)

    assert len(seen) == 50
    assert len(set(seen)) == 50
    assert forward == seen


def test_it_reads_a_bounded_number_of_rows_however_long_the_story(
    client, admin_user, django_assert_max_num_queries
):
    short, long = (
        Link.objects.create(order_id="10", deal_id="100"),
        Link.objects.create(order_id="11", deal_id="110"),
    )
    _long_history(short, 3)
    _long_history(long, 300)
    client.force_login(admin_user)

    for link in (short, long):
        with django_assert_max_num_queries(12) as queries:
            response = client.get(f"/admin/statussync/link/{link.id}/change/")
        assert response.status_code == 200
        assert all("LIMIT" in q["sql"] or "COUNT" not in q["sql"] for q in queries.captured_queries)
    assert response.content.decode().count('data-kind="') == 50  # one page
    assert "Earlier" in response.content.decode()


def test_it_survives_a_malformed_cursor(client, admin_user):
    link = Link.objects.create(order_id="12", deal_id="120")
    client.force_login(admin_user)

    assert client.get(f"/admin/statussync/link/{link.id}/change/?before=nonsense").status_code == 200
    assert Cursor.decode("1.2.3") is None
    cursor = Cursor(timezone.now(), 1, 42)
    assert Cursor.decode(cursor.encode()) == cursor


def test_it_names_statuses_and_stages_through_the_label_helpers(monkeypatch):
    monkeypatch.setattr("statussync.admin.timeline.status_label", lambda code: f"Paid ({code})")
    monkeypatch.setattr("statussync.admin.timeline.stage_label", lambda code: f"«{code}»")
    inner = why("deal_to_order", stage="WON", status="N", target="F")

    text = reason_text(reason=why("conflict_crm_wins", policy="latest", then=inner).as_json())

    assert text == "both sides changed; latest: the CRM wins; deal stage «WON»: order Paid (N) → Paid (F)"

"""Link repair against the sandbox: detection in the sync run → the "Link problems" list → the one-click
resolution → the next run links what belongs together. Also the sides as last read, and forced decisions."""

from __future__ import annotations

from django.utils import timezone

from statussync.jobs import job_request
from statussync.models import (
    AuditEntry,
    Job,
    JobKind,
    Link,
    LinkProblem,
    LinkProblemKind,
    LinkProblemState,
    LinkState,
)
from tests.support.sandbox import linked_pair, pay, run_worker

PROBLEMS = "/admin/statussync/linkproblem/"


def resolve(client, problem: LinkProblem, **data):
    return client.post(f"{PROBLEMS}{problem.id}/resolve/", data, follow=True)


def test_it_records_both_sides_as_the_run_left_them(sb):
    order_id, _deal_id = linked_pair(sb)
    sb.shop.set_order_status(int(order_id), "P")

    job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()

    link = Link.objects.get(order_id=order_id)
    assert (link.last_order_status, link.last_order_paid, link.last_deal_stage) == ("P", False, "PREPARATION")
    assert link.last_read_at is not None
    assert link.last_read_at <= timezone.now()


def test_it_flags_a_link_whose_deal_names_another_order_and_writes_nothing(sb, manager_client):
    order_id, deal_id = linked_pair(sb)
    other_order = str(sb.shop.create_order(price=50)["id"])
    sb.crm.set_deal_order(int(deal_id), other_order)  # a manager re-points the deal
    sb.shop.set_order_status(int(order_id), "P")

    job_request(kind=JobKind.DEAL, entity_id=deal_id)
    job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()

    assert sb.rest_writes() == 0
    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "NEW"
    link = Link.objects.get(order_id=order_id)
    assert link.state == LinkState.ACTIVE
    assert link.needs_attention
    assert link.attention["code"] == "deal_names_other_order"
    problem = LinkProblem.objects.get()
    assert (problem.kind, problem.key, problem.order_id, problem.named_order, problem.state) == (
        LinkProblemKind.DEAL_ORDER_CHANGED,
        deal_id,
        order_id,
        other_order,
        LinkProblemState.OPEN,
    )
    assert AuditEntry.objects.filter(order_id=order_id, outcome="ambiguous").exists()

    # Seen again: the same problem, counted, not a second one.
    job_request(kind=JobKind.DEAL, entity_id=deal_id)
    run_worker()
    assert LinkProblem.objects.get().times_seen == 2

    listing = manager_client.get(PROBLEMS).content.decode()
    assert f"Deal {deal_id} now names order {other_order}, but is linked to order {order_id}." in listing
    assert "Close this link and link the deal to the order it names" in listing

    done = resolve(manager_client, problem, close="1")

    assert "is closed; bxsync links each of them to what names it now" in done.content.decode()
    link.refresh_from_db()
    assert (link.state, link.closed_by) == (LinkState.CLOSED, "alice")
    assert link.closure["code"] == "problem_link_closed"
    problem.refresh_from_db()
    assert (problem.state, problem.resolved_by) == (LinkProblemState.RESOLVED, "alice")

    run_worker()

    relinked = Link.objects.get(deal_id=deal_id, state=LinkState.ACTIVE)
    assert relinked.order_id == other_order
    assert not Link.objects.filter(order_id=order_id, state=LinkState.ACTIVE).exists()
    assert AuditEntry.objects.filter(order_id=order_id, outcome="unlinked").exists()


def test_it_settles_the_problem_when_the_deal_names_its_order_again(sb):
    order_id, deal_id = linked_pair(sb)
    sb.crm.set_deal_order(int(deal_id), None)
    job_request(kind=JobKind.DEAL, entity_id=deal_id)
    run_worker()
    assert Link.objects.get(order_id=order_id).attention["code"] == "deal_names_no_order"

    sb.crm.set_deal_order(int(deal_id), order_id)  # the manager undoes the slip
    job_request(kind=JobKind.DEAL, entity_id=deal_id)
    run_worker()

    link = Link.objects.get(order_id=order_id)
    assert not link.needs_attention
    problem = LinkProblem.objects.get()
    assert (problem.state, problem.resolved_by, problem.resolution["code"]) == (
        LinkProblemState.RESOLVED,
        "",
        "problem_gone",
    )


def test_it_lists_two_deals_naming_one_order_and_links_the_one_a_manager_chooses(sb, manager_client):
    [(order_id, first)] = sb.seed(1, pipeline_share=0, orders_without_deal=0, deals_without_order=0)
    second = sb.crm.create_deal(title="duplicate", category_id=0, stage_id="NEW", order_id=order_id)["ID"]
    order_id, first, second = str(order_id), str(first), str(second)
    sb.advance_clock(60)
    sb.shop.set_order_status(int(order_id), "P")  # later than either deal's stage: on first sight it wins

    job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()

    assert not Link.objects.exists()
    assert sb.rest_writes() == 0
    problem = LinkProblem.objects.get()
    assert (problem.kind, problem.order_id, problem.deals) == (
        LinkProblemKind.SEVERAL_DEALS,
        order_id,
        sorted([first, second]),
    )
    listing = manager_client.get(PROBLEMS).content.decode()
    assert f"Link order {order_id} to deal {second}" in listing

    done = resolve(manager_client, problem, deal=second)

    assert f"Order {order_id} is linked to deal {second} now" in done.content.decode()
    run_worker()
    link = Link.objects.get(order_id=order_id, state=LinkState.ACTIVE)
    assert link.deal_id == second
    assert sb.crm.get_deal(int(second))["STAGE_ID"] == "PREPARATION"  # synced as a pair seen first
    assert sb.crm.get_deal(int(first))["STAGE_ID"] == "NEW"

    # The other deal still names the order: the manager's choice stands, no new problem.
    sb.crm.edit_deal(int(first), {"TITLE": "still naming it"})
    job_request(kind=JobKind.DEAL, entity_id=first)
    run_worker()
    assert LinkProblem.objects.filter(state=LinkProblemState.OPEN).count() == 0
    assert Link.objects.get(order_id=order_id, state=LinkState.ACTIVE).deal_id == second


def test_it_refuses_a_deal_that_is_not_among_the_problems_deals(sb, manager_client):
    problem = LinkProblem.objects.create(
        kind=LinkProblemKind.SEVERAL_DEALS, key="5", order_id="5", deals=["105", "106"]
    )

    done = resolve(manager_client, problem, deal="999")

    assert "Nothing was changed" in done.content.decode()
    assert not Link.objects.exists()
    assert not Job.objects.exists()


def test_it_lets_support_see_link_problems_but_not_resolve_them(sb, client, support):
    client.force_login(support)
    problem = LinkProblem.objects.create(
        kind=LinkProblemKind.SEVERAL_DEALS, key="5", order_id="5", deals=["105", "106"]
    )

    listing = client.get(PROBLEMS)

    assert listing.status_code == 200
    assert "Link order 5 to deal 105" not in listing.content.decode()
    assert client.post(f"{PROBLEMS}{problem.id}/resolve/", {"deal": "105"}).status_code == 403
    assert LinkProblem.objects.get().state == LinkProblemState.OPEN


def test_it_lists_link_problems_in_a_bounded_number_of_queries(
    sb, manager_client, django_assert_max_num_queries
):
    for n in range(40):
        LinkProblem.objects.create(
            kind=LinkProblemKind.SEVERAL_DEALS if n % 2 else LinkProblemKind.DEAL_ORDER_CHANGED,
            key=str(n),
            order_id=str(n),
            deal_id=str(100 + n),
            deals=[str(100 + n), str(200 + n)],
            named_order="77" if n % 4 == 0 else "",
        )

    with django_assert_max_num_queries(10):
        response = manager_client.get(PROBLEMS)

    assert response.content.decode().count("bxsync-resolve") == 20 * 2 + 20


def test_it_takes_the_shops_value_to_repair_a_blocked_regression(sb, manager_client):
    order_id, deal_id = linked_pair(sb)
    job_request(kind=JobKind.PAYMENT, entity_id=pay(sb, order_id))
    run_worker("payments")
    sb.crm.move_deal(int(deal_id), "NEW")
    job_request(kind=JobKind.DEAL, entity_id=deal_id)
    run_worker()
    link = Link.objects.get(order_id=order_id)
    assert link.needs_attention
    paid_stage = sb.crm.get_deal(int(deal_id))["STAGE_ID"]
    assert paid_stage == "NEW"

    manager_client.post(
        "/admin/statussync/link/",
        {"action": "take_shop", "index": 0, "_selected_action": [link.id], "confirm": "yes"},
    )
    run_worker()

    order_status = sb.shop.get_order(int(order_id))["statusId"]
    expected = {"N": "NEW", "P": "PREPARATION", "F": "WON"}[order_status]
    assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == expected
    link.refresh_from_db()
    assert not link.needs_attention
    decisions = AuditEntry.objects.filter(order_id=order_id, origin="admin").exclude(outcome="received")
    decision = decisions.first()
    assert decision.reason["code"] == "override_shop"

"""The links list: both sides as last read, the state and why, portal links, search, filters, and the actions
with their confirmation pages, messages and permissions."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from statussync import bulk
from statussync.admin import labels
from statussync.admin import links as links_admin
from statussync.bulk import bulk_operation_run
from statussync.models import (
    AuditEntry,
    BulkOperation,
    BulkState,
    Job,
    JobKind,
    JobState,
    Link,
    LinkState,
    Pipeline,
)
from statussync.reasons import why
from tests.support.roles import SUPPORT, user_make
from tests.support.webhooks import CMS_URL, CRM_URL

pytestmark = pytest.mark.django_db

LINKS = "/admin/statussync/link/"


def link_make(order_id: str, deal_id: str, **fields) -> Link:
    defaults = {
        "pipeline_id": 0,
        "base_order_status": "P",
        "base_deal_stage": "PREPARATION",
        "base_at": timezone.now(),
        "last_order_status": "P",
        "last_deal_stage": "PREPARATION",
        "last_read_at": timezone.now(),
    }
    return Link.objects.create(order_id=order_id, deal_id=deal_id, **{**defaults, **fields})


def post_action(client, action: str, links: list[Link], *, confirm: bool, url: str = LINKS, **extra):
    data = {"action": action, "index": 0, "_selected_action": [link.id for link in links], **extra}
    if confirm:
        data["confirm"] = "yes"
    return client.post(url, data, follow=confirm)


def text(response) -> str:
    return html.unescape(re.sub(r"\s+", " ", response.content.decode()))


# --- The list ----------------------------------------------------------------------------------------------


def test_it_shows_both_sides_as_last_read_the_base_and_the_state(manager_client, portals):
    link_make("11", "111", last_order_status="F", last_order_paid=True, last_deal_stage="PREPARATION")
    regression = why("regression", stage="NEW", target="N")
    link_make(
        "12", "112", needs_attention=True, attention=regression.as_json(), attention_reason=str(regression)
    )

    page = text(manager_client.get(LINKS))

    assert "In sync" in page
    assert "Regression blocked" in page
    assert "deal moved to NEW, which would put paid order back to N" in page
    assert "P ↔ PREPARATION" in page
    assert ">paid<" in page


def test_it_links_the_order_and_the_deal_to_their_portals_without_the_webhook_secret(manager_client, portals):
    link_make("11", "111")

    page = manager_client.get(LINKS).content.decode()

    assert 'href="https://shop.example.ru/bitrix/admin/sale_order_view.php?ID=11"' in page
    assert 'href="https://crm.example.ru/crm/deal/details/111/"' in page
    assert "cmssecretcode123" not in page
    assert "crmsecretcode456" not in page
    assert CMS_URL not in page
    assert CRM_URL not in page


def test_it_builds_portal_links_from_the_host_only():
    assert labels.portal_root("https://user:pw@Shop.Example.ru:8443/rest/1/code/") == (
        "https://shop.example.ru:8443"
    )
    assert labels.portal_root("") == ""
    assert labels.portal_root("javascript:alert(1)") == ""


@pytest.mark.parametrize(
    ("status", "expected", "hidden"),
    [
        ("regression", "12", "13"),
        ("conflict", "13", "12"),
        ("unmapped", "14", "12"),
        ("ambiguous", "15", "12"),
        ("error", "16", "12"),
        ("closed", "17", "12"),
        ("in_sync", "11", "12"),
    ],
)
def test_it_filters_links_by_state(manager_client, status, expected, hidden):
    def flagged(order_id, reason):
        return link_make(order_id, f"1{order_id}", needs_attention=True, attention=reason.as_json())

    link_make("11", "111")
    flagged("12", why("regression", stage="NEW", target="N"))
    flagged("13", why("conflict_manual", status="F", stage="LOSE"))
    flagged("14", why("stage_unmapped", stage="EXECUTING", pipeline=0))
    flagged("15", why("deal_names_other_order", deal="115", order="15", named="99", field="UF_CRM_ORDER_ID"))
    link_make("16", "116")
    Job.objects.create(kind=JobKind.DEAL, entity_id="116", state=JobState.DEAD, not_before=timezone.now())
    link_make("17", "117", state=LinkState.CLOSED)

    page = text(manager_client.get(LINKS, {"status": status}))

    assert f">{expected}<" in page
    assert f">{hidden}<" not in page


def test_it_finds_a_link_by_its_exact_order_or_deal_id(manager_client):
    link_make("11", "111")
    link_make("110", "222")

    by_order = text(manager_client.get(LINKS, {"q": "11"}))
    by_deal = text(manager_client.get(LINKS, {"q": "222"}))

    assert ">11<" in by_order
    assert ">110<" not in by_order
    assert ">110<" in by_deal
    assert ">11<" not in by_deal


def test_it_lists_dozens_of_links_in_a_bounded_number_of_queries(
    manager_client, django_assert_max_num_queries
):
    Pipeline.objects.create(pipeline_id=0)
    for n in range(60):
        reason = why("conflict_manual", status="F", stage="LOSE")
        link_make(str(n), str(1000 + n), needs_attention=n % 3 == 0, attention=reason.as_json())
        if n % 7 == 0:
            Job.objects.create(
                kind=JobKind.ORDER, entity_id=str(n), state=JobState.DEAD, not_before=timezone.now()
            )

    with django_assert_max_num_queries(10):
        response = manager_client.get(LINKS)

    assert response.status_code == 200
    assert text(response).count("bxsync-state ") == 60


# --- Actions -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "question", "wins"),
    [
        ("resync", "Resync 2 links?", ""),
        ("take_shop", "Make the deals follow their orders for 2 links?", "cms"),
        ("take_crm", "Make the orders follow their deals for 2 links?", "crm"),
    ],
)
def test_it_asks_before_it_queues_a_sync_of_the_selected_links(manager_client, action, question, wins):
    links = [link_make("5", "105"), link_make("6", "106")]

    confirmation = post_action(manager_client, action, links, confirm=False)

    assert confirmation.status_code == 200
    page = text(confirmation)
    assert question in page
    assert "order 5 ↔ deal 105" in page
    assert 'name="confirm" value="yes"' in page
    assert not Job.objects.exists()

    done = post_action(manager_client, action, links, confirm=True)

    assert "Queued 2 links" in text(done)
    jobs = Job.objects.order_by("entity_id")
    assert [(j.kind, j.entity_id, j.origin, j.wins) for j in jobs] == [
        (JobKind.ORDER, "5", "admin", wins),
        (JobKind.ORDER, "6", "admin", wins),
    ]
    request = AuditEntry.objects.filter(order_id="5").get()
    assert (request.outcome, request.origin, request.link_id) == ("received", "admin", links[0].id)
    assert request.message.startswith("alice asked")


def test_it_says_what_taking_a_side_means_before_doing_it(manager_client):
    link = link_make("5", "105")

    page = text(post_action(manager_client, "take_shop", [link], confirm=False))

    assert "Each deal is moved to the stage mapped to its order's status now" in page
    assert "A payment still comes first" in page
    assert "Yes, take the shop's value" in page


def test_it_closes_a_link_and_queues_its_order_to_rediscover_it(manager_client):
    link = link_make("5", "105")

    confirmation = post_action(manager_client, "rediscover", [link], confirm=False)
    assert "Close 1 link and find the order's deal again?" in text(confirmation)
    assert Link.objects.get().state == LinkState.ACTIVE

    done = post_action(manager_client, "rediscover", [link], confirm=True)

    assert "Closed 1 link; bxsync is looking for its order's deal again." in text(done)
    link.refresh_from_db()
    assert link.state == LinkState.CLOSED
    assert (link.closed_by, link.closure["code"]) == ("alice", "admin_rediscover")
    assert link.close_reason == "alice closed the link so that the order's deal is found again"
    job = Job.objects.get()
    assert (job.kind, job.entity_id, job.origin) == (JobKind.ORDER, "5", "admin")


def test_it_leaves_closed_links_alone_and_says_so(manager_client):
    active, closed = link_make("5", "105"), link_make("6", "106", state=LinkState.CLOSED)

    page = text(post_action(manager_client, "resync", [active, closed], confirm=True))

    assert "Queued 1 link for resync" in page
    assert "1 closed link was left as it is." in page
    assert list(Job.objects.values_list("entity_id", flat=True)) == ["5"]


def test_it_acts_on_every_filtered_link_when_all_are_selected(manager_client):
    flagged = why("conflict_manual", status="F", stage="LOSE").as_json()
    conflicted = [link_make(str(n), str(100 + n), needs_attention=True, attention=flagged) for n in range(3)]
    link_make("50", "150")

    post_action(
        manager_client,
        "resync",
        conflicted[:1],
        confirm=True,
        url=f"{LINKS}?status=conflict",
        select_across="1",
    )

    assert sorted(Job.objects.values_list("entity_id", flat=True)) == ["0", "1", "2"]


def test_it_runs_a_large_selection_in_the_background_with_a_progress_page(manager_client, monkeypatch):
    monkeypatch.setattr(links_admin, "INLINE_LIMIT", 3)
    monkeypatch.setattr(bulk, "CHUNK", 2)
    links = [link_make(str(n), str(100 + n)) for n in range(5)]

    confirmation = post_action(manager_client, "resync", links, confirm=False)
    assert "handled in the background" in text(confirmation)

    started = post_action(manager_client, "resync", links, confirm=True)

    operation = BulkOperation.objects.get()
    assert started.redirect_chain[-1][0] == f"/admin/statussync/bulkoperation/{operation.id}/change/"
    page = text(started)
    assert "Started in the background: resync links on 5 links." in page
    assert '<meta http-equiv="refresh"' in page  # it refreshes itself while it runs
    assert (operation.state, operation.total, operation.created_by.username) == (BulkState.QUEUED, 5, "alice")
    assert not Job.objects.exists()  # nothing done within the request

    bulk_operation_run(operation_id=operation.id)

    operation.refresh_from_db()
    assert (operation.state, operation.done) == (BulkState.DONE, 5)
    assert Job.objects.count() == 5
    progress = text(manager_client.get(f"/admin/statussync/bulkoperation/{operation.id}/change/"))
    assert "5 of 5 links handled" in progress
    assert '<meta http-equiv="refresh"' not in progress


def test_it_resumes_a_background_operation_where_it_stopped(manager_client):
    links = [link_make(str(n), str(100 + n)) for n in range(5)]
    operation = BulkOperation.objects.create(
        action="resync", link_ids=[link.id for link in links], total=5, done=3, state=BulkState.RUNNING
    )

    bulk_operation_run(operation_id=operation.id)

    assert sorted(Job.objects.values_list("entity_id", flat=True)) == ["3", "4"]
    operation.refresh_from_db()
    assert (operation.state, operation.done) == (BulkState.DONE, 5)


def test_it_lets_one_task_at_a_time_work_through_a_background_operation(manager_client, monkeypatch):
    """Finding 10: the sweeper restarted an operation still queued behind busy workers, and both tasks
    handled the same chunks (done + skipped above the total, every link's audit entry twice)."""
    monkeypatch.setattr(bulk, "CHUNK", 2)
    links = [link_make(str(n), str(100 + n)) for n in range(5)]
    operation = BulkOperation.objects.create(
        action="resync", link_ids=[link.id for link in links], total=5, state=BulkState.QUEUED
    )
    real = bulk.links_act
    second = []

    def first_chunk_meets_a_second_task(**kwargs):
        if not second:  # the sweeper's task starts while the first one is on its first chunk
            second.append(True)
            bulk_operation_run(operation_id=operation.id)
        return real(**kwargs)

    monkeypatch.setattr(bulk, "links_act", first_chunk_meets_a_second_task)
    bulk_operation_run(operation_id=operation.id)

    operation.refresh_from_db()
    assert (operation.state, operation.done, operation.skipped) == (BulkState.DONE, 5, 0)
    assert AuditEntry.objects.count() == 5


def test_it_has_a_task_that_lost_its_operation_stop_before_its_next_chunk(manager_client, monkeypatch):
    """A task whose lease ran out (it stalled) while the sweeper's task took the operation over stops."""
    monkeypatch.setattr(bulk, "CHUNK", 2)
    links = [link_make(str(n), str(100 + n)) for n in range(4)]
    operation = BulkOperation.objects.create(
        action="resync", link_ids=[link.id for link in links], total=4, state=BulkState.QUEUED
    )
    real = bulk.links_act

    def taken_over_after_the_first_chunk(**kwargs):
        acted = real(**kwargs)
        BulkOperation.objects.filter(id=operation.id).update(
            claim_token="another task", lease_until=timezone.now() + timedelta(seconds=60)
        )
        return acted

    monkeypatch.setattr(bulk, "links_act", taken_over_after_the_first_chunk)
    bulk_operation_run(operation_id=operation.id)

    operation.refresh_from_db()
    # The chunk it held its claim for stands; the next one is the other task's.
    assert (operation.state, operation.done, operation.claim_token) == (BulkState.RUNNING, 2, "another task")
    assert AuditEntry.objects.count() == 2


def test_it_lets_support_see_links_but_change_nothing(support_client):
    link = link_make("5", "105")

    listing = support_client.get(LINKS)

    assert listing.status_code == 200
    assert 'name="action"' not in listing.content.decode()
    for action in ("resync", "take_shop", "take_crm", "rediscover"):
        assert post_action(support_client, action, [link], confirm=False).status_code == 403
        assert post_action(support_client, action, [link], confirm=True).status_code == 403
    assert not Job.objects.exists()
    assert Link.objects.get().state == LinkState.ACTIVE


def test_it_offers_each_action_only_to_whom_it_is_allowed(client):
    from django.contrib.auth.models import Permission

    user = user_make("rita", groups=(SUPPORT,))
    user.user_permissions.add(Permission.objects.get(codename="resync_link"))
    client.force_login(user)
    link = link_make("5", "105")

    page = client.get(LINKS).content.decode()

    assert 'value="resync"' in page
    assert 'value="take_shop"' in page
    assert 'value="rediscover"' not in page  # that one needs statussync.repair_link
    assert post_action(client, "rediscover", [link], confirm=True).status_code == 403


def test_it_has_the_sweeper_restart_a_background_operation_that_lost_its_task():
    from datetime import timedelta

    from statussync import tasks
    from tests.support.broker import queued_tasks

    stalled = BulkOperation.objects.create(action="resync", link_ids=[1], total=1, state=BulkState.RUNNING)
    BulkOperation.objects.create(action="resync", link_ids=[2], total=1, state=BulkState.QUEUED)  # just asked
    long_ago = timezone.now() - timedelta(minutes=5)
    BulkOperation.objects.filter(id=stalled.id).update(updated_at=long_ago)

    report = tasks.sweep()

    assert report["bulk_resumed"] == 1
    bulk_tasks = [task["args"] for task in queued_tasks() if task["func"].endswith("bulk_run")]
    assert bulk_tasks == [(stalled.id,)]


def test_it_keeps_a_managers_choice_when_a_retried_job_is_superseded_by_a_new_event():
    from statussync.jobs import job_request, job_retry, jobs_claim

    job_request(kind=JobKind.ORDER, entity_id="5", origin="admin", wins="cms")
    [claimed] = jobs_claim(queue="default", limit=10)
    job_request(kind=JobKind.ORDER, entity_id="5")  # an event while the forced run is in flight

    job_retry(job=claimed, error="portal busy")

    assert Job.objects.get(state=JobState.PENDING).wins == "cms"


def test_it_queues_a_resync_of_the_selected_links(admin_client):
    link = Link.objects.create(order_id="5", deal_id="105")

    response = admin_client.post(
        "/admin/statussync/link/",
        {"action": "resync", "index": 0, "_selected_action": [link.id], "confirm": "yes"},
        follow=True,
    )

    assert "Queued 1 link for resync" in response.content.decode()
    job = Job.objects.get()
    assert (job.kind, job.entity_id, job.origin, job.state) == (JobKind.ORDER, "5", "admin", JobState.PENDING)

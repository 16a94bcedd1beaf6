"""The dead-letter list (replay or discard, kept for the audit) and the unmapped values with "add a rule"."""

from __future__ import annotations

import html
import re

import pytest
from django.utils import timezone

from statussync import bulk
from statussync.admin import work as work_admin
from statussync.bulk import bulk_operation_run
from statussync.models import (
    AuditEntry,
    BulkOperation,
    BulkState,
    Job,
    JobKind,
    JobState,
    Link,
    Pipeline,
    StatusRule,
    UnmappedValue,
)

pytestmark = pytest.mark.django_db

LETTERS = "/admin/statussync/deadletter/"
UNMAPPED = "/admin/statussync/unmappedvalue/"


def text(response) -> str:
    return html.unescape(re.sub(r"\s+", " ", response.content.decode()))


ACCESS_DENIED = "PermanentError: crm.deal.update: ACCESS_DENIED"


def dead(entity_id: str, kind: str = JobKind.DEAL, error: str = ACCESS_DENIED):
    return Job.objects.create(
        kind=kind,
        entity_id=entity_id,
        state=JobState.DEAD,
        attempts=8,
        last_error=error,
        not_before=timezone.now(),
        finished_at=timezone.now(),
    )


def post_action(client, action: str, jobs, *, confirm: bool, **extra):
    data = {"action": action, "index": 0, "_selected_action": [job.id for job in jobs], **extra}
    if confirm:
        data["confirm"] = "yes"
    return client.post(LETTERS, data, follow=confirm)


# --- Dead letters ------------------------------------------------------------------------------------------


def test_it_lists_failed_work_with_its_error_and_attempts(manager_client):
    dead("9")
    Job.objects.create(kind=JobKind.DEAL, entity_id="10", state=JobState.DONE, not_before=timezone.now())

    page = text(manager_client.get(LETTERS))

    assert "PermanentError: crm.deal.update: ACCESS_DENIED" in page
    assert ">8<" in page  # attempts
    assert "deal 9" in page
    assert "deal 10" not in page


def test_it_finds_the_failed_work_of_a_links_deal_by_its_order_id(manager_client):
    Link.objects.create(order_id="5", deal_id="9")
    dead("9")
    dead("77")

    page = text(manager_client.get(LETTERS, {"q": "5"}))

    assert "deal 9" in page
    assert "deal 77" not in page


def test_it_asks_before_it_replays_failed_work(manager_client):
    letters = [dead("9"), dead("10", kind=JobKind.ORDER)]

    confirmation = text(post_action(manager_client, "replay", letters, confirm=False))
    assert "Replay 2 failed jobs?" in confirmation
    assert Job.objects.filter(state=JobState.PENDING).count() == 0

    done = text(post_action(manager_client, "replay", letters, confirm=True))

    assert "Queued 2 failed jobs again; they run in a moment." in done
    fresh = Job.objects.filter(state=JobState.PENDING).order_by("entity_id")
    assert [(j.entity_id, j.attempts, j.origin) for j in fresh] == [("10", 0, "admin"), ("9", 0, "admin")]


def test_it_discards_failed_work_but_keeps_it_for_the_audit(manager_client):
    Link.objects.create(order_id="5", deal_id="9")
    letters = [dead("9"), dead("11")]

    confirmation = text(post_action(manager_client, "discard", letters, confirm=False))
    assert "Discard 2 failed jobs?" in confirmation
    assert "the audit records who discarded it" in confirmation

    done = text(post_action(manager_client, "discard", letters, confirm=True))

    assert "Discarded 2 failed jobs" in done
    assert set(Job.objects.values_list("state", flat=True)) == {JobState.DISCARDED}
    entry = AuditEntry.objects.get(deal_id="9")
    assert (entry.order_id, entry.origin, entry.reason["code"]) == ("5", "admin", "job_discarded")
    assert entry.message.startswith("alice discarded the failed work on deal 9: PermanentError")
    assert ">9<" not in text(manager_client.get(LETTERS)).split("<tbody>")[-1]
    assert "deal 9" in text(manager_client.get(LETTERS, {"letter_state": "discarded"}))


def test_it_lets_support_see_failed_work_but_not_replay_or_discard_it(support_client):
    letter = dead("9")

    assert support_client.get(LETTERS).status_code == 200
    assert post_action(support_client, "replay", [letter], confirm=True).status_code == 403
    assert post_action(support_client, "discard", [letter], confirm=True).status_code == 403
    assert Job.objects.get().state == JobState.DEAD


def test_it_lists_dozens_of_dead_letters_in_bounded_queries(manager_client, django_assert_max_num_queries):
    for n in range(50):
        dead(str(n), kind=JobKind.ORDER if n % 2 else JobKind.DEAL)

    with django_assert_max_num_queries(10):
        response = manager_client.get(LETTERS)

    assert text(response).count("ACCESS_DENIED") >= 50


# --- Unmapped values ---------------------------------------------------------------------------------------


def test_it_offers_to_add_a_rule_for_an_unmapped_value_in_the_pipelines_editor(manager_client):
    pipeline = Pipeline.objects.create(pipeline_id=0)
    UnmappedValue.objects.create(side="cms", pipeline_id=0, value="D", times_seen=4)
    UnmappedValue.objects.create(side="crm", pipeline_id=0, value="EXECUTING")
    UnmappedValue.objects.create(side="crm", pipeline_id=3, value="C3:NEW")

    page = manager_client.get(UNMAPPED).content.decode()

    assert f'href="/admin/statussync/pipeline/{pipeline.pk}/change/?add_rule_status=D"' in page
    assert f'href="/admin/statussync/pipeline/{pipeline.pk}/change/?add_rule_stage=EXECUTING"' in page
    assert 'href="/admin/statussync/pipeline/add/?pipeline_id=3&amp;add_rule_stage=C3%3ANEW"' in page
    assert "4 times" in page


def test_it_says_when_a_rule_was_added_since(manager_client):
    pipeline = Pipeline.objects.create(pipeline_id=0)
    StatusRule.objects.create(pipeline=pipeline, order_status="D", deal_stage="EXECUTING", direction="to_crm")
    UnmappedValue.objects.create(side="cms", pipeline_id=0, value="D")
    UnmappedValue.objects.create(side="crm", pipeline_id=0, value="EXECUTING")  # to_crm only: still unmapped

    page = manager_client.get(UNMAPPED).content.decode()

    assert page.count("Rule added") == 1
    assert "add_rule_stage=EXECUTING" in page


def test_it_shows_support_the_unmapped_values_without_the_editor(support_client):
    Pipeline.objects.create(pipeline_id=0)
    UnmappedValue.objects.create(side="cms", pipeline_id=0, value="D")

    page = support_client.get(UNMAPPED).content.decode()

    assert ">D<" in page
    assert "add_rule_status" not in page


def test_it_lists_dozens_of_unmapped_values_in_bounded_queries(manager_client, django_assert_max_num_queries):
    for pipeline_id in range(3):
        Pipeline.objects.create(pipeline_id=pipeline_id)
    for n in range(45):
        UnmappedValue.objects.create(side="cms" if n % 2 else "crm", pipeline_id=n % 4, value=f"V{n}")

    with django_assert_max_num_queries(10):
        response = manager_client.get(UNMAPPED)

    assert response.content.decode().count("Add a rule for this value") == 45


@pytest.mark.parametrize(("action", "state"), [("replay", JobState.DONE), ("discard", JobState.DISCARDED)])
def test_it_replays_or_discards_thousands_of_dead_letters_in_the_background(
    manager_client, monkeypatch, action, state
):
    """Thousands of dead letters in one transaction would hold SQLite's write lock while webhooks time out:
    above the inline limit the work goes to a background operation, a chunk per transaction, with progress."""
    monkeypatch.setattr(work_admin, "INLINE_LIMIT", 3)
    monkeypatch.setattr(bulk, "CHUNK", 2)
    letters = [dead(str(n)) for n in range(5)]

    started = post_action(manager_client, action, letters, confirm=True)

    operation = BulkOperation.objects.get()
    assert started.redirect_chain[-1][0] == f"/admin/statussync/bulkoperation/{operation.id}/change/"
    assert (operation.action, operation.total, operation.state) == (action, 5, BulkState.QUEUED)
    assert set(Job.objects.values_list("state", flat=True)) == {JobState.DEAD}  # nothing done in the request

    bulk_operation_run(operation_id=operation.id)

    operation.refresh_from_db()
    assert (operation.state, operation.done) == (BulkState.DONE, 5)
    assert set(Job.objects.filter(id__in=[j.id for j in letters]).values_list("state", flat=True)) == {state}
    progress = text(manager_client.get(f"/admin/statussync/bulkoperation/{operation.id}/change/"))
    assert "5 of 5 failed jobs handled" in progress


def test_it_replays_a_dead_letter_job(admin_client):
    dead = Job.objects.create(
        kind=JobKind.DEAL, entity_id="9", state=JobState.DEAD, attempts=8, not_before=timezone.now()
    )

    response = admin_client.post(
        "/admin/statussync/deadletter/",
        {"action": "replay", "index": 0, "_selected_action": [dead.id], "confirm": "yes"},
        follow=True,
    )

    assert "Queued 1 failed job again" in response.content.decode()
    fresh = Job.objects.get(state=JobState.PENDING)
    assert (fresh.entity_id, fresh.attempts) == ("9", 0)
    assert Job.objects.get(id=dead.id).state == JobState.DONE

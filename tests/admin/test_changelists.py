"""The first admin: watching sync, resyncing links and replaying dead letters."""

from __future__ import annotations

import pytest
from django.utils import timezone

from statussync.models import AuditEntry, Job, JobKind, JobState, Link

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "page",
    [
        "link",
        "auditentry",
        "job",
        "deadletter",
        "inboundevent",
        "unmappedvalue",
        "linkproblem",
        "bulkoperation",
        "pipeline",
        "mappingchange",
        "catalogstatus",
        "catalogstage",
    ],
)
def test_it_shows_each_changelist(admin_client, page):
    Link.objects.create(order_id="1", deal_id="101", base_at=timezone.now())
    AuditEntry.objects.create(
        outcome="applied", order_id="1", deal_id="101", message="order P: deal → PREPARATION"
    )

    assert admin_client.get(f"/admin/statussync/{page}/").status_code == 200


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


def test_it_never_lets_anyone_edit_the_audit(admin_client):
    entry = AuditEntry.objects.create(outcome="applied")

    assert admin_client.get("/admin/statussync/auditentry/add/").status_code == 403
    assert admin_client.post(f"/admin/statussync/auditentry/{entry.id}/delete/").status_code == 403

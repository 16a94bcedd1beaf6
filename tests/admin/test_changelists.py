"""Every list page of bxsync opens for a superuser, with rows in it."""

from __future__ import annotations

import pytest
from django.utils import timezone

from statussync.models import AuditEntry, Link

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

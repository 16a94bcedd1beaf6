"""Every list page of bxsync opens for a superuser, with rows in it."""

from __future__ import annotations

import pytest
from django.utils import timezone

from statussync.models import AuditEntry, CatalogStage, Link, Pipeline, UnmappedValue

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


@pytest.mark.parametrize(
    ("page", "parameter"),
    [("link", "pipeline"), ("catalogstage", "pipeline_id"), ("unmappedvalue", "pipeline")],
)
def test_it_filters_a_list_by_pipeline_and_lists_nothing_for_a_pipeline_that_is_no_number(
    admin_client, page, parameter
):
    now = timezone.now()
    for pipeline in (0, 1):
        Link.objects.create(
            order_id=f"{pipeline + 1}", deal_id=f"{pipeline + 101}", base_at=now, pipeline_id=pipeline
        )
        CatalogStage.objects.create(
            pipeline_id=pipeline, code=f"C{pipeline}:NEW", name="New", refreshed_at=now
        )
        UnmappedValue.objects.create(side="crm", pipeline_id=pipeline, value=f"C{pipeline}:LOST")
        Pipeline.objects.create(pipeline_id=pipeline)  # the links' filter offers the mapping's pipelines

    def listed(value: str) -> list[int]:
        response = admin_client.get(f"/admin/statussync/{page}/?{parameter}={value}")
        assert response.status_code == 200
        return [row.pipeline_id for row in response.context["cl"].result_list]

    assert listed("1") == [1]
    assert listed("0") == [0]
    assert listed("one") == []

"""Review finding 13: the impact of a mapping change counts links outside the transaction that saves it, so
intake (which writes links) never waits for a count of every link; the counts use indexes."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from statussync.mapping.store import mapping_export
from statussync.models import Link, MappingChange
from tests.admin.mapping.support import PIPELINES_URL
from tests.admin.mapping.test_pipelines import mapped, mapped_with_d, moved_preparation, page_of, upload

pytestmark = pytest.mark.django_db
__all__ = ["mapped", "mapped_with_d"]  # fixtures


class LinkCounts:
    """How deep in transactions each COUNT of the links ran, relative to the test's own depth."""

    def __init__(self) -> None:
        self.base = len(connection.atomic_blocks)
        self.depths: list[int] = []

    def __call__(self, execute, sql, params, many, context):
        if "COUNT(" in sql.upper() and Link._meta.db_table in sql:
            self.depths.append(len(connection.atomic_blocks) - self.base)
        return execute(sql, params, many, context)


def test_it_counts_a_pipeline_forms_impact_outside_the_save_transaction(manager_client, mapped_with_d):
    data = moved_preparation(manager_client, mapped_with_d[0])
    counts = LinkCounts()

    with connection.execute_wrapper(counts):
        preview = manager_client.post(page_of(mapped_with_d[0]), data)
        data.update(_mapping_decision="save", _mapping_previewed=preview.context["previewed"])
        manager_client.post(page_of(mapped_with_d[0]), data)

    assert (preview.context["impact"].affected, preview.context["impact"].moving) == (3, 3)
    change = MappingChange.objects.get()
    assert (change.links_affected, change.links_moving) == (3, 3)
    assert counts.depths
    assert set(counts.depths) == {0}, counts.depths


def test_it_counts_a_file_imports_impact_outside_the_import_transaction(manager_client, mapped_with_d):
    document = mapping_export()
    swap = {("P", "PREPARATION"): "EXECUTING", ("D", "EXECUTING"): "PREPARATION"}  # as the form test does
    for rule in document["pipelines"][0]["rules"]:
        rule["deal_stage"] = swap.get((rule["order_status"], rule["deal_stage"]), rule["deal_stage"])
    text = json.dumps(document)
    counts = LinkCounts()

    with connection.execute_wrapper(counts):
        preview = upload(manager_client, text)
        manager_client.post(
            f"{PIPELINES_URL}import/",
            {
                "mapping_text": text,
                "_mapping_decision": "save",
                "_mapping_previewed": preview.context["previewed"],
            },
        )

    change = MappingChange.objects.get()
    assert (change.links_affected, change.links_moving) == (3, 3)
    assert counts.depths
    assert set(counts.depths) == {0}, counts.depths


def test_it_counts_a_deleted_pipelines_impact_outside_the_delete_transaction(manager_client, mapped_with_d):
    counts = LinkCounts()

    with connection.execute_wrapper(counts):
        response = manager_client.post(f"{PIPELINES_URL}{mapped_with_d[0].pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    change = MappingChange.objects.get(source="admin_delete")
    assert change.links_affected == 4  # every link agreed in pipeline 0 is unmapped now
    assert counts.depths
    assert set(counts.depths) == {0}, counts.depths


def test_it_records_the_impact_of_pipelines_deleted_from_the_list(manager_client, mapped_with_d):

    response = manager_client.post(
        PIPELINES_URL,
        {"action": "delete_selected", "_selected_action": [mapped_with_d[0].pk], "post": "yes"},
    )

    assert response.status_code == 302
    assert MappingChange.objects.get(source="admin_delete").links_affected == 4

"""Every list page reads a fixed number of queries however many rows it shows: the lists not covered by their
own bounded-query tests (links, dead letters, unmapped values, the audit, the pipelines and their history
have theirs), each compared at a few rows and at ten times as many."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from statussync.models import (
    BulkAction,
    BulkOperation,
    CatalogStage,
    CatalogStatus,
    InboundEvent,
    Job,
    JobKind,
    Link,
    LinkProblem,
    LinkProblemKind,
)

pytestmark = pytest.mark.django_db


def _jobs(start: int, n: int) -> None:
    Job.objects.bulk_create(
        Job(kind=JobKind.ORDER, entity_id=str(i), not_before=timezone.now()) for i in range(start, start + n)
    )


def _events(start: int, n: int) -> None:
    InboundEvent.objects.bulk_create(
        InboundEvent(side="crm", event="ONCRMDEALUPDATE", entity_id=str(i), dedupe_key=f"q:{i}")
        for i in range(start, start + n)
    )


def _problems(start: int, n: int) -> None:
    for i in range(start, start + n):
        link = Link.objects.create(order_id=str(i), deal_id=str(10_000 + i))
        LinkProblem.objects.create(
            kind=LinkProblemKind.DEAL_ORDER_CHANGED,
            key=str(10_000 + i),
            order_id=str(i),
            deal_id=str(10_000 + i),
            link=link,
        )


def _operations(start: int, n: int) -> None:
    BulkOperation.objects.bulk_create(
        BulkOperation(action=BulkAction.RESYNC, link_ids=[i], total=1) for i in range(start, start + n)
    )


def _statuses(start: int, n: int) -> None:
    CatalogStatus.objects.bulk_create(
        CatalogStatus(code=f"S{i}", names={"en": f"Status {i}"}, refreshed_at=timezone.now())
        for i in range(start, start + n)
    )


def _stages(start: int, n: int) -> None:
    CatalogStage.objects.bulk_create(
        CatalogStage(pipeline_id=0, code=f"UC_{i}", name=f"Stage {i}", refreshed_at=timezone.now())
        for i in range(start, start + n)
    )


LISTS: dict[str, Callable[[int, int], None]] = {
    "job": _jobs,
    "inboundevent": _events,
    "linkproblem": _problems,
    "bulkoperation": _operations,
    "catalogstatus": _statuses,
    "catalogstage": _stages,
}


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


@pytest.mark.parametrize("model", LISTS)
def test_it_reads_a_list_page_in_the_same_queries_for_3_rows_as_for_30(admin_client, model):
    url = f"/admin/statussync/{model}/"
    fill = LISTS[model]
    fill(0, 3)
    few = _queries(admin_client, url)

    fill(3, 27)
    many = _queries(admin_client, url)

    assert many == few, f"{model}: {few} queries for 3 rows, {many} for 30"

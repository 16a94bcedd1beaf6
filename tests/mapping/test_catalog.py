"""The catalog of names: read from the portals, labels as "Name (CODE)", missing codes shown, not hidden."""

from __future__ import annotations

import pytest
from django.utils import translation

from statussync.bitrix import client_for
from statussync.mapping import catalog
from statussync.mapping.catalog import (
    catalog_pipeline_stages,
    pipeline_label,
    stage_choices,
    stage_label,
    status_choices,
    status_label,
)
from statussync.mapping.catalog_refresh import catalog_refresh
from statussync.mapping.store import mapping_import
from statussync.models import CatalogStage, CatalogStatus, PortalHealth
from statussync.sync.run import SyncRun
from statussync.sync.stages import mapping_with_stages
from tests.support.mappings import two_pipelines

pytestmark = pytest.mark.django_db


def test_it_reads_the_shops_statuses_with_their_names_in_both_languages(portals_up):
    report = catalog_refresh()

    assert report.errors == {}
    assert report.statuses == 5  # order statuses only: the delivery statuses DN, DF are left out
    assert CatalogStatus.objects.get(code="N").names == {
        "ru": "Принят, ожидается оплата",
        "en": "Accepted, awaiting payment",
    }
    with translation.override("ru"):
        assert status_label("P") == "Оплачен, формируется к отправке (P)"
    with translation.override("en"):
        assert status_label("P") == "Paid, preparing for shipment (P)"


def test_it_reads_every_pipeline_with_its_stages_sort_and_meaning(portals_up):
    report = catalog_refresh()

    assert (report.pipelines, report.stages) == (2, 14)
    assert pipeline_label(0) == "Общая (0)"
    assert pipeline_label(1) == "Опт (1)"
    assert stage_label("C1:PREPARATION") == "Подготовка документов (C1:PREPARATION)"
    won = CatalogStage.objects.get(code="C1:WON")
    assert (won.pipeline_id, won.semantics) == (1, "S")
    assert CatalogStage.objects.get(code="APOLOGY").semantics == "F"


def test_it_records_the_refresh_as_a_contact_with_each_portal(portals_up):
    catalog_refresh()

    assert set(PortalHealth.objects.exclude(last_contact_at=None).values_list("portal", flat=True)) == {
        "cms",
        "crm",
    }


def test_it_shows_a_code_the_portal_dropped_as_missing_not_hidden(portals_up, monkeypatch):
    catalog_refresh()
    monkeypatch.delitem(portals_up.crm.stages, "C1:EXECUTING")

    report = catalog_refresh()

    assert report.gone == 1
    assert stage_label("C1:EXECUTING") == "C1:EXECUTING (not in the CRM any more)"
    assert stage_label("C1:INVENTED") == "C1:INVENTED (not in the CRM)"
    assert status_label("Z") == "Z (not in the shop)"
    # A dropdown keeps a stored value the CRM no longer lists, labelled, so saving a form never loses it.
    codes = dict(stage_choices(1, keep=["C1:EXECUTING"]))
    assert codes["C1:EXECUTING"] == "C1:EXECUTING (not in the CRM any more)"


def test_it_labels_plain_codes_before_the_first_refresh():
    assert (status_label("N"), stage_label("NEW"), pipeline_label(0)) == ("N", "NEW", "pipeline 0")


def test_it_keeps_the_old_names_of_a_portal_that_fails(portals_up):
    catalog_refresh()
    portals_up.set_faults("shop", outage_seconds=60)

    report = catalog_refresh()

    assert set(report.errors) == {"cms"}
    assert report.stages == 14  # the CRM was read all the same
    assert status_label("N") == "Accepted, awaiting payment (N)"
    assert portals_up.shop_url not in report.errors["cms"]  # the webhook URL is a secret


def test_it_offers_only_the_pipelines_own_stages(portals_up):
    catalog_refresh()

    codes = [code for code, _label in stage_choices(1)]

    assert codes == ["C1:NEW", "C1:PREPARATION", "C1:PREPAYMENT_INVOICE", "C1:EXECUTING", "C1:WON", "C1:LOSE"]
    assert dict(stage_choices(1, keep=["WON"]))["WON"] == "WON (a stage of pipeline 0)"
    assert [code for code, _label in status_choices()] == ["N", "P", "D", "F", "C"]


def test_it_gives_the_sync_each_pipelines_stage_order_without_failure_stages(portals_up):
    catalog_refresh()

    stages = catalog_pipeline_stages(pipelines=[0, 1, 7])

    assert set(stages) == {0, 1}
    assert stages[0].order == (
        "NEW",
        "PREPARATION",
        "PREPAYMENT_INVOICE",
        "EXECUTING",
        "FINAL_INVOICE",
        "WON",
    )
    assert stages[0].success == frozenset({"WON"})


def test_it_reads_the_catalog_once_per_request_however_many_labels(portals_up, django_assert_num_queries):
    catalog_refresh()
    catalog.catalog_cache_clear()

    with django_assert_num_queries(3):
        labels = [stage_label(code) for code in ("NEW", "WON", "C1:NEW")] + [status_label("N")]
        labels.append(pipeline_label(1))

    assert len(labels) == 5


def test_it_takes_the_stage_order_for_the_sync_from_the_catalog_without_a_rest_call(portals_up):

    mapping_import(data=two_pipelines())
    catalog_refresh()
    run = SyncRun(items=[], cms=client_for("cms"), crm=client_for("crm"))

    mapping, unreadable = mapping_with_stages(run, pipelines={0, 1})

    assert (run.crm.calls, unreadable) == (0, {})
    assert mapping.pipelines[1].stage_order[:2] == ("C1:NEW", "C1:PREPARATION")
    assert mapping.pipelines[1].success_stages == frozenset({"C1:WON"})


def test_it_falls_back_to_the_crm_for_a_pipeline_the_catalog_lacks(portals_up):

    mapping_import(data=two_pipelines())
    run = SyncRun(items=[], cms=client_for("cms"), crm=client_for("crm"))

    mapping, _unreadable = mapping_with_stages(run, pipelines={1})

    assert run.crm.calls == 1
    assert mapping.pipelines[1].success_stages == frozenset({"C1:WON"})

"""The mapping editor in the admin: dropdowns from the catalog, the shared validator on the form, the impact
preview, import and export, the history, and who may do what."""

from __future__ import annotations

import json
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from statussync.mapping.impact import mapping_change_resync
from statussync.mapping.store import mapping_export, mapping_import
from statussync.models import Job, Link, MappingChange, Pipeline, StatusRule
from tests.admin.mapping.support import (
    PIPELINES_URL,
    add_rows,
    form_data,
    row_index,
)
from tests.support.catalogs import catalog_make
from tests.support.mappings import two_pipelines

pytestmark = pytest.mark.django_db


def example() -> dict:
    document = two_pipelines()
    document["pipelines"][1]["rules"] = [
        r for r in document["pipelines"][1]["rules"] if r["deal_stage"] != "C1:APOLOGY"
    ]
    return document


@pytest.fixture
def mapped():
    """The example mapping (pipelines 0 and 1) and the sandbox's catalog of names."""
    catalog_make()
    mapping_import(data=example())
    MappingChange.objects.all().delete()  # the history of the tests' own set-up
    return {p.pipeline_id: p for p in Pipeline.objects.all()}


def page_of(pipeline: Pipeline) -> str:
    return f"{PIPELINES_URL}{pipeline.pk}/change/"


def link_make(order: int, status: str, stage: str, pipeline: int = 0) -> Link:
    return Link.objects.create(
        order_id=str(order),
        deal_id=str(100 + order),
        pipeline_id=pipeline,
        base_order_status=status,
        base_deal_stage=stage,
        base_at=timezone.now(),
    )


# --- the editor -------------------------------------------------------------------------------------------


def test_it_offers_only_the_pipelines_own_stages_by_name(manager_client, mapped):
    response = manager_client.get(page_of(mapped[1]))

    form = response.context["inline_admin_formsets"][0].formset.forms[0]
    stages = [code for code, _label in form.fields["deal_stage"].choices if code]
    assert stages == [
        "C1:NEW",
        "C1:PREPARATION",
        "C1:PREPAYMENT_INVOICE",
        "C1:EXECUTING",
        "C1:WON",
        "C1:LOSE",
    ]
    assert "Подготовка документов (C1:PREPARATION)" in response.content.decode()
    statuses = dict(form.fields["order_status"].choices)
    assert statuses["P"] == "Paid, preparing for shipment (P)"


def test_it_changes_a_rule_picked_from_a_dropdown_and_records_who_did(manager_client, mapped):
    data = form_data(manager_client.get(page_of(mapped[1])))
    data[f"rules-{row_index(data, 'P', 'C1:PREPARATION')}-deal_stage"] = "C1:EXECUTING"

    response = manager_client.post(page_of(mapped[1]), data)

    assert response.status_code == 302, response.context and response.context.get("errors")
    rules = {(r.order_status, r.deal_stage) for r in StatusRule.objects.filter(pipeline=mapped[1])}
    assert ("P", "C1:EXECUTING") in rules
    change = MappingChange.objects.get()
    assert (change.username, change.source) == ("alice", "admin")
    assert change.before == example()
    assert change.after == mapping_export()


def test_it_catches_two_conflicting_new_rules_saved_together_as_a_form_error(manager_client, mapped):
    data = add_rows(
        form_data(manager_client.get(page_of(mapped[0]))),
        ("D", "EXECUTING", "both"),
        ("D", "FINAL_INVOICE", "both"),
    )
    before = mapping_export()

    response = manager_client.post(page_of(mapped[0]), data)

    assert response.status_code == 200
    page = response.content.decode()
    assert "The mapping has 1 problem" in page
    assert (
        "order status Handed to delivery (D) already maps to deal stage В работе (EXECUTING) in direction "
        "“Shop → CRM only” (the rule on row 7)" in page
    )
    assert mapping_export() == before


def test_it_refuses_a_stage_of_another_pipeline_already_stored_as_an_error_on_its_row(manager_client, mapped):
    StatusRule.objects.filter(pipeline=mapped[1], order_status="P").update(deal_stage="EXECUTING")
    data = form_data(manager_client.get(page_of(mapped[1])))

    response = manager_client.post(page_of(mapped[1]), data)

    page = response.content.decode()
    assert response.status_code == 200
    assert "EXECUTING (a stage of pipeline 0)" in page  # the stored value stays selectable, and says why
    assert "is a stage of pipeline 0: a deal of pipeline 1 never has it" in page


def test_it_refuses_a_stage_of_another_pipeline_posted_by_hand(manager_client, mapped):
    data = form_data(manager_client.get(page_of(mapped[1])))
    data[f"rules-{row_index(data, 'P', 'C1:PREPARATION')}-deal_stage"] = "WON"

    response = manager_client.post(page_of(mapped[1]), data)

    assert response.status_code == 200
    assert "is a stage of pipeline 0: a deal of pipeline 1 never has it" in response.content.decode()
    assert StatusRule.objects.filter(pipeline=mapped[1], deal_stage="WON").count() == 0


def test_it_prefills_a_new_rule_for_an_unmapped_value(manager_client, mapped):
    response = manager_client.get(page_of(mapped[1]) + "?add_rule_status=D&add_rule_stage=C1:EXECUTING")

    formset = response.context["inline_admin_formsets"][0].formset
    extra = formset.forms[-1]
    assert (extra["order_status"].value(), extra["deal_stage"].value()) == ("D", "C1:EXECUTING")


def test_it_saves_a_prefilled_rule_as_offered(manager_client, mapped):
    data = form_data(
        manager_client.get(page_of(mapped[1]) + "?add_rule_status=D&add_rule_stage=C1:EXECUTING")
    )

    response = manager_client.post(page_of(mapped[1]), data)

    assert response.status_code == 302
    assert StatusRule.objects.filter(pipeline=mapped[1], order_status="D", deal_stage="C1:EXECUTING").exists()


def test_it_shows_the_stored_pipelines_warnings_on_its_page(manager_client, mapped):
    response = manager_client.get(page_of(mapped[0]))

    assert "has no rule back to an order status" in response.content.decode()


def test_it_edits_the_paid_stage_and_the_shared_awaiting_statuses(manager_client, mapped):
    data = form_data(manager_client.get(page_of(mapped[1])))
    data["paid_stage"] = "C1:EXECUTING"
    data["awaiting_payment_statuses"] = ["N", "D"]

    response = manager_client.post(page_of(mapped[1]), data)
    if response.status_code == 200:  # a warning to confirm first
        data["_mapping_decision"] = "save"
        data["_mapping_previewed"] = response.context["previewed"]
        response = manager_client.post(page_of(mapped[1]), data)

    assert response.status_code == 302
    assert Pipeline.objects.get(pipeline_id=1).paid_stage == "C1:EXECUTING"
    assert mapping_export()["awaiting_payment_statuses"] == ["N", "D"]


def test_it_works_with_codes_typed_by_hand_before_the_names_are_read(manager_client):
    mapping_import(data=example())
    pipeline = Pipeline.objects.get(pipeline_id=1)
    data = form_data(manager_client.get(page_of(pipeline)))
    data[f"rules-{row_index(data, 'P', 'C1:PREPARATION')}-deal_stage"] = "C1:FINAL_INVOICE"

    response = manager_client.post(page_of(pipeline), data)

    assert response.status_code == 302
    assert StatusRule.objects.filter(pipeline=pipeline, deal_stage="C1:FINAL_INVOICE").exists()


def test_it_adds_a_pipeline_from_the_crms_list_then_asks_for_its_rules(manager_client, mapped):
    Pipeline.objects.filter(pipeline_id=1).delete()

    response = manager_client.get(f"{PIPELINES_URL}add/")
    assert dict(response.context["adminform"].form.fields["pipeline_id"].choices) == {1: "Опт (1)"}
    response = manager_client.post(
        f"{PIPELINES_URL}add/", {"pipeline_id": "1", "conflict_policy": "latest", "_save": "1"}
    )

    new = Pipeline.objects.get(pipeline_id=1)
    assert response.status_code == 302
    assert response.url == page_of(new)


# --- the impact preview -----------------------------------------------------------------------------------


def moved_preparation(client, pipeline: Pipeline) -> dict:
    """The pipeline-0 form with P now going to EXECUTING (and D to PREPARATION)."""
    data = form_data(client.get(page_of(pipeline)))
    data[f"rules-{row_index(data, 'P', 'PREPARATION')}-deal_stage"] = "EXECUTING"
    data[f"rules-{row_index(data, 'D', 'EXECUTING')}-deal_stage"] = "PREPARATION"
    return data


@pytest.fixture
def mapped_with_d(mapped):
    """Pipeline 0 with a rule D ↔ EXECUTING too, and links agreed under the old rules."""
    StatusRule.objects.create(pipeline=mapped[0], order_status="D", deal_stage="EXECUTING")
    for n in range(3):
        link_make(n + 1, "P", "PREPARATION")
    link_make(4, "N", "NEW")
    link_make(5, "P", "C1:PREPARATION", pipeline=1)  # another pipeline: not affected
    return mapped


def test_it_shows_the_impact_on_existing_links_before_saving(manager_client, mapped_with_d):
    before = mapping_export()

    response = manager_client.post(
        page_of(mapped_with_d[0]), moved_preparation(manager_client, mapped_with_d[0])
    )

    assert response.status_code == 200
    assert response.templates[0].name == "admin/statussync/pipeline/confirm.html"
    impact = response.context["impact"]
    assert (impact.affected, impact.moving) == (3, 3)
    page = response.content.decode()
    assert "3 active links were agreed under rules this change replaces" in page
    assert "deal → В работе (EXECUTING)" in page
    assert "/admin/statussync/link/" in page
    assert (
        "Общая (0): rule changed: Paid, preparing for shipment (P) ↔ Подготовка документов (PREPARATION) "
        "⇒ В работе (EXECUTING)" in page
    )
    assert mapping_export() == before  # nothing saved yet
    assert MappingChange.objects.count() == 0


def test_it_saves_only_and_leaves_the_links_alone(manager_client, mapped_with_d):
    data = moved_preparation(manager_client, mapped_with_d[0])
    preview = manager_client.post(page_of(mapped_with_d[0]), data)

    data.update(_mapping_decision="save", _mapping_previewed=preview.context["previewed"])
    response = manager_client.post(page_of(mapped_with_d[0]), data, follow=True)

    assert "3 links map differently now" in response.content.decode()
    change = MappingChange.objects.get()
    assert (change.links_affected, change.links_moving, change.resync_requested) == (3, 3, False)
    assert Job.objects.count() == 0


def test_it_saves_and_queues_the_resync_of_the_links_that_move(
    manager_client, mapped_with_d, django_capture_on_commit_callbacks
):
    data = moved_preparation(manager_client, mapped_with_d[0])
    preview = manager_client.post(page_of(mapped_with_d[0]), data)
    data.update(_mapping_decision="resync", _mapping_previewed=preview.context["previewed"])

    with django_capture_on_commit_callbacks() as callbacks:
        response = manager_client.post(page_of(mapped_with_d[0]), data, follow=True)

    assert "3 links move under the new mapping: their resync is being queued" in response.content.decode()
    assert len(callbacks) == 1  # the background task that queues them
    change = MappingChange.objects.get()
    assert mapping_change_resync(change_id=change.id, chunk=2) == 3
    jobs = Job.objects.order_by("entity_id")
    assert [(j.kind, j.entity_id, j.origin, j.event) for j in jobs] == [
        ("order", str(n), "admin", "mapping change") for n in (1, 2, 3)
    ]
    # The order leads: its side of the base is marked changed, so the run moves the deal.
    assert set(
        Link.objects.filter(order_id__in=["1", "2", "3"]).values_list("base_order_status", flat=True)
    ) == {""}
    change.refresh_from_db()
    assert (change.resync_queued, change.resync_after_id > 0, change.resync_finished_at is not None) == (
        3,
        True,
        True,
    )


def test_it_shows_the_preview_again_when_the_mapping_changed_meanwhile(manager_client, mapped_with_d):
    data = moved_preparation(manager_client, mapped_with_d[0])
    data.update(_mapping_decision="save", _mapping_previewed="not-what-you-saw")

    response = manager_client.post(page_of(mapped_with_d[0]), data)

    assert response.templates[0].name == "admin/statussync/pipeline/confirm.html"
    assert MappingChange.objects.count() == 0


def test_it_saves_at_once_when_no_link_is_affected_and_nothing_is_doubtful(manager_client, mapped):
    data = form_data(manager_client.get(page_of(mapped[0])))
    data["conflict_policy"] = "manual"

    response = manager_client.post(page_of(mapped[0]), data)

    assert response.status_code == 302
    assert Pipeline.objects.get(pipeline_id=0).conflict_policy == "manual"


# --- import and export ------------------------------------------------------------------------------------


def upload(client, document_text: str, **extra):
    file = SimpleUploadedFile("mapping.json", document_text.encode(), content_type="application/json")
    return client.post(f"{PIPELINES_URL}import/", {"mapping_file": file, **extra})


def test_it_exports_the_mapping_file(support_client, mapped):
    response = support_client.get(f"{PIPELINES_URL}export/")

    assert response["Content-Disposition"] == 'attachment; filename="bxsync-mapping.json"'
    assert json.loads(response.content) == mapping_export()


def test_it_imports_a_file_after_showing_what_it_changes(manager_client, mapped_with_d):
    document = mapping_export()
    document["pipelines"][0]["conflict_policy"] = "crm_wins"
    text = json.dumps(document)

    preview = upload(manager_client, text)
    assert preview.templates[0].name == "admin/statussync/pipeline/confirm.html"
    assert "when both sides changed: Latest change wins → CRM wins" in preview.content.decode()
    assert MappingChange.objects.count() == 0

    response = manager_client.post(
        f"{PIPELINES_URL}import/",
        {
            "mapping_text": text,
            "_mapping_decision": "save",
            "_mapping_previewed": preview.context["previewed"],
        },
    )

    assert response.status_code == 302
    assert mapping_export() == document
    assert MappingChange.objects.get().source == "admin_import"


def test_it_refuses_a_bad_file_and_changes_nothing(manager_client, mapped):
    document = mapping_export()
    document["pipelines"][0]["rules"].append(
        {"order_status": "P", "deal_stage": "WON", "direction": "to_crm"}
    )
    before = mapping_export()

    response = upload(manager_client, json.dumps(document))

    page = response.content.decode()
    assert "The file was not imported: 1 problem. Nothing changed." in page
    assert "pipelines[0].rules[5].order_status: order status &quot;P&quot; already maps" in page
    assert mapping_export() == before


def test_it_refuses_a_file_that_is_not_json(manager_client, mapped):
    response = upload(manager_client, "{not json")

    assert "invalid JSON at line 1, column 2" in response.content.decode()


# --- the history ------------------------------------------------------------------------------------------


def test_it_lists_every_change_with_what_changed(support_client, mapped):
    document = mapping_export()
    document["pipelines"][0]["paid_stage"] = "EXECUTING"
    mapping_import(data=document, username="ivan")

    listing = support_client.get("/admin/statussync/mappingchange/").content.decode()
    detail = support_client.get(
        f"/admin/statussync/mappingchange/{MappingChange.objects.latest('id').id}/change/"
    )

    assert "ivan" in listing
    assert "Общая (0): paid stage Счёт на предоплату (PREPAYMENT_INVOICE) → В работе (EXECUTING)" in listing
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()


# --- who may do what --------------------------------------------------------------------------------------


def test_it_shows_support_the_mapping_by_name_without_save_buttons(support_client, mapped):
    response = support_client.get(page_of(mapped[1]))

    page = response.content.decode()
    assert response.status_code == 200
    assert 'name="_save"' not in page
    assert 'name="_continue"' not in page
    assert "Подготовка документов (C1:PREPARATION)" in page
    assert "Refresh names from the portals" not in page


@pytest.mark.parametrize(
    "url",
    [
        f"{PIPELINES_URL}add/",
        f"{PIPELINES_URL}import/",
        f"{PIPELINES_URL}refresh-names/",
        "/admin/statussync/catalogstage/",
        "/admin/statussync/catalogstatus/",
        "/admin/statussync/mappingchange/",
    ],
)
def test_it_refuses_every_post_from_support(support_client, mapped, url):
    assert support_client.post(url, {}).status_code == 403


def test_it_refuses_support_a_change_to_a_pipeline(support_client, manager_client, mapped):
    data = form_data(manager_client.get(page_of(mapped[0])))

    assert support_client.post(page_of(mapped[0]), data).status_code == 403
    assert (
        support_client.post(f"{page_of(mapped[0])[: -len('change/')]}delete/", {"post": "yes"}).status_code
        == 403
    )


# --- bounded pages ----------------------------------------------------------------------------------------


def count_queries(client, url: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # warm: the first request of a session may save it, a cache table may be created
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_it_reads_the_pipeline_list_in_a_fixed_number_of_queries(manager_client, mapped):
    two = count_queries(manager_client, PIPELINES_URL)
    for n in range(2, 8):
        mapping = mapping_export()
        mapping["pipelines"].append(
            {
                "pipeline": n,
                "paid_stage": "",
                "conflict_policy": "latest",
                "rules": [{"order_status": "N", "deal_stage": f"C{n}:NEW", "direction": "both"}],
            }
        )
        mapping_import(data=mapping)

    assert count_queries(manager_client, PIPELINES_URL) == two


def test_it_reads_a_pipeline_page_in_a_fixed_number_of_queries(manager_client, mapped):
    few = count_queries(manager_client, page_of(mapped[0]))
    for status in ("X1", "X2", "X3", "X4"):
        StatusRule.objects.create(
            pipeline=mapped[0], order_status=status, deal_stage="FINAL_INVOICE", direction="to_crm"
        )

    assert count_queries(manager_client, page_of(mapped[0])) == few


def test_it_leads_from_an_unmapped_value_to_a_prefilled_rule_even_for_a_new_pipeline(manager_client, mapped):
    from statussync.admin.mapping import mapping_editor_url

    assert (
        mapping_editor_url(pipeline_id=1, stage="C1:EXECUTING")
        == f"{page_of(mapped[1])}?add_rule_stage=C1%3AEXECUTING"
    )
    Pipeline.objects.filter(pipeline_id=1).delete()
    url = mapping_editor_url(pipeline_id=1, stage="C1:EXECUTING")

    page = manager_client.get(url)
    assert page.context["adminform"].form["pipeline_id"].value() == "1"
    response = manager_client.post(url, {"pipeline_id": "1", "conflict_policy": "latest", "_save": "1"})

    editor = manager_client.get(response.url)
    extra = editor.context["inline_admin_formsets"][0].formset.forms[-1]
    assert extra["deal_stage"].value() == "C1:EXECUTING"


@pytest.mark.parametrize("url", ["/admin/statussync/mappingchange/", "/admin/statussync/catalogstage/"])
def test_it_reads_the_history_and_the_names_in_a_fixed_number_of_queries(support_client, mapped, url):
    document = mapping_export()
    mapping_import(data={**document, "awaiting_payment_statuses": ["N", "C"]}, username="a")
    few = count_queries(support_client, url)
    for n in range(12):
        mapping_import(data={**document, "awaiting_payment_statuses": ["N"] if n % 2 else ["N", "D"]})

    assert count_queries(support_client, url) == few


def test_it_drops_a_prefilled_rule_whose_values_were_cleared(manager_client, mapped):
    url = page_of(mapped[1]) + "?add_rule_status=D"
    data = form_data(manager_client.get(url))
    extra = int(data["rules-TOTAL_FORMS"]) - 1
    data[f"rules-{extra}-order_status"] = ""

    response = manager_client.post(url, data)

    assert response.status_code == 302
    assert not StatusRule.objects.filter(pipeline=mapped[1], order_status="D").exists()


def test_it_says_when_the_names_were_read_on_the_add_page_too(manager_client, mapped):
    page = manager_client.get(f"{PIPELINES_URL}add/").content.decode()

    assert "have not been read yet" not in page
    assert "Names of statuses and stages as the portals gave them" in page


def test_it_names_the_direction_of_a_conflicting_rule_in_words_in_russian(manager_client, mapped):
    data = add_rows(form_data(manager_client.get(page_of(mapped[0]))), ("C", "LOSE", "to_cms"))

    page = manager_client.post(page_of(mapped[0]), data, HTTP_ACCEPT_LANGUAGE="ru").content.decode()

    assert (
        "в направлении «Только CRM → магазин» уже задана: правило в строке 4 (направление «В обе стороны»)"
        in page
    )
    errors = " ".join(re.findall(r'<ul class="errorlist[^>]*>(.*?)</ul>', page, re.DOTALL))
    assert "to_cms" not in errors

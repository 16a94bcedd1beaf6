"""The mapping editor in a real browser, as a manager: the names come from the sandbox portals (the refresh
button), a stage picked from a dropdown changes a rule, the impact preview lists the links it moves, and
"save and resync" moves the sandbox's deals. Screenshots: docs/screenshots/mapping-editor.png and
impact-preview.png (the README shows them).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bitrix_sandbox import Sandbox, SandboxConfig
from statussync.jobs import job_request
from statussync.mapping.impact import mapping_change_resync
from statussync.mapping.store import mapping_import
from statussync.models import JobKind, Link, MappingChange, Pipeline, StatusRule
from tests.browser.conftest import log_in, screenshot, user_make
from tests.support.sandbox import run_worker, sandbox_use

pytestmark = pytest.mark.django_db(transaction=True)

DEMO_MAPPING = Path(__file__).resolve().parents[2] / "docs" / "mapping.demo.json"


@pytest.fixture
def portals(settings):
    with Sandbox(SandboxConfig(seed=11)) as sb:
        yield sandbox_use(sb, settings)


def paid_and_preparing(sb: Sandbox, n: int) -> list[tuple[str, str]]:
    """`n` linked pairs whose order is P and whose deal bxsync moved to PREPARATION."""
    pairs = [
        (str(o), str(d))
        for o, d in sb.seed(n, pipeline_share=0, orders_without_deal=0, deals_without_order=0)
    ]
    for order_id, _deal in pairs:
        job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()
    for order_id, _deal in pairs:
        sb.shop.set_order_status(int(order_id), "P")
        job_request(kind=JobKind.ORDER, entity_id=order_id)
    run_worker()
    for _order, deal_id in pairs:
        assert sb.crm.get_deal(int(deal_id))["STAGE_ID"] == "PREPARATION"
    return pairs


def test_it_edits_a_rule_previews_its_impact_and_resyncs_the_deals(page, live_server, portals):
    mapping_import(data=json.loads(DEMO_MAPPING.read_text()))
    pairs = paid_and_preparing(portals, 3)
    user_make("manager", groups=("Sync managers",))
    log_in(page, live_server, "manager")
    pipeline = Pipeline.objects.get(pipeline_id=0)
    url = f"{live_server.url}/admin/statussync/pipeline/{pipeline.pk}/change/"

    # The names come from the portals at the press of a button.
    page.goto(url)
    page.get_by_role("button", name="Refresh names from the portals").click()
    page.wait_for_url(url)
    assert "shop statuses, 2 pipelines" in page.content()

    # Pick another stage for status P from the pipeline's own stages, by name.
    rule_row = (
        StatusRule.objects.filter(pipeline=pipeline).order_by("id").values_list("order_status", flat=True)
    )
    row = list(rule_row).index("P")
    select = page.locator(f"#id_rules-{row}-deal_stage")
    options = select.locator("option").all_inner_texts()
    assert "Финальный счёт (FINAL_INVOICE)" in options
    assert not any("C1:" in option for option in options)  # never another pipeline's stages
    select.select_option("FINAL_INVOICE")
    screenshot(page, "mapping-editor")
    page.locator("input[name=_save]").click()

    # Nothing is saved yet: the preview says which links would move.
    page.wait_for_selector("#impact-count")
    assert "3 active links were agreed under rules this change replaces" in page.inner_text("#impact-count")
    sample = page.inner_text("#impact-sample")
    for order_id, _deal in pairs:
        assert order_id in sample
    assert "deal → Финальный счёт (FINAL_INVOICE)" in sample
    assert StatusRule.objects.get(pipeline=pipeline, order_status="P").deal_stage == "PREPARATION"
    screenshot(page, "impact-preview")

    page.locator("#save-and-resync").click()
    page.wait_for_selector(".messagelist")
    assert "3 links move under the new mapping" in page.inner_text(".messagelist")
    assert StatusRule.objects.get(pipeline=pipeline, order_status="P").deal_stage == "FINAL_INVOICE"

    # What the background task and a worker do next (run here in-process).
    change = MappingChange.objects.get(source="admin")
    assert mapping_change_resync(change_id=change.id) == 3
    run_worker()
    for order_id, deal_id in pairs:
        assert portals.crm.get_deal(int(deal_id))["STAGE_ID"] == "FINAL_INVOICE"
        link = Link.objects.get(order_id=order_id)
        assert (link.base_order_status, link.base_deal_stage) == ("P", "FINAL_INVOICE")
    assert portals.shop.get_order(int(pairs[0][0]))["statusId"] == "P"  # the shop is left as it was

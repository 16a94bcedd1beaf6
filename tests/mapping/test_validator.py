"""The one validator behind `statusmap import`/`check` and the admin's forms: every error, warning and note.

Each row: a change to the contract's example (plus pipeline 1), whether the catalog of names is known, and the
problems expected as (level, path, text) — nothing else may be reported. The validator is a pure function of
the mapping and a catalog snapshot, so the table needs no database; the tests marked `django_db` check the
wiring: that import, check and the admin's texts take the snapshot and the names from the stored catalog.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import translation

from statussync.admin.labels import problem_text
from statussync.mapping.catalog import CatalogSnapshot, catalog_snapshot
from statussync.mapping.store import mapping_check, mapping_export, mapping_import, mapping_store
from statussync.mapping.validate import MappingError, mapping_parse, mapping_validate
from tests.support.catalogs import catalog_make, catalog_snapshot_make
from tests.support.mappings import two_pipelines

PAID_NOTE_0 = (
    "note",
    "pipelines[0].paid_stage",
    'the paid stage "PREPAYMENT_INVOICE" has no rule back to an order status: a deal a manager moves there '
    "changes nothing in the shop, and a pair first seen there is a conflict",
)
PAID_NOTE_1 = (
    "note",
    "pipelines[1].paid_stage",
    'the paid stage "C1:PREPAYMENT_INVOICE" has no rule back to an order status: a deal a manager moves '
    "there changes nothing in the shop, and a pair first seen there is a conflict",
)
BASELINE = [PAID_NOTE_0, PAID_NOTE_1]


def example() -> dict[str, Any]:
    """The contract's example plus pipeline 1, as the sandbox's CRM has them (its pipeline 1: no APOLOGY)."""
    document = two_pipelines()
    document["pipelines"][1]["rules"] = [
        r for r in document["pipelines"][1]["rules"] if r["deal_stage"] != "C1:APOLOGY"
    ]
    return document


def rule(document: dict[str, Any], pipeline: int, index: int, **changes: str) -> None:
    document["pipelines"][pipeline]["rules"][index].update(changes)


def add_rule(
    document: dict[str, Any], pipeline: int, status: str, stage: str, direction: str = "both"
) -> None:
    document["pipelines"][pipeline]["rules"].append(
        {"order_status": status, "deal_stage": stage, "direction": direction}
    )


# name: (change, catalog known, expected problems besides the baseline notes, baseline notes that go away)
CASES: dict[str, tuple[Callable[[dict[str, Any]], None], bool, list[tuple[str, str, str]], list[Any]]] = {
    "the example is fine (two notes)": (lambda d: None, False, [], []),
    "the example is fine against the catalog": (lambda d: None, True, [], []),
    "a stage of pipeline 1 in pipeline 0, by its prefix": (
        lambda d: rule(d, 0, 1, deal_stage="C1:PREPARATION"),
        False,
        [
            (
                "error",
                "pipelines[0].rules[1].deal_stage",
                '"C1:PREPARATION" looks like a stage of pipeline 1 (its C1: prefix); '
                "stages of pipeline 0 have no C<n>: prefix",
            )
        ],
        [],
    ),
    "a stage of pipeline 1 in pipeline 0, by the catalog": (
        lambda d: rule(d, 0, 1, deal_stage="C1:PREPARATION"),
        True,
        [
            (
                "error",
                "pipelines[0].rules[1].deal_stage",
                '"C1:PREPARATION" is a stage of pipeline 1: a deal of pipeline 0 never has it, and the CRM '
                "ignores it when bxsync writes it",
            )
        ],
        [],
    ),
    "a stage of pipeline 0 in pipeline 1, by its missing prefix": (
        lambda d: d["pipelines"][1].update(paid_stage="PREPAYMENT_INVOICE"),
        False,
        [
            (
                "error",
                "pipelines[1].paid_stage",
                '"PREPAYMENT_INVOICE" does not start with C1: as stages of pipeline 1 do',
            )
        ],
        [PAID_NOTE_1],
    ),
    "a paid stage of another pipeline, by the catalog": (
        lambda d: d["pipelines"][1].update(paid_stage="PREPAYMENT_INVOICE"),
        True,
        [
            (
                "error",
                "pipelines[1].paid_stage",
                '"PREPAYMENT_INVOICE" is a stage of pipeline 0: a deal of pipeline 1 never has it, '
                "and the CRM ignores it when bxsync writes it",
            )
        ],
        [PAID_NOTE_1],
    ),
    "a stage the CRM does not list": (
        lambda d: rule(d, 0, 1, deal_stage="UC_GONE"),
        True,
        [
            (
                "warning",
                "pipelines[0].rules[1].deal_stage",
                '"UC_GONE" is not a stage of pipeline 0 in the CRM',
            )
        ],
        [],
    ),
    "a status the shop does not list": (
        lambda d: rule(d, 0, 1, order_status="Z"),
        True,
        [("warning", "pipelines[0].rules[1].order_status", '"Z" is not an order status of the shop')],
        [],
    ),
    "an awaiting-payment status the shop does not list": (
        lambda d: d.update(awaiting_payment_statuses=["N", "W"]),
        True,
        [("warning", "awaiting_payment_statuses[1]", '"W" is not an order status of the shop')],
        [],
    ),
    "an awaiting-payment status in no rule": (
        lambda d: d.update(awaiting_payment_statuses=["N", "W"]),
        False,
        [
            (
                "warning",
                "awaiting_payment_statuses[1]",
                'awaiting-payment status "W" appears in no rule: is it a typo of a shop status?',
            )
        ],
        [],
    ),
    "a pipeline the CRM does not have": (
        lambda d: d["pipelines"].append(
            {"pipeline": 5, "paid_stage": "C5:WON", "rules": [{"order_status": "F", "deal_stage": "C5:WON"}]}
        ),
        True,
        [("warning", "pipelines[2].pipeline", "pipeline 5 is not in the CRM")],
        [],
    ),
    "a pipeline without rules or paid stage": (
        lambda d: d["pipelines"].append({"pipeline": 2, "rules": []}),
        False,
        [
            (
                "warning",
                "pipelines[2].rules",
                "pipeline 2 has no rules: statuses and stages of its deals are never synced",
            ),
            (
                "warning",
                "pipelines[2].paid_stage",
                "pipeline 2 has no paid stage: a payment moves its deals only through the status rules",
            ),
        ],
        [],
    ),
    "no pipelines at all": (
        lambda d: d.update(pipelines=[], awaiting_payment_statuses=[]),
        False,
        [("warning", "", "no pipelines are mapped: nothing will be synced")],
        [PAID_NOTE_0, PAID_NOTE_1],
    ),
    "a lossy round trip": (
        # P goes out as PREPARATION, and PREPARATION comes back as D.
        lambda d: (rule(d, 0, 1, direction="to_crm"), add_rule(d, 0, "D", "PREPARATION", "to_cms")),
        False,
        [
            (
                "warning",
                "pipelines[0].rules[1].deal_stage",
                'order status "P" goes out as deal stage "PREPARATION", which comes back as order status "D" '
                "(rules[5]): the shop would not get its own status back",
            )
        ],
        [],
    ),
    "a paid stage that is a failure stage": (
        lambda d: d["pipelines"][0].update(paid_stage="LOSE"),
        True,
        [
            (
                "warning",
                "pipelines[0].paid_stage",
                'the paid stage "LOSE" is a failure stage: every paid order would close its deal as lost',
            )
        ],
        [PAID_NOTE_0],
    ),
    "a paid stage mapped back is fine": (
        lambda d: add_rule(d, 0, "N", "PREPAYMENT_INVOICE", "to_cms"),
        False,
        [],
        [PAID_NOTE_0],
    ),
}


def problems_of(document: dict[str, Any], known: CatalogSnapshot) -> list[tuple[str, str, str]]:
    parsed = mapping_parse(data=document)
    return [(p.level, p.path, p.message()) for p in mapping_validate(parsed=parsed, known=known)]


# No database: a table row that reached for one would fail on pytest-django's guard.
@pytest.mark.parametrize(("change", "known", "expected", "gone"), CASES.values(), ids=CASES.keys())
def test_it_reports_each_problem_at_its_path(change, known, expected, gone):
    document = example()
    change(document)

    found = problems_of(document, catalog_snapshot_make() if known else CatalogSnapshot())

    assert sorted(found) == sorted(expected + [p for p in BASELINE if p not in gone])


@pytest.mark.django_db
def test_it_takes_the_snapshot_from_the_stored_catalog():
    assert catalog_snapshot() == CatalogSnapshot()

    catalog_make()

    assert catalog_snapshot() == catalog_snapshot_make()


@pytest.mark.django_db
def test_it_validates_an_import_against_the_stored_catalog():
    catalog_make()
    document = example()
    rule(document, 0, 1, deal_stage="C1:PREPARATION")

    with pytest.raises(MappingError) as caught:
        mapping_import(data=document)

    # The catalog's verdict (a stage of pipeline 1), not the prefix guess the empty catalog gives below.
    assert [p.code for p in caught.value.items] == ["stage_of_pipeline"]


@pytest.mark.django_db
def test_it_checks_the_stored_mapping_against_the_stored_catalog():
    document = example()
    rule(document, 0, 1, order_status="Z")
    mapping_store(parsed=mapping_parse(data=document))
    assert [p.code for p in mapping_check() if p.level == "warning"] == []

    catalog_make()

    assert [(p.path, p.code) for p in mapping_check() if p.level == "warning"] == [
        ("pipelines[0].rules[1].order_status", "status_not_in_shop")
    ]


@pytest.mark.django_db
def test_it_refuses_to_import_an_error_and_stores_nothing():
    document = example()
    rule(document, 0, 1, deal_stage="C1:PREPARATION")

    with pytest.raises(MappingError) as caught:
        mapping_import(data=document)

    assert [p.code for p in caught.value.items] == ["stage_prefix_other"]
    assert mapping_export()["pipelines"] == []


@pytest.mark.django_db
def test_it_names_codes_and_rows_for_the_form_in_the_readers_language():
    catalog_make()
    document = example()
    rule(document, 0, 1, direction="to_crm")
    add_rule(document, 0, "D", "PREPARATION", "to_cms")
    problems = mapping_validate(parsed=mapping_parse(data=document), known=catalog_snapshot())
    lossy = next(p for p in problems if p.code == "lossy_round_trip")

    with translation.override("en"):
        text = problem_text(lossy)
    with translation.override("ru"):
        text_ru = problem_text(lossy)

    # "the rule on row 6": shown on another row, a bare "(row 6)" read as the row the message is on.
    assert text == (
        "order status Paid, preparing for shipment (P) goes out as deal stage Подготовка документов "
        "(PREPARATION), which comes back as order status Handed to delivery (D) (the rule on row 6): the "
        "shop would not get its own status back"
    )
    assert "возвращается статусом Передан в службу доставки (D) (правило в строке 6):" in text_ru
    assert "(rules[5])" in str(lossy)  # a file names the rule by its path


def test_it_finds_two_conflicting_new_rules_in_one_pipeline():
    document = copy.deepcopy(example())
    add_rule(document, 1, "D", "C1:EXECUTING")
    add_rule(document, 1, "D", "C1:WON")

    with pytest.raises(MappingError) as caught:
        mapping_parse(data=document)

    assert [(p.path, p.code) for p in caught.value.items] == [
        ("pipelines[1].rules[5].order_status", "status_two_stages"),
        ("pipelines[1].rules[5].deal_stage", "stage_two_statuses"),
    ]


@pytest.mark.django_db
def test_it_describes_a_change_as_people_read_it():
    from statussync.admin.mapping.changes import diff_text
    from statussync.mapping.document import mapping_diff

    catalog_make()
    before = example()
    after = copy.deepcopy(before)
    rule(after, 0, 1, deal_stage="EXECUTING")
    after["pipelines"][0]["paid_stage"] = "EXECUTING"
    after["pipelines"].pop(1)
    after["awaiting_payment_statuses"] = ["N", "D"]

    with translation.override("en"):
        lines = [diff_text(line) for line in mapping_diff(before=before, after=after)]
        added = [diff_text(line) for line in mapping_diff(before={"pipelines": []}, after=before)]

    assert lines == [
        "Общая (0): rule changed: Paid, preparing for shipment (P) ↔ Подготовка документов (PREPARATION) "
        "⇒ В работе (EXECUTING)",
        "Общая (0): paid stage Счёт на предоплату (PREPAYMENT_INVOICE) → В работе (EXECUTING)",
        "Опт (1): no longer mapped (it had 4 rules)",
        "awaiting payment: Handed to delivery (D) added",
    ]
    assert added == [
        "Общая (0): mapped, with 5 rules",
        "Опт (1): mapped, with 4 rules",
        "awaiting payment: Accepted, awaiting payment (N) added",
    ]

"""The mapping file and `manage.py statusmap`: a fixed contract (docs/contract.md "The mapping file")."""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from statussync.mapping.store import mapping_import, mapping_load
from statussync.mapping.validate import MappingError, mapping_parse
from tests.support.mappings import DESIGN_EXAMPLE

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_FILE = REPO / "docs" / "mapping.example.json"

EXAMPLE = DESIGN_EXAMPLE
# The contract's example moves paid deals to a stage no rule maps back: worth a note, not a failed check.
PAID_STAGE_NOTE = (
    'note: pipelines[0].paid_stage: the paid stage "PREPAYMENT_INVOICE" has no rule back to an order status: '
    "a deal a manager moves there changes nothing in the shop, and a pair first seen there is a conflict\n"
)


def run(
    *args: str, stdin: str | None = None, monkeypatch: pytest.MonkeyPatch | None = None
) -> tuple[str, str]:
    """Run `statusmap` in-process; return (stdout, stderr)."""
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    out, err = io.StringIO(), io.StringIO()
    call_command("statusmap", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def export() -> str:
    return run("export")[0]


def import_document(document: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    return run("import", "-", stdin=json.dumps(document), monkeypatch=monkeypatch)


def with_rules(*rules: dict[str, str], **pipeline: Any) -> dict[str, Any]:
    """The example with extra rules (and pipeline keys) in pipeline 0."""
    document = copy.deepcopy(EXAMPLE)
    document["pipelines"][0]["rules"] += list(rules)
    document["pipelines"][0].update(pipeline)
    return document


def edited(change: Any) -> dict[str, Any]:
    document = copy.deepcopy(EXAMPLE)
    change(document)
    return document


def test_it_ships_the_design_example_as_docs_mapping_example() -> None:
    assert json.loads(EXAMPLE_FILE.read_text(encoding="utf-8")) == EXAMPLE


@pytest.mark.django_db
def test_it_imports_the_design_example_and_exports_it_back_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = run("import", str(EXAMPLE_FILE))
    assert out == "mapping imported: 1 pipeline(s), 5 rule(s), 1 awaiting-payment status(es)\n"
    assert err == PAID_STAGE_NOTE

    exported = export()
    assert exported.endswith("}\n")
    assert json.loads(exported) == EXAMPLE
    assert "\n  " in exported  # indent 2, readable in review

    out, _ = run("import", "-", stdin=exported, monkeypatch=monkeypatch)
    assert out.rstrip().endswith("(no change)")
    assert export() == exported


@pytest.mark.django_db
def test_it_keeps_cyrillic_and_file_order_of_rules_and_statuses(monkeypatch: pytest.MonkeyPatch) -> None:
    document = {
        "awaiting_payment_statuses": ["W", "N"],
        "pipelines": [
            {
                "pipeline": 3,
                "paid_stage": "C3:PAID",
                "conflict_policy": "manual",
                "rules": [
                    {"order_status": "Z", "deal_stage": "C3:ЖДЁМ", "direction": "to_crm"},
                    {"order_status": "N", "deal_stage": "C3:NEW", "direction": "both"},
                    {"order_status": "W", "deal_stage": "C3:WAIT", "direction": "both"},
                ],
            },
            {"pipeline": 0, "paid_stage": "", "conflict_policy": "crm_wins", "rules": []},
        ],
    }
    import_document(document, monkeypatch)
    exported = export()
    assert "C3:ЖДЁМ" in exported  # ensure_ascii=False
    # Pipelines come back by id; everything else in file order.
    assert json.loads(exported) == {
        **document,
        "pipelines": [document["pipelines"][1], document["pipelines"][0]],
    }


@pytest.mark.django_db
def test_it_fills_in_defaults_and_exports_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import_document(
        {"pipelines": [{"pipeline": 0, "rules": [{"order_status": "N", "deal_stage": "NEW"}]}]}, monkeypatch
    )
    assert json.loads(export()) == {
        "awaiting_payment_statuses": [],
        "pipelines": [
            {
                "pipeline": 0,
                "paid_stage": "",
                "conflict_policy": "latest",
                "rules": [{"order_status": "N", "deal_stage": "NEW", "direction": "both"}],
            }
        ],
    }


@pytest.mark.django_db
def test_it_allows_one_pair_in_each_direction_and_crossing_one_way_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Same pair as two one-way rules, and a to_crm/to_cms pair that only shares values across directions.
    document = with_rules(
        {"order_status": "D", "deal_stage": "EXECUTING", "direction": "to_crm"},
        {"order_status": "D", "deal_stage": "EXECUTING", "direction": "to_cms"},
        {"order_status": "X", "deal_stage": "WON", "direction": "to_crm"},
        {"order_status": "F", "deal_stage": "FINAL_INVOICE", "direction": "to_cms"},
    )
    import_document(document, monkeypatch)
    assert json.loads(export()) == document


# Each case: a bad document, and a problem line expected on stderr (path first).
REFUSALS = {
    "top level not an object": ([EXAMPLE], "(top level): must be an object, not a list"),
    "pipelines missing": ({"awaiting_payment_statuses": []}, "pipelines: required"),
    "typo in a top-level key": (
        {**EXAMPLE, "awaiting_payment_status": ["N"]},
        "awaiting_payment_status: unknown key; did you mean awaiting_payment_statuses?",
    ),
    "typo in a pipeline key": (
        edited(lambda d: d["pipelines"][0].update(paid_stag="X")),
        "pipelines[0].paid_stag: unknown key; did you mean paid_stage?",
    ),
    "typo in a rule key": (
        edited(lambda d: d["pipelines"][0]["rules"][1].update(drection="both")),
        "pipelines[0].rules[1].drection: unknown key; did you mean direction?",
    ),
    "unknown direction": (
        edited(lambda d: d["pipelines"][0]["rules"][3].update(direction="to_shop")),
        "pipelines[0].rules[3].direction: must be one of both, to_crm, to_cms",
    ),
    "unknown conflict policy": (
        with_rules(conflict_policy="newest"),
        "pipelines[0].conflict_policy: must be one of latest, cms_wins, crm_wins, manual",
    ),
    "pipeline as a string": (
        edited(lambda d: d["pipelines"][0].update(pipeline="0")),
        "pipelines[0].pipeline: must be a whole number ≥ 0",
    ),
    "pipeline negative": (
        edited(lambda d: d["pipelines"][0].update(pipeline=-1)),
        "pipelines[0].pipeline: must be a whole number ≥ 0",
    ),
    "pipeline as a boolean": (
        edited(lambda d: d["pipelines"][0].update(pipeline=True)),
        "pipelines[0].pipeline: must be a whole number ≥ 0",
    ),
    "pipeline missing": (
        edited(lambda d: d["pipelines"][0].pop("pipeline")),
        "pipelines[0].pipeline: required",
    ),
    "duplicate pipeline": (
        edited(lambda d: d["pipelines"].append({"pipeline": 0, "rules": []})),
        "pipelines[1].pipeline: pipeline 0 is already defined in pipelines[0]",
    ),
    "paid_stage not a string": (
        with_rules(paid_stage=None),
        "pipelines[0].paid_stage: must be a string, not null",
    ),
    "rules not a list": (
        with_rules(rules={"N": "NEW"}),
        "pipelines[0].rules: must be a list, not an object",
    ),
    "rule not an object": (
        with_rules(["N", "NEW"]),  # type: ignore[arg-type]
        "pipelines[0].rules[5]: must be an object, not a list",
    ),
    "rule without deal_stage": (
        with_rules({"order_status": "D"}),
        "pipelines[0].rules[5].deal_stage: required",
    ),
    "empty order_status": (
        with_rules({"order_status": "", "deal_stage": "EXECUTING"}),
        "pipelines[0].rules[5].order_status: must not be empty",
    ),
    "empty deal_stage": (
        with_rules({"order_status": "D", "deal_stage": ""}),
        "pipelines[0].rules[5].deal_stage: must not be empty",
    ),
    "stage with a trailing space": (
        with_rules({"order_status": "D", "deal_stage": "EXECUTING "}),
        'pipelines[0].rules[5].deal_stage: "EXECUTING " has leading or trailing spaces',
    ),
    "status as a number": (
        with_rules({"order_status": 1, "deal_stage": "EXECUTING"}),  # type: ignore[dict-item]
        "pipelines[0].rules[5].order_status: must be a string, not a number",
    ),
    "value longer than the column": (
        with_rules({"order_status": "D", "deal_stage": "X" * 51}),
        "pipelines[0].rules[5].deal_stage: longer than 50 characters",
    ),
    "awaiting statuses not a list": (
        {**EXAMPLE, "awaiting_payment_statuses": "N"},
        "awaiting_payment_statuses: must be a list, not a string",
    ),
    "awaiting status empty": (
        {**EXAMPLE, "awaiting_payment_statuses": ["N", ""]},
        "awaiting_payment_statuses[1]: must not be empty",
    ),
    "awaiting status twice": (
        {**EXAMPLE, "awaiting_payment_statuses": ["N", "N"]},
        'awaiting_payment_statuses[1]: "N" is already listed at [0]',
    ),
    "order status to two stages (both + to_crm)": (
        with_rules({"order_status": "C", "deal_stage": "APOLOGY", "direction": "to_crm"}),
        'pipelines[0].rules[5].order_status: order status "C" already maps to deal stage "LOSE" '
        "in direction to_crm (rules[3])",
    ),
    "order status to two stages (to_crm + to_crm)": (
        with_rules(
            {"order_status": "D", "deal_stage": "EXECUTING", "direction": "to_crm"},
            {"order_status": "D", "deal_stage": "WON", "direction": "to_crm"},
        ),
        'pipelines[0].rules[6].order_status: order status "D" already maps to deal stage "EXECUTING"',
    ),
    "deal stage to two statuses (both + to_cms)": (
        with_rules({"order_status": "D", "deal_stage": "WON", "direction": "to_cms"}),
        'pipelines[0].rules[5].deal_stage: deal stage "WON" already maps to order status "F" '
        "in direction to_cms (rules[2])",
    ),
    "deal stage to two statuses (both + both)": (
        with_rules({"order_status": "D", "deal_stage": "NEW", "direction": "both"}),
        'pipelines[0].rules[5].deal_stage: deal stage "NEW" already maps to order status "N"',
    ),
    "identical duplicate rule": (
        with_rules({"order_status": "P", "deal_stage": "PREPARATION", "direction": "both"}),
        "pipelines[0].rules[5]: duplicate of rules[1]",
    ),
    "same pair again in an overlapping direction": (
        with_rules({"order_status": "F", "deal_stage": "WON", "direction": "to_crm"}),
        'pipelines[0].rules[5].order_status: order status "F" → "WON" in direction to_crm '
        "is already given by rules[2] (direction both)",
    ),
}


@pytest.mark.django_db
@pytest.mark.parametrize(("document", "problem"), REFUSALS.values(), ids=REFUSALS.keys())
def test_it_refuses_a_bad_mapping_and_changes_nothing(
    document: Any, problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run("import", str(EXAMPLE_FILE))
    before = export()
    err = io.StringIO()
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(document)))

    with pytest.raises(CommandError, match=r"^mapping not imported: \d+ problem\(s\); nothing changed$"):
        call_command("statusmap", "import", "-", stdout=io.StringIO(), stderr=err)

    assert f"<stdin>: {problem}" in err.getvalue()
    assert export() == before


def test_it_collects_every_problem_in_one_pass() -> None:
    document = {
        "awaiting_payment_statuses": [""],
        "pipelines": [
            {"pipeline": -1, "conflict_policy": "x", "rules": [{"order_status": "N", "deal_stage": "NEW"}]},
            {"pipeline": 1, "rules": [{"order_status": "N", "deal_stage": "", "direction": "up"}]},
            {"pipeline": 1, "paid_stage": 7, "rules": []},
        ],
    }
    with pytest.raises(MappingError) as caught:
        mapping_parse(data=document)
    assert caught.value.problems == [
        "awaiting_payment_statuses[0]: must not be empty",
        "pipelines[0].pipeline: must be a whole number ≥ 0 (0 is the default pipeline)",
        "pipelines[0].conflict_policy: must be one of latest, cms_wins, crm_wins, manual",
        "pipelines[1].rules[0].deal_stage: must not be empty",
        "pipelines[1].rules[0].direction: must be one of both, to_crm, to_cms",
        "pipelines[2].paid_stage: must be a string, not a number",
        "pipelines[2].pipeline: pipeline 1 is already defined in pipelines[1]",
    ]


@pytest.mark.django_db
def test_it_reports_invalid_json_with_its_line_and_changes_nothing(tmp_path: Path) -> None:
    run("import", str(EXAMPLE_FILE))
    before = export()
    bad = tmp_path / "mapping.json"
    bad.write_text(
        '{\n  "awaiting_payment_statuses": ["N"],\n  "pipelines": [\n    {"pipeline": 0,}\n  ]\n}\n'
    )

    with pytest.raises(CommandError, match=r"invalid JSON at line 4, column 20: .*nothing changed"):
        run("import", str(bad))
    assert export() == before


@pytest.mark.django_db
def test_it_refuses_a_key_given_twice_in_one_object(monkeypatch: pytest.MonkeyPatch) -> None:
    text = json.dumps(EXAMPLE).replace('"direction": "to_cms"', '"direction": "to_cms", "direction": "both"')
    with pytest.raises(CommandError, match='key "direction" appears twice'):
        run("import", "-", stdin=text, monkeypatch=monkeypatch)
    assert json.loads(export())["pipelines"] == []


@pytest.mark.django_db
def test_it_reads_a_file_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "mapping.json"
    path.write_text(EXAMPLE_FILE.read_text(encoding="utf-8"), encoding="utf-8-sig")
    run("import", str(path))
    assert json.loads(export()) == EXAMPLE


@pytest.mark.django_db
def test_it_names_a_missing_file_without_a_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(CommandError, match=rf"cannot read mapping file {missing}: No such file"):
        run("import", str(missing))


@pytest.mark.django_db
def test_it_requires_a_subcommand() -> None:
    with pytest.raises(CommandError, match=r"required: \{import,export,check\}"):
        run()


@pytest.mark.django_db
def test_it_says_whether_an_import_changed_anything() -> None:
    assert mapping_import(data=EXAMPLE).changed is True
    again = mapping_import(data=EXAMPLE)
    assert (again.changed, again.pipelines, again.rules, again.awaiting_payment_statuses) == (False, 1, 5, 1)
    assert mapping_import(data=with_rules(conflict_policy="manual")).changed is True


@pytest.mark.django_db
def test_it_checks_the_example_as_ok() -> None:
    run("import", str(EXAMPLE_FILE))
    out, err = run("check")
    assert out == "mapping OK: 1 pipeline(s), 5 rule(s), 1 awaiting-payment status(es)\n"
    assert err == PAID_STAGE_NOTE


@pytest.mark.django_db
def test_it_checks_an_empty_mapping_as_a_problem() -> None:
    err = io.StringIO()
    with pytest.raises(CommandError, match=r"mapping check found 1 problem\(s\)"):
        call_command("statusmap", "check", stdout=io.StringIO(), stderr=err)
    assert "no pipelines are mapped" in err.getvalue()


@pytest.mark.django_db
def test_it_checks_and_warns_about_what_it_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    document = {
        "awaiting_payment_statuses": ["N", "NN"],
        "pipelines": [
            {"pipeline": 1, "paid_stage": "C1:NEW", "rules": [{"order_status": "N", "deal_stage": "C1:NEW"}]},
            {"pipeline": 2, "rules": []},
        ],
    }
    _, import_err = import_document(document, monkeypatch)
    expected = [
        "warning: pipelines[1].rules: pipeline 2 has no rules: "
        "statuses and stages of its deals are never synced",
        "warning: pipelines[1].paid_stage: pipeline 2 has no paid stage: "
        "a payment moves its deals only through the status rules",
        "warning: awaiting_payment_statuses[1]: "
        'awaiting-payment status "NN" appears in no rule: is it a typo of a shop status?',
    ]
    assert import_err.splitlines() == expected

    err = io.StringIO()
    with pytest.raises(CommandError, match=r"mapping check found 3 problem\(s\)"):
        call_command("statusmap", "check", stdout=io.StringIO(), stderr=err)
    assert err.getvalue().splitlines() == expected


@pytest.mark.django_db
def test_it_refuses_stages_of_another_pipeline_which_the_crm_would_ignore(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    document = {
        "pipelines": [
            {"pipeline": 0, "paid_stage": "C1:PAID", "rules": [{"order_status": "N", "deal_stage": "NEW"}]},
            {"pipeline": 1, "paid_stage": "C1:NEW", "rules": [{"order_status": "N", "deal_stage": "NEW"}]},
        ],
    }
    err = io.StringIO()
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(document)))

    with pytest.raises(CommandError, match=r"mapping not imported: 2 problem\(s\)"):
        call_command("statusmap", "import", "-", stdout=io.StringIO(), stderr=err)

    assert err.getvalue().splitlines() == [
        '<stdin>: pipelines[0].paid_stage: "C1:PAID" looks like a stage of pipeline 1 (its C1: prefix); '
        "stages of pipeline 0 have no C<n>: prefix",
        '<stdin>: pipelines[1].rules[0].deal_stage: "NEW" does not start with C1: as stages of pipeline 1 do',
    ]


@pytest.mark.django_db
def test_it_loads_the_engine_mapping_with_one_way_rules() -> None:
    mapping_import(data=with_rules({"order_status": "D", "deal_stage": "EXECUTING", "direction": "to_crm"}))

    mapping = mapping_load()

    assert mapping.awaiting_payment_statuses == frozenset({"N"})
    assert set(mapping.pipelines) == {0}
    pm = mapping.pipelines[0]
    assert (pm.pipeline, pm.paid_stage, pm.conflict_policy, pm.success_stages) == (
        0,
        "PREPAYMENT_INVOICE",
        "latest",
        frozenset(),
    )
    assert pm.to_crm == {"N": "NEW", "P": "PREPARATION", "F": "WON", "C": "LOSE", "D": "EXECUTING"}
    # APOLOGY is to_cms only: a lost deal with an apology cancels the order, never the other way round.
    assert pm.to_cms == {"NEW": "N", "PREPARATION": "P", "WON": "F", "LOSE": "C", "APOLOGY": "C"}


@pytest.mark.django_db
def test_it_loads_the_mapping_in_at_most_five_queries(django_assert_max_num_queries: Any) -> None:
    """Three for the mapping, and its version before and after them (one consistent snapshot)."""
    mapping_import(
        data={
            "awaiting_payment_statuses": ["N"],
            "pipelines": [
                {"pipeline": n, "rules": [{"order_status": "N", "deal_stage": f"C{n}:NEW"}]}
                for n in range(1, 6)
            ],
        }
    )
    with django_assert_max_num_queries(5):
        mapping = mapping_load()
    assert len(mapping.pipelines) == 5


def test_it_runs_as_a_real_command_reading_stdin(tmp_path: Path) -> None:
    # A throwaway SQLite file: the pytest test database is not visible to a subprocess.
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}"}
    env.pop("BXSYNC_TEST_DB", None)

    def manage(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(REPO / "manage.py"), *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=120,
            check=False,
        )

    assert manage("migrate", "--no-input", "-v", "0").returncode == 0
    imported = manage("statusmap", "import", "-", stdin=EXAMPLE_FILE.read_text(encoding="utf-8"))
    assert (imported.returncode, imported.stdout) == (
        0,
        "mapping imported: 1 pipeline(s), 5 rule(s), 1 awaiting-payment status(es)\n",
    )

    refused = manage("statusmap", "import", "-", stdin=json.dumps(with_rules(conflict_policy="newest")))
    assert refused.returncode == 1
    assert "<stdin>: pipelines[0].conflict_policy: must be one of" in refused.stderr
    assert "mapping not imported: 1 problem(s); nothing changed" in refused.stderr
    assert "Traceback" not in refused.stderr

    exported = manage("statusmap", "export")
    assert exported.returncode == 0
    assert json.loads(exported.stdout) == EXAMPLE

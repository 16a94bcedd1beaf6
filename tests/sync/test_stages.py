"""A pipeline's stages: what the CRM's stage rows mean (pure, no database), and reading them for the sync."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from statussync.bitrix import client_for
from statussync.portals import PipelineStages, pipeline_stages_from_rows, stage_semantics
from statussync.sync.stages import pipeline_stages_read


@pytest.mark.parametrize(
    ("row", "meaning"),
    [
        ({"STATUS_ID": "NEW", "SEMANTICS": None, "EXTRA": {"SEMANTICS": "process"}}, "P"),
        ({"STATUS_ID": "UC_A1B2C3"}, "P"),  # a custom stage with neither field
        ({"STATUS_ID": "NEW", "EXTRA": []}, "P"),  # an empty PHP array arrives as [], not {}
        ({"STATUS_ID": "WON", "SEMANTICS": "S"}, "S"),
        ({"STATUS_ID": "WON", "SEMANTICS": None, "EXTRA": {"SEMANTICS": "success"}}, "S"),
        ({"STATUS_ID": "LOSE", "SEMANTICS": "F"}, "F"),
        ({"STATUS_ID": "LOSE", "EXTRA": {"SEMANTICS": "failure"}}, "F"),
        ({"STATUS_ID": "APOLOGY", "EXTRA": {"SEMANTICS": "apology"}}, "F"),
    ],
)
def test_it_reads_a_stages_meaning_from_semantics_or_extra(row, meaning):
    assert stage_semantics(row) == meaning


def test_it_orders_a_pipelines_stages_by_sort_without_its_failure_stages():
    rows = [
        {"STATUS_ID": "C1:WON", "SORT": "60", "SEMANTICS": "S", "EXTRA": {"SEMANTICS": "success"}},
        {"STATUS_ID": "C1:LOSE", "SORT": "70", "SEMANTICS": "F", "EXTRA": {"SEMANTICS": "failure"}},
        {"STATUS_ID": "C1:EXECUTING", "SORT": "40", "SEMANTICS": None, "EXTRA": {"SEMANTICS": "process"}},
        {"STATUS_ID": "C1:APOLOGY", "SORT": "5", "EXTRA": {"SEMANTICS": "apology"}},
        {"STATUS_ID": "C1:NEW", "SORT": "10", "SEMANTICS": None},
        {"STATUS_ID": "C1:UC_PACKED", "SORT": 100},  # a custom stage placed after WON by a manager
        {"STATUS_ID": "C1:PREPARATION", "SORT": 20},
    ]

    stages = pipeline_stages_from_rows(rows)

    assert stages.order == ("C1:NEW", "C1:PREPARATION", "C1:EXECUTING", "C1:WON", "C1:UC_PACKED")
    assert stages.success == frozenset({"C1:WON"})


def test_it_knows_no_stages_of_a_pipeline_the_crm_lists_none_for():
    assert pipeline_stages_from_rows([]) == PipelineStages()


def test_it_says_which_pipelines_stages_it_could_not_read_and_asks_again_next_time(sb):
    cache.delete("bxsync:pipeline-stages:1")
    sb.set_faults("crm", error_rate=1.0)

    found, errors = pipeline_stages_read(crm=client_for("crm"), pipelines=[1])

    assert (found, list(errors)) == ({}, [1])  # never "no stages", which reads as "not reached"
    sb.clear_faults("crm")
    found, errors = pipeline_stages_read(crm=client_for("crm"), pipelines=[1])

    assert errors == {}
    assert found[1].success == frozenset({"C1:WON"})
    assert found[1].order[0] == "C1:NEW"
    assert found[1].failure == frozenset({"C1:LOSE"})

"""The sync reads the mapping as one consistent snapshot (review finding 8): an import that replaces it (new
primary keys) committing between `mapping_load`'s queries never gives pipelines without their rules."""

from __future__ import annotations

import copy

import pytest
from django.db import connection

from statussync.mapping.store import mapping_import, mapping_load
from tests.support.mappings import two_pipelines


def _with_policy(document: dict, policy: str) -> dict:
    changed = copy.deepcopy(document)
    for pipeline in changed["pipelines"]:
        pipeline["conflict_policy"] = policy
    return changed


@pytest.mark.django_db
def test_it_never_loads_pipelines_without_their_rules_while_an_import_replaces_them():
    old = two_pipelines()
    mapping_import(data=old)
    new = _with_policy(old, "manual")
    imported = []

    def import_before_the_rules_are_read(execute, sql, params, many, context):
        # What READ COMMITTED allows: the import commits after the pipelines were read, before their rules.
        if not imported and "statussync_statusrule" in sql and "statussync_pipeline" not in sql:
            imported.append(True)
            mapping_import(data=new)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(import_before_the_rules_are_read):
        mapping = mapping_load()

    assert imported
    rules = {pid: dict(pm.to_crm) for pid, pm in mapping.pipelines.items()}
    assert all(rules.values()), "a pipeline came out without its rules"
    assert {pm.conflict_policy for pm in mapping.pipelines.values()} == {"manual"}  # the new one, whole

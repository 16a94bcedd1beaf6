"""Helpers for the mapping admin's tests: a change form as the browser posts it, and its rule rows."""

from __future__ import annotations

from typing import Any

PIPELINES_URL = "/admin/statussync/pipeline/"


def form_data(response) -> dict[str, Any]:
    """What the browser would post back for a rendered admin change form, unchanged."""
    data: dict[str, Any] = {}
    form = response.context["adminform"].form
    for name in form.fields:
        value = form[name].value()
        if value is None:
            continue
        if isinstance(value, list | tuple):
            data[form.add_prefix(name)] = list(value)
        else:
            data[form.add_prefix(name)] = value
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        for name in management.fields:
            data[management.add_prefix(name)] = management[name].value()
        for sub in formset.forms:
            for name in sub.fields:
                value = sub[name].value()
                if value is None or value is False:
                    continue
                data[sub.add_prefix(name)] = value
    return data


def rule_rows(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The rule rows of posted form data: (order status, deal stage, direction) in row order."""
    rows = []
    total = int(data["rules-TOTAL_FORMS"])
    for i in range(total):
        rows.append(
            (
                data.get(f"rules-{i}-order_status", ""),
                data.get(f"rules-{i}-deal_stage", ""),
                data.get(f"rules-{i}-direction", ""),
            )
        )
    return rows


def add_rows(data: dict[str, Any], *rows: tuple[str, str, str]) -> dict[str, Any]:
    """Posted form data with new rule rows appended."""
    data = dict(data)
    total = int(data["rules-TOTAL_FORMS"])
    # The page's own empty extra row(s) stay empty; new rows go after them.
    for offset, (status, stage, direction) in enumerate(rows):
        i = total + offset
        data[f"rules-{i}-order_status"] = status
        data[f"rules-{i}-deal_stage"] = stage
        data[f"rules-{i}-direction"] = direction
        data[f"rules-{i}-pipeline"] = data.get("rules-0-pipeline", "")
    data["rules-TOTAL_FORMS"] = str(total + len(rows))
    return data


def row_index(data: dict[str, Any], status: str, stage: str) -> int:
    """The index of the row with this status and stage."""
    for i, (s, t, _d) in enumerate(rule_rows(data)):
        if (s, t) == (status, stage):
            return i
    raise LookupError((status, stage))

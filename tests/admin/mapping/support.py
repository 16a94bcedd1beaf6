"""Helpers for the mapping admin's tests: users in the two groups, a change form as the browser posts it."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from statussync import roles

PIPELINES_URL = "/admin/statussync/pipeline/"


def user_in(group: str, username: str | None = None):
    """A staff user who belongs to `group` only ("Sync managers" or "Support")."""
    user = get_user_model().objects.create_user(
        username=username or group.lower().replace(" ", "-"), password="pw", is_staff=True
    )
    user.groups.add(Group.objects.get(name=group))
    return user


def client_for(group: str) -> Client:
    client = Client()
    client.force_login(user_in(group))
    return client


def manager_client() -> Client:
    return client_for(roles.SYNC_MANAGERS)


def support_client() -> Client:
    return client_for(roles.SUPPORT)


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

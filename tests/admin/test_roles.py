"""The two groups and the custom permissions every admin page uses (statussync/roles.py)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from statussync import roles
from tests.support.roles import user_make

pytestmark = pytest.mark.django_db


def codenames(group: str) -> set[str]:
    return set(Group.objects.get(name=group).permissions.values_list("codename", flat=True))


def test_it_creates_both_groups_with_their_permissions_on_migrate():
    managers, support = codenames(roles.SYNC_MANAGERS), codenames(roles.SUPPORT)

    custom = {p.split(".")[1] for p in roles.CUSTOM}
    assert custom <= managers
    assert {
        "change_pipeline",
        "add_statusrule",
        "delete_statusrule",
        "view_link",
        "view_auditentry",
    } <= managers
    assert support == {c for c in managers if c.startswith("view_")}
    assert "view_dashboard" in support


def test_it_gives_neither_group_django_q2s_pages(support_client):
    for group in (roles.SYNC_MANAGERS, roles.SUPPORT):
        user = user_make(f"q-{group}", groups=(group,))
        assert not user.has_module_perms("django_q")
    assert "/admin/django_q/" not in support_client.get("/admin/").content.decode()
    assert support_client.get("/admin/django_q/schedule/").status_code == 403


def test_it_lets_managers_and_only_them_refresh_names_and_resync(manager, support):

    for permission in (roles.REFRESH_CATALOG, roles.RESYNC_LINK, roles.REPAIR_LINK, roles.REPLAY_JOB):
        assert roles.user_can(manager, permission)
        assert not roles.user_can(support, permission)
    assert roles.user_can(support, roles.VIEW_DASHBOARD)


def test_it_shows_managers_the_mapping_tools_and_support_only_the_export(support_client, manager_client):
    managers_page = manager_client.get("/admin/statussync/pipeline/").content.decode()
    support_page = support_client.get("/admin/statussync/pipeline/").content.decode()

    assert "Import a mapping file" in managers_page
    assert "Refresh names from the portals" in managers_page
    assert "Import a mapping file" not in support_page
    assert "Refresh names from the portals" not in support_page
    assert "Export the mapping file" in support_page


def test_it_keeps_the_groups_after_a_database_flush(transactional_db):
    from django.core.management import call_command

    call_command("flush", "--no-input", verbosity=0)

    assert roles.REFRESH_CATALOG.split(".")[1] in codenames(roles.SYNC_MANAGERS)

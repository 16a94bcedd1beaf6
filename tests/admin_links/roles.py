"""The two roles of issue 7 for the links pages' tests: staff users in the groups the migrations create
(statussync/roles.py), with at least the permissions the links pages need (get_or_create, then add).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

MANAGERS = "Sync managers"
SUPPORT = "Support"

_VIEW = [
    "view_link",
    "view_job",
    "view_unmappedvalue",
    "view_linkproblem",
    "view_auditentry",
    "view_inboundevent",
]
PERMISSIONS = {
    MANAGERS: [
        *_VIEW,
        "resync_link",
        "repair_link",
        "replay_job",
        "discard_job",
        "view_pipeline",
        "change_pipeline",
        "add_pipeline",
    ],
    SUPPORT: _VIEW,
}


def role_group(name: str) -> Group:
    """The group `name` with (at least) the permissions the links pages expect of it."""
    group, _ = Group.objects.get_or_create(name=name)
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="statussync", codename__in=PERMISSIONS[name])
    )
    return group


def role_user(name: str, *, username: str | None = None):
    """A staff user in the role `name`."""
    user = get_user_model().objects.create_user(
        username=username or name.split()[-1].lower(), password="x", is_staff=True
    )
    user.groups.add(role_group(name))
    return user

"""The people of the admin tests: support staff, who may look at everything and change nothing."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

# What the "Support" group may do (issue 7, Roles): view links, the timeline, the audit and the dashboard.
SUPPORT_PERMISSIONS = [
    "view_link",
    "view_auditentry",
    "view_inboundevent",
    "view_job",
    "view_unmappedvalue",
    "view_dashboard",
]


def support_group() -> Group:
    """The "Support" group with its view permissions (the roles migration creates it; added here if not)."""
    group, _ = Group.objects.get_or_create(name="Support")
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="statussync", codename__in=SUPPORT_PERMISSIONS)
    )
    return group


PASSWORD = "correct-horse-battery-staple"


def support_make(username: str = "sasha", password: str = PASSWORD):
    """A staff user in the Support group: view permissions only."""
    user = get_user_model().objects.create_user(username=username, password=password, is_staff=True)
    user.groups.add(support_group())
    return user

"""Who may do what in the admin: the custom permissions of its actions, and the two groups.

Every custom permission of bxsync is named here (declared in the `Meta.permissions` of the model it is
about, which is where Django needs it). An admin action declares one of them with
`@admin.action(permissions=[...])` and a `has_<name>_permission` method that calls `user_can`, so one
string decides the button, the action and the 403.

- "Sync managers" edit the mapping and repair links: every view permission of bxsync, the mapping's
  add/change/delete, and every custom permission below.
- "Support" answer "why is order 123 in this status?": every view permission of bxsync and the dashboard;
  they change nothing.

django-q2's own pages (tasks, schedules, the broker queue) are for superusers: neither group gets their
permissions, so the admin does not show them.

The groups are created by a data migration and topped up after every `migrate` (a post_migrate handler),
so a model added later is viewable by both groups without another data migration, and the groups survive a
test database flush. Permissions are only ever added, never taken away: an operator may grant a group more
by hand.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps as global_apps

APP = "statussync"

# The custom permissions, as `user.has_perm` spells them.
RESYNC_LINK = "statussync.resync_link"
REPAIR_LINK = "statussync.repair_link"
REPLAY_JOB = "statussync.replay_job"
DISCARD_JOB = "statussync.discard_job"
REFRESH_CATALOG = "statussync.refresh_catalog"
VIEW_DASHBOARD = "statussync.view_dashboard"
# Run `bitrix doctor` again from the dashboard (Support see its report, through the dashboard).
RUN_DOCTOR = "statussync.run_doctor"
# The mapping editor: the stock model permissions of the pipeline mapping.
CHANGE_MAPPING = "statussync.change_pipeline"
VIEW_MAPPING = "statussync.view_pipeline"

CUSTOM = (RESYNC_LINK, REPAIR_LINK, REPLAY_JOB, DISCARD_JOB, REFRESH_CATALOG, VIEW_DASHBOARD, RUN_DOCTOR)

SYNC_MANAGERS = "Sync managers"
SUPPORT = "Support"

# The models a manager edits by hand: the mapping, and a portal connected as an application. Everything else
# is written by bxsync itself.
_MANAGER_EDITS = ("pipeline", "statusrule", "awaitingpaymentstatus", "connectedportal")
_SUPPORT_EXTRA = (VIEW_DASHBOARD,)


def _codename(permission: str) -> str:
    return permission.split(".", 1)[1]


def group_permissions(group: str, codenames: set[str]) -> set[str]:
    """The codenames (of app statussync) that `group` gets, out of those that exist."""
    views = {c for c in codenames if c.startswith("view_")}
    support = views | {_codename(p) for p in _SUPPORT_EXTRA}
    if group == SUPPORT:
        return support & codenames
    if group == SYNC_MANAGERS:
        edits = {f"{verb}_{model}" for verb in ("add", "change", "delete") for model in _MANAGER_EDITS}
        return (support | edits | {_codename(p) for p in CUSTOM}) & codenames
    raise ValueError(group)


def roles_ensure(*, apps: Any = global_apps, using: str = "default") -> None:
    """Create the two groups if needed and give them their permissions (adding, never removing)."""
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    permissions = {
        p.codename: p for p in permission_model.objects.using(using).filter(content_type__app_label=APP)
    }
    for name in (SYNC_MANAGERS, SUPPORT):
        group, _created = group_model.objects.using(using).get_or_create(name=name)
        wanted = group_permissions(name, set(permissions))
        group.permissions.add(*(permissions[c] for c in sorted(wanted)))


def roles_after_migrate(sender: Any, using: str = "default", apps: Any = global_apps, **_: Any) -> None:
    """post_migrate: top the groups up with the permissions of models added since (and after a flush)."""
    roles_ensure(apps=apps, using=using)


def user_can(user: Any, permission: str) -> bool:
    """Whether `user` holds `permission` (one of the constants above); superusers hold every one."""
    return bool(user and user.is_active and user.has_perm(permission))

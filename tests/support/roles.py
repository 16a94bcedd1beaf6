"""The one way the tests make admin users: staff users in the groups of statussync/roles.py, as an operator
would add them. The fixtures built on it (`manager`, `support`, `staff`, `manager_client`, `support_client`)
are in tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model

from statussync import roles

PASSWORD = "correct-horse-battery-staple"
MANAGERS = roles.SYNC_MANAGERS
SUPPORT = roles.SUPPORT


def role_group(role: str) -> Any:
    """The group of `role` with its permissions, as the migrations (and every `migrate` or flush after them)
    make it; made here with `roles_ensure` if a test's database somehow has none."""
    # Looked up at call time: tests/conftest.py imports this module before Django's apps are ready.
    group_model = apps.get_model("auth", "Group")
    group = group_model.objects.filter(name=role).first()
    if group is None:
        roles.roles_ensure()
        group = group_model.objects.get(name=role)
    return group


def user_make(
    username: str, *, groups: Iterable[str] = (), superuser: bool = False, password: str = PASSWORD
) -> Any:
    """A staff user who signs in with `password`, in the groups named (MANAGERS, SUPPORT), or a superuser."""
    user = get_user_model().objects.create_user(
        username=username, password=password, is_staff=True, is_superuser=superuser
    )
    user.groups.add(*(role_group(role) for role in groups))
    return user


def support_make(username: str = "sasha", password: str = PASSWORD) -> Any:
    """A staff user in Support (the browser tests' spelling of `user_make(..., groups=(SUPPORT,))`)."""
    return user_make(username, groups=(SUPPORT,), password=password)

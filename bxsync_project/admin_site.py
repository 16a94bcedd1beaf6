"""The admin site: Django's, with bxsync's own pages first in its menu."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

# The menu's sections in the order a manager needs them: the sync first, then who may log in, then the
# task queue and the login protection that only an operator opens (Django sorts them by name).
MENU_ORDER = ("statussync", "auth", "django_q", "axes")


class BxsyncAdminSite(admin.AdminSite):
    """The admin is bxsync's only site: no "View site" link to a page that does not exist."""

    site_url = None

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        apps = super().get_app_list(request, app_label)
        last = len(MENU_ORDER)
        return sorted(
            apps,
            key=lambda app: MENU_ORDER.index(app["app_label"]) if app["app_label"] in MENU_ORDER else last,
        )

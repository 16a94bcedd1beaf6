"""The catalog of names in the admin: what the shop calls its order statuses and the CRM its pipelines and
stages, as last read (read-only; a button reads them again)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from statussync import roles
from statussync.catalog import pipeline_label, status_name
from statussync.models import CatalogStage, CatalogStatus

from .base import ReadOnlyAdmin


class CatalogAdmin(ReadOnlyAdmin):
    """A read-only list with the "Refresh names from the portals" button (permission refresh_catalog)."""

    change_list_template = "admin/statussync/catalog_change_list.html"
    actions = None

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None):
        if request.method == "POST":
            raise PermissionDenied  # nothing here is changed by hand; the refresh has its own URL
        context = {
            **(extra_context or {}),
            "can_refresh_catalog": roles.user_can(request.user, roles.REFRESH_CATALOG),
        }
        return super().changelist_view(request, extra_context=context)


@admin.register(CatalogStatus)
class CatalogStatusAdmin(CatalogAdmin):
    list_display = ["code", "name", "sort", "present", "refreshed_at"]
    list_filter = ["present"]
    search_fields = ["code"]

    @admin.display(description=_("name"))
    def name(self, obj: CatalogStatus) -> str:
        return status_name(obj.code) or "—"


@admin.register(CatalogStage)
class CatalogStageAdmin(CatalogAdmin):
    list_display = ["code", "name", "pipeline", "sort", "semantics", "present", "refreshed_at"]
    list_filter = ["pipeline_id", "semantics", "present"]
    search_fields = ["code", "name"]

    @admin.display(description=_("pipeline"), ordering="pipeline_id")
    def pipeline(self, obj: CatalogStage) -> str:
        return pipeline_label(obj.pipeline_id)

"""The catalog of names in the admin: what the shop calls its order statuses and the CRM its pipelines and
stages, as last read (read-only), and the button that reads them again (permission refresh_catalog; on the
mapping's pages and these lists)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Max
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from statussync import roles
from statussync.mapping.catalog import pipeline_label, status_name
from statussync.mapping.catalog_refresh import catalog_refresh
from statussync.models import CatalogStage, CatalogStatus

from .base import PipelineFilter, ReadOnlyAdmin


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

    @admin.display(description=gettext_lazy("name"))
    def name(self, obj: CatalogStatus) -> str:
        return status_name(obj.code) or "—"


class CatalogPipelineFilter(PipelineFilter):
    """The stages' pipelines by name ("Общая (0)"), where Django's own filter listed bare ids."""

    parameter_name = "pipeline_id"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        ids = CatalogStage.objects.order_by("pipeline_id").values_list("pipeline_id", flat=True).distinct()
        return [(str(p), pipeline_label(p)) for p in ids]


@admin.register(CatalogStage)
class CatalogStageAdmin(CatalogAdmin):
    list_display = ["code", "name", "pipeline", "sort", "semantics", "present", "refreshed_at"]
    list_filter = [CatalogPipelineFilter, "semantics", "present"]
    search_fields = ["code", "name"]

    @admin.display(description=gettext_lazy("pipeline"), ordering="pipeline_id")
    def pipeline(self, obj: CatalogStage) -> str:
        return pipeline_label(obj.pipeline_id)


def catalog_refresh_view(model_admin: admin.ModelAdmin, request: HttpRequest) -> HttpResponse:
    """POST: read the names from both portals now (permission refresh_catalog), then go back."""
    if request.method != "POST":
        return HttpResponseRedirect(reverse("admin:statussync_pipeline_changelist"))
    if not roles.user_can(request.user, roles.REFRESH_CATALOG):
        raise PermissionDenied
    report = catalog_refresh()
    model_admin.message_user(
        request, report.describe(), messages.SUCCESS if not report.errors else messages.INFO
    )
    for portal, error in report.errors.items():
        where = _("the shop") if portal == "cms" else _("the CRM")
        model_admin.message_user(
            request,
            _("Could not read %(portal)s: %(error)s; its names stay as they were.")
            % {"portal": where, "error": error},
            messages.WARNING,
        )
    back = request.POST.get("next", "")
    if not back.startswith("/") or back.startswith("//"):
        back = reverse("admin:statussync_pipeline_changelist")
    return HttpResponseRedirect(back)


def catalog_refreshed_at():
    """When the names were last read from both portals (the older of the two), or None if never."""
    stamps = [
        CatalogStage.objects.aggregate(at=Max("refreshed_at"))["at"],
        CatalogStatus.objects.aggregate(at=Max("refreshed_at"))["at"],
    ]
    stamps = [s for s in stamps if s is not None]
    return min(stamps) if stamps else None

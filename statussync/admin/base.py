"""Admin building blocks shared by bxsync's pages."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy


class NamedListAdmin(admin.ModelAdmin):
    """A list page titled by what it lists ("CRM deal stages"), not by Django's "Select CRM deal stage to
    change": Russian declines the name after "Выберите", and Django puts it in as it stands ("Выберите
    стадия сделки CRM для просмотра"). A page's own title, given in `extra_context`, still wins."""

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        title = capfirst(self.model._meta.verbose_name_plural)
        return super().changelist_view(request, {"title": title, **(extra_context or {})})


class ReadOnlyAdmin(NamedListAdmin):
    """Records bxsync writes and nobody edits: viewable, never added, changed or deleted by hand."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class PipelineFilter(admin.SimpleListFilter):
    """A list filter by the CRM pipeline's id; each page names its parameter and lists its own pipelines.

    An id that is not a number matches nothing (an empty list, never a 500).
    """

    title = gettext_lazy("pipeline")
    parameter_name = "pipeline"

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() is None:
            return queryset
        try:
            return queryset.filter(pipeline_id=int(self.value()))
        except ValueError:
            return queryset.none()

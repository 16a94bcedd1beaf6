"""Links in the admin: each order ↔ deal pair with its base, and what needs attention."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction

from statussync.jobs import job_request
from statussync.models import JobKind, Link

from .base import ReadOnlyAdmin
from .timeline import LinkTimelineMixin


@admin.register(Link)
class LinkAdmin(LinkTimelineMixin, ReadOnlyAdmin):
    list_display = [
        "order_id",
        "deal_id",
        "state",
        "pipeline_id",
        "base_order_status",
        "base_deal_stage",
        "base_paid",
        "needs_attention",
        "updated_at",
    ]
    list_filter = ["state", "needs_attention", "pipeline_id", "base_paid"]
    search_fields = ["=order_id", "=deal_id"]
    exclude = ["intent_base"]
    actions = ["resync"]

    @admin.action(description="Resync selected links now (re-read both sides)")
    def resync(self, request, queryset) -> None:
        with transaction.atomic():
            for link in queryset:
                job_request(kind=JobKind.ORDER, entity_id=link.order_id, origin="admin", event="admin resync")
        self.message_user(request, f"Queued {queryset.count()} link(s) for resync.", messages.SUCCESS)

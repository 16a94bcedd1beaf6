"""The audit log in the admin: read-only, for support."""

from __future__ import annotations

from django.contrib import admin

from statussync.models import AuditEntry

from .base import ReadOnlyAdmin


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "outcome", "side", "event", "order_id", "deal_id", "message", "latency_ms"]
    list_filter = ["outcome", "side", "origin"]
    search_fields = ["=order_id", "=deal_id", "message"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    list_select_related = ["link"]

"""The Django admin: the mapping (editable), links, pending work and the read-only audit log.

A first cut: enough to watch sync happen and to edit the mapping. Resync/replay actions and the support group
come with the admin issue.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction

from statussync.jobs import job_request, jobs_replay
from statussync.models import (
    AuditEntry,
    AwaitingPaymentStatus,
    InboundEvent,
    Job,
    JobKind,
    Link,
    Pipeline,
    StatusRule,
    UnmappedValue,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records bxsync writes and nobody edits: viewable, never added, changed or deleted by hand."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class StatusRuleInline(admin.TabularInline):
    model = StatusRule
    extra = 1


@admin.register(Pipeline)
class PipelineAdmin(admin.ModelAdmin):
    list_display = ["pipeline_id", "paid_stage", "conflict_policy"]
    inlines = [StatusRuleInline]


@admin.register(AwaitingPaymentStatus)
class AwaitingPaymentStatusAdmin(admin.ModelAdmin):
    list_display = ["order_status"]


@admin.register(Link)
class LinkAdmin(ReadOnlyAdmin):
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


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "outcome", "side", "event", "order_id", "deal_id", "message", "latency_ms"]
    list_filter = ["outcome", "side", "origin"]
    search_fields = ["=order_id", "=deal_id", "message"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    list_select_related = ["link"]


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "entity_id", "queue", "state", "attempts", "events_coalesced", "not_before"]
    list_filter = ["state", "queue", "kind", "origin"]
    search_fields = ["=entity_id"]
    exclude = ["claim_token"]
    actions = ["replay"]

    @admin.action(description="Replay selected dead-letter jobs")
    def replay(self, request, queryset) -> None:
        with transaction.atomic():
            replayed = jobs_replay(job_ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"Queued {replayed} dead-letter job(s) again.", messages.SUCCESS)


@admin.register(InboundEvent)
class InboundEventAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "side", "event", "entity_id", "ts", "duplicates"]
    list_filter = ["side", "event"]
    search_fields = ["=entity_id"]
    show_full_result_count = False


@admin.register(UnmappedValue)
class UnmappedValueAdmin(ReadOnlyAdmin):
    list_display = ["side", "pipeline_id", "value", "times_seen", "first_seen", "last_seen"]
    list_filter = ["side", "pipeline_id"]

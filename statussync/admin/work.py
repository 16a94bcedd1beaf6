"""Pending work in the admin: jobs (and the dead-letter list), inbound events, unmapped values."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction

from statussync.jobs import jobs_replay
from statussync.models import InboundEvent, Job, UnmappedValue

from .base import ReadOnlyAdmin


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

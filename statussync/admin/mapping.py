"""The mapping in the admin: pipelines with their rules, and the awaiting-payment statuses."""

from __future__ import annotations

from django.contrib import admin

from statussync.models import AwaitingPaymentStatus, Pipeline, StatusRule


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

"""Pending work in the admin: jobs, the dead-letter list (replay or discard), inbound events, and the unmapped
values seen, each with a way to add the missing rule."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.translation import gettext, ngettext, ngettext_lazy
from django.utils.translation import gettext_lazy as _

from statussync.bulk import INLINE_LIMIT, bulk_operation_start
from statussync.jobs import jobs_discard, jobs_replay
from statussync.mapping import catalog
from statussync.models import (
    DeadLetter,
    Direction,
    InboundEvent,
    Job,
    JobKind,
    JobState,
    Link,
    Pipeline,
    Side,
    StatusRule,
    UnmappedValue,
)

from .actions import SAMPLE_SIZE, ActionPermissionMixin, action_confirmed, confirmation_page
from .base import PipelineFilter, ReadOnlyAdmin
from .labels import ago, deal_html, order_html, wrappable


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "entity_id", "queue", "state", "attempts", "events_coalesced", "not_before"]
    list_filter = ["state", "queue", "kind", "origin"]
    search_fields = ["=entity_id"]
    show_full_result_count = False
    exclude = ["claim_token"]


def _entity_html(job: Job) -> str:
    if job.kind == JobKind.ORDER:
        return format_html("{} {}", gettext("order"), order_html(job.entity_id))
    if job.kind == JobKind.DEAL:
        return format_html("{} {}", gettext("deal"), deal_html(job.entity_id))
    return format_html("{} {}", gettext("payment"), job.entity_id)


class DeadLetterStateFilter(admin.SimpleListFilter):
    """Waiting for a decision by default; the discarded ones stay listed for the record."""

    title = _("state")
    parameter_name = "letter_state"

    def lookups(self, request, model_admin):
        return [("discarded", _("Discarded"))]

    def choices(self, changelist):
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": _("Waiting for a decision"),
        }
        yield {
            "selected": self.value() == "discarded",
            "query_string": changelist.get_query_string({self.parameter_name: "discarded"}),
            "display": _("Discarded"),
        }

    def queryset(self, request, queryset):
        state = JobState.DISCARDED if self.value() == "discarded" else JobState.DEAD
        return queryset.filter(state=state)


REPLAY_TEXT = {
    "title": _("Replay failed work"),
    "question": ngettext_lazy("Replay %(count)d failed job?", "Replay %(count)d failed jobs?", "count"),
    "consequences": (
        _(
            "Each order or deal is queued again with a fresh set of attempts; bxsync reads both sides as "
            "they are now, so nothing stale is written."
        ),
    ),
    "button": _("Yes, replay"),
    "done": ngettext_lazy(
        "Queued %(count)d failed job again; it runs in a moment.",
        "Queued %(count)d failed jobs again; they run in a moment.",
        "count",
    ),
    "background": ngettext_lazy(
        "Started in the background: replaying %(count)d failed job. Here is how far it got.",
        "Started in the background: replaying %(count)d failed jobs. Here is how far it got.",
        "count",
    ),
}
DISCARD_TEXT = {
    "title": _("Discard failed work"),
    "question": ngettext_lazy("Discard %(count)d failed job?", "Discard %(count)d failed jobs?", "count"),
    "consequences": (
        _("bxsync gives up on this work: it is not tried again."),
        _(
            "Each stays listed as discarded, and the audit records who discarded it and its error; the next "
            "event or reconciliation of the order or deal syncs it as usual."
        ),
    ),
    "button": _("Yes, discard"),
    "done": ngettext_lazy(
        "Discarded %(count)d failed job; it is kept in the list of discarded work.",
        "Discarded %(count)d failed jobs; they are kept in the list of discarded work.",
        "count",
    ),
    "background": ngettext_lazy(
        "Started in the background: discarding %(count)d failed job. Here is how far it got.",
        "Started in the background: discarding %(count)d failed jobs. Here is how far it got.",
        "count",
    ),
}
BACKGROUND_NOTE = _(
    "This many failed jobs are handled in the background, a few hundred at a time; you will see its progress."
)


@admin.register(DeadLetter)
class DeadLetterAdmin(ActionPermissionMixin, ReadOnlyAdmin):
    list_display = ["died_column", "entity_column", "error_column", "attempts", "origin_column"]
    list_display_links = None
    list_filter = [DeadLetterStateFilter, "kind", "queue"]
    search_fields = ["=entity_id"]
    search_help_text = _("An order, deal or payment id, exactly (an order's finds its deal's work too).")
    show_full_result_count = False
    ordering = ["-finished_at", "-id"]
    actions = ["replay", "discard"]

    class Media:
        css = {"all": ["statussync/links.css"]}

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        # A view of the jobs: whoever may see jobs sees their dead letters (no permission of its own).
        return request.user.has_perm("statussync.view_job")

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("statussync.replay_job")

    def has_discard_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("statussync.discard_job")

    def get_search_results(self, request, queryset, search_term):
        """An exact id; an order's id finds its deal's failed work too, and the other way round."""
        term = search_term.strip()
        if not term:
            return queryset, False
        links = Link.objects.filter(Q(order_id=term) | Q(deal_id=term))
        pairs = list(links.values_list("order_id", "deal_id"))
        orders = {term, *(order for order, _ in pairs)}
        deals = {term, *(deal for _, deal in pairs)}
        found = (
            Q(kind=JobKind.ORDER, entity_id__in=orders)
            | Q(kind=JobKind.DEAL, entity_id__in=deals)
            | Q(kind=JobKind.PAYMENT, entity_id=term)
        )
        return queryset.filter(found), False

    @admin.display(description=_("Failed"), ordering="finished_at")
    def died_column(self, job: Job) -> str:
        moment = job.finished_at or job.updated_at
        return format_html(
            '<span title="{}">{}</span>',
            date_format(timezone.localtime(moment), "DATETIME_FORMAT"),
            ago(moment),
        )

    @admin.display(description=_("Work on"))
    def entity_column(self, job: Job) -> str:
        return _entity_html(job)

    @admin.display(description=_("Error"))
    def error_column(self, job: Job) -> str:
        first = (job.last_error or "").splitlines()[0] if job.last_error else "—"
        return format_html('<span title="{}">{}</span>', job.last_error, first[:200])

    @admin.display(description=_("Asked for by"))
    def origin_column(self, job: Job) -> str:
        who = {
            "event": gettext("a webhook event"),
            "reconcile": gettext("reconciliation"),
            "admin": gettext("a manager"),
        }.get(job.origin, job.origin)
        detail = job.event if job.event and job.event != job.origin else ""
        return format_html('{}<div class="bxsync-why">{}</div>', who, detail) if detail else who

    def changelist_view(self, request: HttpRequest, extra_context=None):
        title = gettext("Dead letters: work that failed for good")
        return super().changelist_view(request, {"title": title, **(extra_context or {})})

    @admin.action(description=_("Replay: try the selected work again"), permissions=["replay"])
    def replay(self, request, queryset):
        return self._act(request, queryset.filter(state=JobState.DEAD), "replay", REPLAY_TEXT)

    @admin.action(
        description=_("Discard: give up the selected work (kept on record)"), permissions=["discard"]
    )
    def discard(self, request, queryset):
        return self._act(request, queryset.filter(state=JobState.DEAD), "discard", DISCARD_TEXT)

    def _act(self, request: HttpRequest, queryset: QuerySet[Job], name: str, text: dict):
        count = queryset.count()
        if not action_confirmed(request):
            first = queryset[:SAMPLE_SIZE]
            sample = [f"{job.get_kind_display()} {job.entity_id}: {job.last_error[:120]}" for job in first]
            return confirmation_page(
                self,
                request,
                action=name,
                title=str(text["title"]),
                question=text["question"] % {"count": count},
                consequences=[
                    str(line)
                    for line in (*text["consequences"], *([BACKGROUND_NOTE] if count > INLINE_LIMIT else []))
                ],
                button=str(text["button"]),
                sample=sample,
                count=count,
                danger=name == "discard",
            )
        ids = list(queryset.values_list("id", flat=True))
        if count > INLINE_LIMIT:
            # Thousands in one transaction would hold the database (on SQLite every webhook's write).
            operation = bulk_operation_start(action=name, link_ids=ids, user=request.user)
            self.message_user(request, text["background"] % {"count": count}, messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:statussync_bulkoperation_change", args=[operation.pk]))
        with transaction.atomic():
            if name == "replay":
                acted = jobs_replay(job_ids=ids)
            else:
                acted = jobs_discard(job_ids=ids, user=request.user.get_username())
        self.message_user(request, text["done"] % {"count": acted}, messages.SUCCESS)
        return None


@admin.register(InboundEvent)
class InboundEventAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "side", "event", "entity_id", "ts", "duplicates"]
    list_filter = ["side", "event"]
    search_fields = ["=entity_id"]
    show_full_result_count = False


def _rule_exists() -> tuple[Exists, Exists]:
    """Whether the mapping has a rule for the value now (added since it was seen)."""
    cms = Q(
        pipeline__pipeline_id=OuterRef("pipeline_id"),
        order_status=OuterRef("value"),
        direction__in=[Direction.BOTH, Direction.TO_CRM],
    )
    crm = Q(
        pipeline__pipeline_id=OuterRef("pipeline_id"),
        deal_stage=OuterRef("value"),
        direction__in=[Direction.BOTH, Direction.TO_CMS],
    )
    # One side's value needs its own side's rule: a shop status a rule towards the CRM, a stage one back.
    return Exists(StatusRule.objects.filter(cms)), Exists(StatusRule.objects.filter(crm))


class UnmappedPipelineFilter(PipelineFilter):
    def lookups(self, request, model_admin):
        ids = UnmappedValue.objects.order_by("pipeline_id").values_list("pipeline_id", flat=True).distinct()
        return [(str(p), catalog.pipeline_label(p)) for p in ids]  # "Общая (0)", not a bare id


@admin.register(UnmappedValue)
class UnmappedValueAdmin(ReadOnlyAdmin):
    list_display = ["value_column", "side", "pipeline_column", "seen_column"]
    list_display_links = None
    list_filter = ["side", UnmappedPipelineFilter]
    ordering = ["-last_seen"]
    show_full_result_count = False

    class Media:
        css = {"all": ["statussync/links.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[UnmappedValue]:
        pipeline = Pipeline.objects.filter(pipeline_id=OuterRef("pipeline_id")).values("pk")[:1]
        status_rule, stage_rule = _rule_exists()
        return (
            super()
            .get_queryset(request)
            .annotate(pipeline_pk=Subquery(pipeline), status_rule=status_rule, stage_rule=stage_rule)
        )

    def get_list_display(self, request: HttpRequest):
        can_edit = request.user.has_perm("statussync.change_pipeline")

        @admin.display(description=_("Add a rule"))
        def add_rule(value: UnmappedValue) -> str:
            return _add_rule_html(value, can_edit=can_edit)

        return [*self.list_display, add_rule]

    def changelist_view(self, request: HttpRequest, extra_context=None):
        title = gettext("Unmapped values seen: nothing was written for these")
        return super().changelist_view(request, {"title": title, **(extra_context or {})})

    @admin.display(description=_("Value"), ordering="value")
    def value_column(self, value: UnmappedValue) -> str:
        if value.side == Side.CMS:
            return wrappable(catalog.status_label(value.value))
        return wrappable(catalog.stage_label(value.value))

    @admin.display(description=_("Pipeline"), ordering="pipeline_id")
    def pipeline_column(self, value: UnmappedValue) -> str:
        return str(value.pipeline_id)

    @admin.display(description=_("Seen"), ordering="-times_seen")
    def seen_column(self, value: UnmappedValue) -> str:
        times = ngettext("%(count)d time", "%(count)d times", value.times_seen) % {"count": value.times_seen}
        return format_html(
            '{}<div class="bxsync-why">{}</div>',
            times,
            gettext("first %(first)s, last %(last)s")
            % {"first": ago(value.first_seen), "last": ago(value.last_seen)},
        )


def _add_rule_html(value: UnmappedValue, *, can_edit: bool) -> str:
    """A link to the pipeline's mapping editor with a rule for the value filled in (`add_rule_status` /
    `add_rule_stage`, which the editor reads)."""
    has_rule = getattr(value, "status_rule" if value.side == Side.CMS else "stage_rule", False)
    if has_rule:
        return format_html('<span class="bxsync-state bxsync-in_sync">{}</span>', gettext("Rule added"))
    if not can_edit:
        return "—"
    param = "add_rule_status" if value.side == Side.CMS else "add_rule_stage"
    pk = getattr(value, "pipeline_pk", None)
    if pk is not None:
        url = reverse("admin:statussync_pipeline_change", args=[pk])
        query = urlencode({param: value.value})
    else:  # no mapping for this pipeline yet: start one
        url = reverse("admin:statussync_pipeline_add")
        query = urlencode({"pipeline_id": value.pipeline_id, param: value.value})
    label = gettext("Add a rule for this value")
    return format_html('<a class="button bxsync-nowrap" href="{}?{}">{}</a>', url, query, label)

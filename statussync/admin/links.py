"""Links in the admin: each order ↔ deal pair as both portals showed it last, the state it is in and why, the
actions managers take on links (resync, take one side's value, rediscover), the link problems a manager must
settle, and the background operations that act on thousands of links.

The link's own page (its timeline) belongs to the timeline page; this module leaves `LinkAdmin.change_view`
alone and links to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from django.utils.translation import gettext, ngettext, ngettext_lazy
from django.utils.translation import gettext_lazy as _

from statussync.bulk import INLINE_LIMIT, bulk_operation_start
from statussync.links import ProblemResolveError, link_problem_resolve, links_act
from statussync.mapping import catalog
from statussync.models import (
    BulkAction,
    BulkOperation,
    BulkState,
    Job,
    JobKind,
    JobState,
    Link,
    LinkProblem,
    LinkProblemKind,
    LinkProblemState,
    LinkState,
    Pipeline,
)

from .actions import SAMPLE_SIZE, ActionPermissionMixin, action_confirmed, confirmation_page
from .base import PipelineFilter, ReadOnlyAdmin
from .labels import ago, deal_html, order_html, order_page_url, portal_anchor, wrappable
from .timeline import LinkTimelineMixin, reason_text

# --- A link's state -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkStatus:
    """What the links list says about a link: a kind (for the filter and the colour), a label and why."""

    kind: str
    label: str
    why: str = ""


# Attention reason codes (statussync.reasons) by the kind of trouble they are.
ATTENTION_KINDS: dict[str, tuple[str, ...]] = {
    "conflict": ("conflict_tie", "conflict_manual"),
    "regression": ("regression",),
    "unmapped": ("status_unmapped", "stage_unmapped", "pipeline_unmapped"),
    "ambiguous": ("deal_names_other_order", "deal_names_no_order"),
}
KIND_LABELS = {
    "in_sync": _("In sync"),
    "new": _("Not synced yet"),
    "conflict": _("Conflict"),
    "regression": _("Regression blocked"),
    "unmapped": _("Unmapped"),
    "ambiguous": _("Ambiguous"),
    "error": _("Error"),
    "attention": _("Needs attention"),
    "closed": _("Closed"),
}


def link_status(link: Link) -> LinkStatus:
    """The link's state: closed, failed work (dead letters), the attention reason's kind, or in sync."""
    if link.state == LinkState.CLOSED:
        return LinkStatus(
            "closed", str(KIND_LABELS["closed"]), reason_text(reason=link.closure, message=link.close_reason)
        )
    if getattr(link, "has_dead_letters", False):
        return LinkStatus("error", str(KIND_LABELS["error"]), gettext("work on this link failed"))
    if link.needs_attention:
        code = (link.attention or {}).get("code", "") if isinstance(link.attention, dict) else ""
        kind = next((k for k, codes in ATTENTION_KINDS.items() if code in codes), "attention")
        return LinkStatus(
            kind, str(KIND_LABELS[kind]), reason_text(reason=link.attention, message=link.attention_reason)
        )
    if link.base_at is None:
        return LinkStatus("new", str(KIND_LABELS["new"]))
    return LinkStatus("in_sync", str(KIND_LABELS["in_sync"]))


def _dead_letters() -> Exists:
    """Whether failed work (a dead-letter job) is waiting on the link's order or deal."""
    return Exists(
        Job.objects.filter(state=JobState.DEAD).filter(
            Q(kind=JobKind.ORDER, entity_id=OuterRef("order_id"))
            | Q(kind=JobKind.DEAL, entity_id=OuterRef("deal_id"))
        )
    )


class LinkStateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [
            ("in_sync", KIND_LABELS["in_sync"]),
            ("attention", _("Needs attention (any reason)")),
            ("conflict", KIND_LABELS["conflict"]),
            ("regression", KIND_LABELS["regression"]),
            ("unmapped", KIND_LABELS["unmapped"]),
            ("ambiguous", KIND_LABELS["ambiguous"]),
            ("error", KIND_LABELS["error"]),
            ("closed", KIND_LABELS["closed"]),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        active = queryset.filter(state=LinkState.ACTIVE)
        if value == "in_sync":
            return active.filter(needs_attention=False, base_at__isnull=False, has_dead_letters=False)
        if value == "attention":
            return active.filter(Q(needs_attention=True) | Q(has_dead_letters=True))
        if value in ATTENTION_KINDS:
            return active.filter(needs_attention=True, attention__code__in=ATTENTION_KINDS[value])
        if value == "error":
            return active.filter(has_dead_letters=True)
        if value == "closed":
            return queryset.filter(state=LinkState.CLOSED)
        return queryset


class LinkPipelineFilter(PipelineFilter):
    """Pipelines from the mapping (a small table), not a DISTINCT over every link."""

    def lookups(self, request, model_admin):
        pipelines = Pipeline.objects.values_list("pipeline_id", flat=True)
        return [(str(p), catalog.pipeline_label(p)) for p in pipelines]


# --- The links list and its actions -------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkActionText:
    """What a link action's confirmation page and message say."""

    title: Any
    question: Any  # ngettext_lazy(..., "count"): formatted with {"count": n}
    consequences: tuple[Any, ...]
    button: Any
    done: Any  # likewise


LINK_ACTIONS: dict[str, LinkActionText] = {
    BulkAction.RESYNC: LinkActionText(
        title=_("Resync links"),
        question=ngettext_lazy("Resync %(count)d link?", "Resync %(count)d links?", "count"),
        consequences=(
            _(
                "bxsync reads the order and the deal again and decides as it does for an event: a side that "
                "changed since they last agreed is passed on to the other."
            ),
            _("Nothing is written where both sides already agree."),
        ),
        button=_("Yes, resync"),
        done=ngettext_lazy(
            "Queued %(count)d link for resync: bxsync reads its order and deal again in a moment.",
            "Queued %(count)d links for resync: bxsync reads their orders and deals again in a moment.",
            "count",
        ),
    ),
    BulkAction.TAKE_SHOP: LinkActionText(
        title=_("Take the shop's value"),
        question=ngettext_lazy(
            "Make the deal follow its order for %(count)d link?",
            "Make the deals follow their orders for %(count)d links?",
            "count",
        ),
        consequences=(
            _(
                "Each deal is moved to the stage mapped to its order's status now, even where the deal was "
                "changed later."
            ),
            _("A payment still comes first: the deal of a paid order still goes to the paid stage."),
            _("Links whose order and deal already agree are left as they are."),
        ),
        button=_("Yes, take the shop's value"),
        done=ngettext_lazy(
            "Queued %(count)d link: its deal will follow its order's status.",
            "Queued %(count)d links: each deal will follow its order's status.",
            "count",
        ),
    ),
    BulkAction.TAKE_CRM: LinkActionText(
        title=_("Take the CRM's value"),
        question=ngettext_lazy(
            "Make the order follow its deal for %(count)d link?",
            "Make the orders follow their deals for %(count)d links?",
            "count",
        ),
        consequences=(
            _(
                "Each order gets the status mapped to its deal's stage now, even where the order was "
                "changed later."
            ),
            _("A paid order is never sent back to awaiting payment: such a link stays flagged."),
            _("Links whose order and deal already agree are left as they are."),
        ),
        button=_("Yes, take the CRM's value"),
        done=ngettext_lazy(
            "Queued %(count)d link: its order will follow its deal's stage.",
            "Queued %(count)d links: each order will follow its deal's stage.",
            "count",
        ),
    ),
    BulkAction.REDISCOVER: LinkActionText(
        title=_("Rediscover links"),
        question=ngettext_lazy(
            "Close %(count)d link and find the order's deal again?",
            "Close %(count)d links and find each order's deal again?",
            "count",
        ),
        consequences=(
            _(
                "Each link is closed, with you named as who closed it, and bxsync looks for the deal whose "
                "order field names the order now."
            ),
            _(
                "If no deal names the order, it stays unlinked; if several do, it appears among the link "
                "problems for you to choose."
            ),
        ),
        button=_("Yes, close and rediscover"),
        done=ngettext_lazy(
            "Closed %(count)d link; bxsync is looking for its order's deal again.",
            "Closed %(count)d links; bxsync is looking for each order's deal again.",
            "count",
        ),
    ),
}
BACKGROUND_NOTE = _(
    "This many links are handled in the background, a few hundred at a time; you will see its progress."
)


class LinkList:
    """The links list as support reads it: each side now, the base, the state; filters and exact-id search.

    A mixin of ``LinkAdmin``, which adds what managers do to links (the actions)."""

    list_display = [
        "order_column",
        "deal_column",
        "shop_now",
        "crm_now",
        "base_column",
        "state_column",
        "last_sync",
    ]
    # The order id links to the link's own page; the ids' "shop ↗" / "CRM ↗" open the portals.
    list_display_links = None
    list_filter = [LinkStateFilter, LinkPipelineFilter]
    search_fields = ["=order_id", "=deal_id"]
    search_help_text = _("An order or deal id, exactly.")
    show_full_result_count = False
    ordering = ["-id"]
    exclude = ["intent_base"]

    class Media:
        css = {"all": ["statussync/links.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Link]:
        return super().get_queryset(request).annotate(has_dead_letters=_dead_letters())

    def get_search_results(self, request, queryset, search_term):
        """Exact ids, compared as stored: the stock "=" search is case-insensitive (UPPER(...) on
        PostgreSQL), which no index on the id columns serves."""
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(order_id=term) | Q(deal_id=term)), False

    # Columns.

    @admin.display(description=_("Order"), ordering="order_id")
    def order_column(self, link: Link) -> str:
        page = reverse("admin:statussync_link_change", args=[link.pk])
        return format_html(
            '<a href="{}" title="{}"><strong>{}</strong></a>{}',
            page,
            gettext("What happened to this link"),
            link.order_id,
            portal_anchor(order_page_url(link.order_id), gettext("shop"), gettext("Open in the shop")),
        )

    @admin.display(description=_("Deal"), ordering="deal_id")
    def deal_column(self, link: Link) -> str:
        if link.pipeline_id is None:
            return deal_html(link.deal_id)
        pipeline = catalog.pipeline_label(link.pipeline_id)
        sub = format_html('<div class="bxsync-why bxsync-nowrap">{}</div>', pipeline)
        return format_html("{}{}", deal_html(link.deal_id), sub)

    @admin.display(description=_("Shop status now"))
    def shop_now(self, link: Link) -> str:
        if not link.last_order_status:
            return "—"
        paid = (
            format_html(' <span class="bxsync-paid">{}</span>', gettext("paid"))
            if link.last_order_paid
            else ""
        )
        return format_html("{}{}", wrappable(catalog.status_label(link.last_order_status)), paid)

    @admin.display(description=_("CRM stage now"))
    def crm_now(self, link: Link) -> str:
        return wrappable(catalog.stage_label(link.last_deal_stage)) if link.last_deal_stage else "—"

    @admin.display(description=_("Agreed (base)"))
    def base_column(self, link: Link) -> str:
        if link.base_at is None:
            return "—"
        paid = format_html(' <span class="bxsync-paid">{}</span>', gettext("paid")) if link.base_paid else ""
        return format_html(
            '<span class="bxsync-base">{} ↔ {}</span>{}',
            wrappable(catalog.status_label(link.base_order_status)),
            wrappable(catalog.stage_label(link.base_deal_stage)),
            paid,
        )

    @admin.display(description=_("State"))
    def state_column(self, link: Link) -> str:
        status = link_status(link)
        why = format_html('<div class="bxsync-why">{}</div>', status.why) if status.why else ""
        if status.kind == "error":
            letters = reverse("admin:statussync_deadletter_changelist")
            why = format_html(
                '<div class="bxsync-why">{} <a href="{}?{}">{}</a></div>',
                status.why,
                letters,
                urlencode({"q": link.order_id}),
                gettext("See the failed work"),
            )
        return format_html('<span class="bxsync-state bxsync-{}">{}</span>{}', status.kind, status.label, why)

    @admin.display(description=_("Last sync"), ordering="last_read_at")
    def last_sync(self, link: Link) -> str:
        if link.last_read_at is None:
            return "—"
        return format_html(
            '<span title="{}">{}</span>',
            date_format(timezone.localtime(link.last_read_at), "DATETIME_FORMAT"),
            ago(link.last_read_at),
        )


@admin.register(Link)
class LinkAdmin(LinkList, LinkTimelineMixin, ActionPermissionMixin, ReadOnlyAdmin):
    """Links: the list (``LinkList``), each link's timeline (``LinkTimelineMixin``) and the actions below."""

    actions = ["resync", "take_shop", "take_crm", "rediscover"]

    # Actions: each asks first, then queues work for the sync run (or a background operation).

    @admin.action(description=_("Resync: read the order and the deal again"), permissions=["resync"])
    def resync(self, request, queryset):
        return self._act(request, queryset, BulkAction.RESYNC, "resync")

    @admin.action(description=_("Take the shop's value: the deal follows the order"), permissions=["resync"])
    def take_shop(self, request, queryset):
        return self._act(request, queryset, BulkAction.TAKE_SHOP, "take_shop")

    @admin.action(description=_("Take the CRM's value: the order follows the deal"), permissions=["resync"])
    def take_crm(self, request, queryset):
        return self._act(request, queryset, BulkAction.TAKE_CRM, "take_crm")

    @admin.action(
        description=_("Rediscover: close the link and find the order's deal again"), permissions=["repair"]
    )
    def rediscover(self, request, queryset):
        return self._act(request, queryset, BulkAction.REDISCOVER, "rediscover")

    def has_resync_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("statussync.resync_link")

    def has_repair_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("statussync.repair_link")

    def _act(self, request: HttpRequest, queryset: QuerySet[Link], action: str, name: str):
        text = LINK_ACTIONS[action]
        count = queryset.count()
        if not action_confirmed(request):
            consequences = list(text.consequences)
            if count > INLINE_LIMIT:
                consequences.append(BACKGROUND_NOTE)
            return confirmation_page(
                self,
                request,
                action=name,
                title=str(text.title),
                question=text.question % {"count": count},
                consequences=[str(line) for line in consequences],
                button=str(text.button),
                sample=[_link_line(link) for link in queryset[:SAMPLE_SIZE]],
                count=count,
                danger=action == BulkAction.REDISCOVER,
            )
        if count > INLINE_LIMIT:
            ids = list(queryset.values_list("id", flat=True))
            operation = bulk_operation_start(action=action, link_ids=ids, user=request.user)
            self.message_user(
                request,
                ngettext(
                    "Started in the background: %(action)s on %(count)d link. Here is how far it got.",
                    "Started in the background: %(action)s on %(count)d links. Here is how far it got.",
                    count,
                )
                % {"action": str(text.title).lower(), "count": count},
                messages.SUCCESS,
            )
            return HttpResponseRedirect(reverse("admin:statussync_bulkoperation_change", args=[operation.pk]))
        with transaction.atomic():
            acted = links_act(
                action=action,
                link_ids=list(queryset.values_list("id", flat=True)),
                user=request.user.get_username(),
            )
        if acted.done:
            self.message_user(request, text.done % {"count": acted.done}, messages.SUCCESS)
        if acted.skipped:
            self.message_user(
                request,
                ngettext(
                    "%(count)d closed link was left as it is.",
                    "%(count)d closed links were left as they are.",
                    acted.skipped,
                )
                % {"count": acted.skipped},
                messages.WARNING,
            )
        return None


def _link_line(link: Link) -> str:
    state = "" if link.state == LinkState.ACTIVE else f" ({gettext('closed')})"
    return gettext("order %(order)s ↔ deal %(deal)s") % {"order": link.order_id, "deal": link.deal_id} + state


# --- Link problems ------------------------------------------------------------------------------------------


class ProblemStateFilter(admin.SimpleListFilter):
    """Open problems by default: the list is a to-do list."""

    title = _("state")
    parameter_name = "problem_state"

    def lookups(self, request, model_admin):
        return [("resolved", _("Resolved")), ("all", _("All"))]

    def choices(self, changelist):
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": _("Open"),
        }
        for value, label in self.lookup_choices:
            yield {
                "selected": self.value() == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }

    def queryset(self, request, queryset):
        if self.value() == "all":
            return queryset
        if self.value() == "resolved":
            return queryset.filter(state=LinkProblemState.RESOLVED)
        return queryset.filter(state=LinkProblemState.OPEN)


@admin.register(LinkProblem)
class LinkProblemAdmin(ReadOnlyAdmin):
    list_filter = [ProblemStateFilter, "kind"]
    search_fields = ["=order_id", "=deal_id", "=key"]
    search_help_text = _("An order or deal id, exactly.")
    list_display_links = None
    show_full_result_count = False

    class Media:
        css = {"all": ["statussync/links.css"]}

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(order_id=term) | Q(deal_id=term) | Q(key=term)), False

    def get_list_display(self, request: HttpRequest):
        can_repair = self.has_repair_permission(request)

        @admin.display(description=_("Resolution"))
        def resolution(problem: LinkProblem) -> str:
            return _resolution_html(problem, can_repair=can_repair)

        return ["problem_column", "order_column", "deals_column", "seen_column", resolution]

    def has_repair_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("statussync.repair_link")

    def changelist_view(self, request: HttpRequest, extra_context=None):
        title = gettext("Link problems: bxsync writes nothing for these until a manager chooses")
        return super().changelist_view(request, {"title": title, **(extra_context or {})})

    @admin.display(description=_("Problem"), ordering="kind")
    def problem_column(self, problem: LinkProblem) -> str:
        if problem.kind == LinkProblemKind.SEVERAL_DEALS:
            detail = gettext("Deals %(deals)s all name order %(order)s.") % {
                "deals": ", ".join(problem.deals),
                "order": problem.order_id,
            }
        elif problem.named_order:
            detail = gettext("Deal %(deal)s now names order %(named)s, but is linked to order %(order)s.") % {
                "deal": problem.deal_id,
                "named": problem.named_order,
                "order": problem.order_id,
            }
        else:
            detail = gettext("Deal %(deal)s no longer names order %(order)s, to which it is linked.") % {
                "deal": problem.deal_id,
                "order": problem.order_id,
            }
        return format_html(
            '<strong>{}</strong><div class="bxsync-why">{}</div>', problem.get_kind_display(), detail
        )

    @admin.display(description=_("Order"), ordering="order_id")
    def order_column(self, problem: LinkProblem) -> str:
        return order_html(problem.order_id)

    @admin.display(description=_("Deals"))
    def deals_column(self, problem: LinkProblem) -> str:
        deals = problem.deals or ([problem.deal_id] if problem.deal_id else [])
        return format_html_join(mark_safe("<br>"), "{}", ((deal_html(d),) for d in deals))

    @admin.display(description=_("Seen"), ordering="-last_seen")
    def seen_column(self, problem: LinkProblem) -> str:
        return format_html(
            '{}<div class="bxsync-why">{}</div>',
            ngettext("%(count)d time", "%(count)d times", problem.times_seen) % {"count": problem.times_seen},
            gettext("last: %(when)s") % {"when": ago(problem.last_seen)},
        )

    def get_urls(self):
        return [
            path(
                "<int:problem_id>/resolve/",
                self.admin_site.admin_view(self.resolve_view),
                name="statussync_linkproblem_resolve",
            ),
            *super().get_urls(),
        ]

    def resolve_view(self, request: HttpRequest, problem_id: int):
        """One click: link the order to the chosen deal, or close the stale link and rediscover."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_repair_permission(request):
            raise PermissionDenied
        problem = get_object_or_404(LinkProblem.objects.select_related("link"), pk=problem_id)
        deal_id = request.POST.get("deal", "")
        try:
            with transaction.atomic():
                link_problem_resolve(problem=problem, user=request.user.get_username(), deal_id=deal_id)
        except ProblemResolveError:
            self.message_user(
                request,
                gettext(
                    "Nothing was changed: this problem was resolved already, or that deal no longer fits it."
                ),
                messages.WARNING,
            )
        except IntegrityError:
            self.message_user(
                request,
                gettext(
                    "Nothing was changed: a sync linked this order or deal a moment ago. Please try again."
                ),
                messages.WARNING,
            )
        else:
            if problem.kind == LinkProblemKind.SEVERAL_DEALS:
                message = gettext(
                    "Order %(order)s is linked to deal %(deal)s now; bxsync syncs them in a moment."
                )
            else:
                message = gettext(
                    "The link of order %(order)s and deal %(deal)s is closed; bxsync links each of them to "
                    "what names it now."
                )
            self.message_user(
                request,
                message % {"order": problem.order_id, "deal": deal_id or problem.deal_id},
                messages.SUCCESS,
            )
        return HttpResponseRedirect(reverse("admin:statussync_linkproblem_changelist"))


def _resolution_html(problem: LinkProblem, *, can_repair: bool) -> str:
    if problem.state == LinkProblemState.RESOLVED:
        by = problem.resolved_by or gettext("bxsync")
        return format_html(
            '<span class="bxsync-state bxsync-in_sync">{}</span><div class="bxsync-why">{}</div>',
            gettext("Resolved by %(who)s") % {"who": by},
            reason_text(reason=problem.resolution),
        )
    if not can_repair:
        return format_html('<span class="bxsync-state bxsync-attention">{}</span>', gettext("Open"))
    # Buttons of the changelist's own form (which carries the CSRF token), posted to the resolve view.
    url = reverse("admin:statussync_linkproblem_resolve", args=[problem.pk])
    if problem.kind == LinkProblemKind.SEVERAL_DEALS:
        return format_html_join(
            "",
            '<button type="submit" class="button bxsync-resolve" formaction="{}" name="deal" value="{}">'
            "{}</button>",
            (
                (
                    url,
                    deal,
                    gettext("Link order %(order)s to deal %(deal)s")
                    % {"order": problem.order_id, "deal": deal},
                )
                for deal in problem.deals
            ),
        )
    return format_html(
        '<button type="submit" class="button bxsync-resolve" formaction="{}" name="close" value="1">'
        "{}</button>",
        url,
        gettext("Close this link and link the deal to the order it names"),
    )


# --- Background operations ----------------------------------------------------------------------------------


@admin.register(BulkOperation)
class BulkOperationAdmin(ReadOnlyAdmin):
    list_display = ["action", "progress_column", "state", "created_by", "created_at", "finished_at"]
    list_filter = ["state", "action"]
    list_select_related = ["created_by"]
    show_full_result_count = False

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        # Operations on links and on dead letters share the list; each page checks its own below.
        return request.user.has_perm("statussync.view_link") or request.user.has_perm("statussync.view_job")

    @admin.display(description=_("Progress"))
    def progress_column(self, operation: BulkOperation) -> str:
        return format_html(
            '<progress max="{}" value="{}"></progress> {}',
            max(operation.total, 1),
            operation.done + operation.skipped,
            gettext("%(done)d of %(total)d")
            % {"done": operation.done + operation.skipped, "total": operation.total},
        )

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        """The progress page: it refreshes itself until the operation is done."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        operation = get_object_or_404(BulkOperation.objects.select_related("created_by"), pk=object_id)
        jobs = operation.on_dead_letters
        if not request.user.has_perm("statussync.view_job" if jobs else "statussync.view_link"):
            raise PermissionDenied
        running = operation.state in (BulkState.QUEUED, BulkState.RUNNING)
        handled = operation.done + operation.skipped
        title = (
            gettext("%(action)s: %(done)d of %(total)d failed jobs")
            if jobs
            else gettext("%(action)s: %(done)d of %(total)d links")
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title
            % {"action": operation.get_action_display(), "done": handled, "total": operation.total},
            "operation": operation,
            "handled": handled,
            "percent": int(100 * handled / operation.total) if operation.total else 100,
            "running": running,
            "refresh_seconds": 2,
            "links_url": reverse(
                "admin:statussync_deadletter_changelist" if jobs else "admin:statussync_link_changelist"
            ),
        }
        return TemplateResponse(request, "admin/statussync/bulk_progress.html", context)

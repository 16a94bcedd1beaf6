"""The audit log in the admin: read-only, for support, fast on millions of rows, exportable as CSV.

Every page reads one page of rows through an index (see the model's indexes) and never counts
(`LargeTableAdmin`). The filters offered are those an index serves: outcome, origin and a date range; side,
which most rows share, needs none. A CSV export streams the same filtered rows in chunks.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.urls import path, reverse
from django.utils import timezone, translation
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from statussync.models import AuditEntry, Outcome

from .base import ReadOnlyAdmin
from .paging import LargeTableAdmin
from .timeline import OUTCOME_TONE, decision_step, duration_text, outcome_title, reason_text

# Rows per query of a CSV export: memory stays at one chunk however many rows the filter matches.
EXPORT_CHUNK = 2000


# What asked for a decision, short enough for a column and a filter (the timeline says it at length).
ORIGIN_SHORT: dict[str, Any] = {
    "event": _("Bitrix event"),
    "reconcile": _("Regular check"),
    "admin": _("Manager"),
}


class OutcomeFilter(admin.SimpleListFilter):
    """The outcomes in the words of the timeline, the ones that need a person first."""

    title = _("outcome")
    parameter_name = "outcome"
    ORDER = [
        Outcome.PAYMENT_APPLIED,
        Outcome.APPLIED,
        Outcome.CONFLICT_RESOLVED,
        Outcome.REGRESSION_BLOCKED,
        Outcome.CONFLICT_FLAGGED,
        Outcome.UNMAPPED,
        Outcome.AMBIGUOUS,
        Outcome.FAILED,
        Outcome.RETRIED,
        Outcome.UNLINKED,
        Outcome.CLOSED,
        Outcome.ECHO,
        Outcome.NO_CHANGE,
        Outcome.IGNORED,
    ]

    def lookups(self, request, model_admin):
        return [(outcome.value, outcome_title(outcome)) for outcome in self.ORDER]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(outcome=self.value())
        return queryset


class OriginFilter(admin.SimpleListFilter):
    """What asked for the decision. Fixed choices: Django's default for a plain field would read the distinct
    values of the whole table first."""

    title = _("what asked")
    parameter_name = "origin"

    def lookups(self, request, model_admin):
        return list(ORIGIN_SHORT.items())

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(origin=self.value())
        return queryset


class CreatedBetweenFilter(admin.ListFilter):
    """A date range: presets (the last hour, day, week) as links, and any range from a small form.

    `since` and `until` take a date (`2026-11-30`; `until` a date means to the end of that day) or a moment
    (`2026-11-30T10:00`), in the admin's time zone.
    """

    title = _("date")
    template = "admin/statussync/date_range_filter.html"
    since_param, until_param = "since", "until"
    PRESETS = [
        (_("Last hour"), timedelta(hours=1)),
        (_("Last 24 hours"), timedelta(days=1)),
        (_("Last 7 days"), timedelta(days=7)),
    ]

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        for name in (self.since_param, self.until_param):
            if name in params:
                value = params.pop(name)
                self.used_parameters[name] = value[-1] if isinstance(value, list) else value
        self.hidden: list[tuple[str, str]] = []

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str]:
        return [self.since_param, self.until_param]

    def queryset(self, request, queryset):
        since = self._bound(request, self.since_param, end_of_day=False)
        until = self._bound(request, self.until_param, end_of_day=True)
        if since is not None:
            queryset = queryset.filter(created_at__gte=since)
        if until is not None:
            queryset = queryset.filter(created_at__lt=until)
        return queryset

    def choices(self, changelist):
        # The form keeps the other filters and the search as hidden fields.
        mine = {self.since_param, self.until_param, "p"}
        self.hidden = [(k, v) for k, v in changelist.params.items() if k not in mine]
        current = (self.used_parameters.get(self.since_param), self.used_parameters.get(self.until_param))
        yield {
            "selected": current == (None, None),
            "query_string": changelist.get_query_string(remove=[self.since_param, self.until_param]),
            "display": _("Any date"),
        }
        now = timezone.localtime().replace(second=0, microsecond=0)
        for label, span in self.PRESETS:
            since = (now - span).strftime("%Y-%m-%dT%H:%M")
            yield {
                "selected": current == (since, None),
                "query_string": changelist.get_query_string(
                    {self.since_param: since}, remove=[self.until_param]
                ),
                "display": label,
            }

    def _bound(self, request, param: str, *, end_of_day: bool) -> datetime | None:
        """One end of the range; a value that is no date is left out, and the reader is told."""
        try:
            return _moment(self.used_parameters.get(param), end_of_day=end_of_day)
        except ValidationError as exc:
            messages.warning(request, " ".join(exc.messages))
            self.used_parameters.pop(param)
            return None

    @property
    def since_value(self) -> str:
        return self.used_parameters.get(self.since_param, "")

    @property
    def until_value(self) -> str:
        return self.used_parameters.get(self.until_param, "")


def _moment(value: str | None, *, end_of_day: bool) -> datetime | None:
    """A `since`/`until` value as an aware moment in the current time zone."""
    if not value:
        return None
    try:
        # A date first: parse_datetime would read "2026-11-30" as its midnight, losing "to the end of that
        # day". Both raise ValueError for the right shape with impossible numbers ("2026-13-45").
        day = parse_date(value) if len(value) == 10 else None
        if day is not None:
            moment = datetime.combine(day + timedelta(days=1) if end_of_day else day, time.min)
        else:
            moment = parse_datetime(value)
        if moment is not None and timezone.is_naive(moment):
            moment = timezone.make_aware(moment)
    except (ValueError, OverflowError):  # OverflowError: the day after 9999-12-31, or beyond UTC's range
        moment = None
    if moment is None:
        raise ValidationError(gettext("Not a date: %(value)s") % {"value": value})
    return moment


# "123", "#123", "order 123", "deal 123" (and the Russian words for them).
_ID_QUERY = re.compile(
    r"^\s*(?:(?P<kind>order|deal|заказ|сделка)\s*)?#?\s*(?P<id>\d{1,32})\s*$", re.IGNORECASE
)


def id_query(text: str) -> tuple[str | None, str] | None:
    """`("order" | "deal" | None, id)` when `text` names an order or deal id, else None."""
    match = _ID_QUERY.match(text or "")
    if match is None:
        return None
    kind = (match["kind"] or "").lower()
    return {"order": "order", "заказ": "order", "deal": "deal", "сделка": "deal"}.get(kind), match["id"]


@admin.register(AuditEntry)
class AuditEntryAdmin(LargeTableAdmin, ReadOnlyAdmin):
    # Side and time taken are on each entry's page, not columns: the table must fit beside the filters, and
    # the outcome and the reason say which side moved.
    list_display = ["when", "outcome_badge", "ids", "reason_in_words", "asked"]
    list_display_links = ["when"]
    list_filter = [OutcomeFilter, "side", OriginFilter, CreatedBetweenFilter]
    # Searched by `get_search_results`: ids exactly (indexed), anything else in the English message.
    search_fields = ["=order_id", "=deal_id", "message"]
    search_help_text = _(
        "An order or deal id (123, “order 123”, “deal 456”) finds its entries; any other text is looked "
        "for in the reason (in English)."
    )
    # Sorting by another column would sort millions of rows; newest first, or oldest first, only.
    sortable_by = ["when"]
    list_per_page = 100
    # The entry as the timeline tells it first; the raw record after, for integrators.
    fields = [
        "when",
        "outcome_badge",
        "reason_in_words",
        "meaning",
        "found",
        "wrote",
        "timeline",
        "ids",
        "side",
        "event",
        "asked",
        "rest",
        "latency",
        "before",
        "after",
        "message",
    ]
    readonly_fields = fields

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            "title": gettext("Audit log: every decision bxsync made"),
            "export_query": request.GET.urlencode(),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context)

    @admin.display(description=_("when"), ordering="created_at")
    def when(self, entry: AuditEntry) -> str:
        # Seconds matter in a log; the whole moment in the tooltip.
        moment = timezone.localtime(entry.created_at)
        return format_html(
            '<time datetime="{}" title="{}">{}</time>',
            moment.isoformat(),
            date_format(moment, "DATETIME_FORMAT"),
            date_format(moment, "j M, H:i:s"),
        )

    @admin.display(description=_("outcome"))
    def outcome_badge(self, entry: AuditEntry) -> str:
        tone = OUTCOME_TONE.get(entry.outcome, "quiet")
        return format_html('<span class="bx-badge bx-{}">{}</span>', tone, outcome_title(entry.outcome))

    @admin.display(description=_("order ↔ deal"))
    def ids(self, entry: AuditEntry) -> str:
        text = f"{entry.order_id or '—'} ↔ {entry.deal_id or '—'}"
        if entry.link_id is None:
            return text
        url = reverse("admin:statussync_link_change", args=[entry.link_id])
        return format_html('<a href="{}" title="{}">{}</a>', url, gettext("The link's timeline"), text)

    @admin.display(description=_("why"))
    def reason_in_words(self, entry: AuditEntry) -> str:
        return reason_text(reason=entry.reason, message=entry.message)

    @admin.display(description=_("what it means"))
    def meaning(self, entry: AuditEntry) -> str:
        return decision_step(entry).explanation

    @admin.display(description=_("found"))
    def found(self, entry: AuditEntry) -> str:
        return "; ".join(decision_step(entry).seen) or "—"

    @admin.display(description=_("wrote"))
    def wrote(self, entry: AuditEntry) -> str:
        return decision_step(entry).write or gettext("nothing")

    @admin.display(description=_("REST calls"))
    def rest(self, entry: AuditEntry) -> int:
        return entry.rest_calls

    @admin.display(description=_("took"))
    def latency(self, entry: AuditEntry) -> str:
        return duration_text(entry.latency_ms)

    @admin.display(description=_("what asked"))
    def asked(self, entry: AuditEntry) -> str:
        return str(ORIGIN_SHORT.get(entry.origin, entry.origin))

    @admin.display(description=_("timeline"))
    def timeline(self, entry: AuditEntry) -> str:
        if entry.link_id is None:
            return gettext("not linked")
        url = reverse("admin:statussync_link_change", args=[entry.link_id])
        return format_html('<a href="{}">{}</a>', url, gettext("The link's timeline"))

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        named = id_query(term)
        if named is not None:
            kind, entity = named
            if kind == "order":
                return queryset.filter(order_id=entity), False
            if kind == "deal":
                return queryset.filter(deal_id=entity), False
            return queryset.filter(Q(order_id=entity) | Q(deal_id=entity)), False
        return queryset.filter(message__icontains=term), False

    def get_urls(self):
        export = path(
            "export.csv",
            self.admin_site.admin_view(self.export_view),
            name="statussync_auditentry_export",
        )
        return [export, *super().get_urls()]

    def export_view(self, request):
        """The filtered audit list as CSV, streamed a chunk at a time."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(reverse("admin:statussync_auditentry_changelist") + "?e=1")
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
        response = StreamingHttpResponse(
            audit_csv(queryset=changelist.queryset, language=translation.get_language()),
            content_type="text/csv; charset=utf-8",
        )
        response["Content-Disposition"] = f'attachment; filename="bxsync-audit-{stamp}.csv"'
        return response


# --- CSV ---------------------------------------------------------------------------------------------------

CSV_COLUMNS = [
    ("time", _("time")),
    ("outcome", _("outcome")),
    ("outcome_code", _("outcome code")),
    ("why", _("why")),
    ("side", _("side")),
    ("event", _("event")),
    ("what_asked", _("what asked")),
    ("order_id", _("order id")),
    ("deal_id", _("deal id")),
    ("link_id", _("link id")),
    ("before", _("before")),
    ("after", _("after")),
    ("rest_calls", _("REST calls")),
    ("latency_ms", _("latency, ms")),
    ("message", _("reason in English")),
]


class _Echo:
    """A file-like object whose write returns the line, for csv.writer in a streaming response."""

    def write(self, value: str) -> str:
        return value


def audit_csv(*, queryset: QuerySet[AuditEntry], language: str | None = None) -> Iterator[str]:
    """The rows of `queryset` as CSV lines, newest first, read `EXPORT_CHUNK` rows at a time by keyset (never
    an offset that grows, never one long-held cursor). Texts in `language`, times in the current time zone."""
    writer = csv.writer(_Echo())
    zone = timezone.get_current_timezone()
    with translation.override(language):
        # A UTF-8 byte-order mark, so that Excel (common among the shops) opens Cyrillic correctly.
        yield "\ufeff" + writer.writerow([str(label) for _, label in CSV_COLUMNS])
        rows = queryset.order_by("-created_at", "-id")
        last: AuditEntry | None = None
        while True:
            chunk = rows
            if last is not None:
                chunk = rows.filter(
                    Q(created_at__lt=last.created_at) | Q(created_at=last.created_at, id__lt=last.id)
                )
            entries = list(chunk[:EXPORT_CHUNK])
            for entry in entries:
                yield writer.writerow([_cell(v) for v in _csv_values(entry, zone).values()])
            if len(entries) < EXPORT_CHUNK:
                return
            last = entries[-1]


def _csv_values(entry: AuditEntry, zone) -> dict[str, Any]:
    return {
        "time": timezone.localtime(entry.created_at, zone).isoformat(timespec="seconds"),
        "outcome": outcome_title(entry.outcome),
        "outcome_code": entry.outcome,
        "why": reason_text(reason=entry.reason, message=entry.message),
        "side": entry.side,
        "event": entry.event,
        "what_asked": entry.origin,
        "order_id": entry.order_id,
        "deal_id": entry.deal_id,
        "link_id": entry.link_id or "",
        "before": json.dumps(entry.before, ensure_ascii=False, sort_keys=True) if entry.before else "",
        "after": json.dumps(entry.after, ensure_ascii=False, sort_keys=True) if entry.after else "",
        "rest_calls": entry.rest_calls,
        "latency_ms": "" if entry.latency_ms is None else entry.latency_ms,
        "message": entry.message,
    }


def _cell(value: Any) -> Any:
    # A text a spreadsheet would run as a formula (an error text from a portal could start with "=") is
    # kept as text (OWASP "CSV injection").
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value

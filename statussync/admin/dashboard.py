"""The dashboard: sync at a glance for managers and support (permission `statussync.view_dashboard`).

Events and decisions per hour by outcome, how fast payments reach the CRM, what needs a person, the queues
and the dead letters, how much of Bitrix's REST limit is in use, when reconciliation last read each portal,
and each portal's health. Every figure is one indexed query over a bounded time range or a small table
(about twenty queries in all), so the page stays fast on millions of audit rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from statussync.bitrix.ratelimit import bucket_share, buckets_shared, limiter_level, priority_reserve
from statussync.health import health_report
from statussync.models import AuditEntry, InboundEvent, Link, LinkState, Outcome, Side, Watermark

from .charts import Series, stacked_bars_svg
from .doctor import doctor_panel
from .timeline import SIDE_WORDS, duration_text, reason_text

HOURS = 24
ATTENTION_SHOWN = 8

# The chart's parts, from the bottom of each bar up: what was written first, then what was held back.
OUTCOME_GROUPS: list[tuple[str, Any, str, list[str]]] = [
    ("payments", _("Payments moved a deal"), "#2e9e4f", [Outcome.PAYMENT_APPLIED]),
    ("writes", _("Other writes"), "#2a7ab8", [Outcome.APPLIED, Outcome.CONFLICT_RESOLVED]),
    (
        "held",
        _("Held for a manager"),
        "#e08a00",
        [Outcome.CONFLICT_FLAGGED, Outcome.REGRESSION_BLOCKED, Outcome.UNMAPPED, Outcome.AMBIGUOUS],
    ),
    ("failed", _("Failed or retried"), "#c62828", [Outcome.FAILED, Outcome.RETRIED]),
]
QUIET_GROUP = ("quiet", _("Nothing to write (echo, no change, unlinked…)"), "#b0b8c0")
EVENTS_COLOR = "#6a4c9c"


@dataclass
class HourlyActivity:
    """Per hour of the last day: events received and decisions by outcome group."""

    hours: list[datetime]
    events: list[int]
    groups: dict[str, list[int]]
    chart: str = ""
    legend: list[tuple[str, str]] = field(default_factory=list)

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The chart's numbers as table rows, newest hour first."""
        rows = [
            {"hour": hour, "events": self.events[i], "groups": [self.groups[k][i] for k in self.group_keys]}
            for i, hour in enumerate(self.hours)
        ]
        return rows[::-1]

    @property
    def group_keys(self) -> list[str]:
        return [key for key, *_ in OUTCOME_GROUPS] + [QUIET_GROUP[0]]

    @property
    def group_labels(self) -> list[str]:
        return [str(label) for _key, label, *_ in OUTCOME_GROUPS] + [str(QUIET_GROUP[1])]

    @property
    def totals(self) -> dict[str, int]:
        return {
            "events": sum(self.events),
            "writes": sum(self.groups["payments"]) + sum(self.groups["writes"]),
            "payments": sum(self.groups["payments"]),
            "held": sum(self.groups["held"]),
            "failed": sum(self.groups["failed"]),
        }


def activity_hourly(*, now: datetime, hours: int = HOURS) -> HourlyActivity:
    """Events and decisions per hour for the last `hours` hours (two queries, index-only)."""
    end = timezone.localtime(now).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(hours=hours)
    slots = [start + timedelta(hours=i) for i in range(hours)]
    group_of = {outcome: key for key, _label, _color, outcomes in OUTCOME_GROUPS for outcome in outcomes}
    groups = {key: [0] * hours for key in [*group_of.values(), QUIET_GROUP[0]]}
    # One pass over each table's time index, each hour a filtered count: plain comparisons the database
    # evaluates itself, where truncating every row's time to its hour (TruncHour) calls a function per row
    # (on SQLite, a Python one) and took ten times longer on a day of a million-row audit.
    buckets = {f"h{i}": (slot, slot + timedelta(hours=1)) for i, slot in enumerate(slots)}

    def hourly(field_name: str) -> dict[str, Count]:
        return {
            name: Count("pk", filter=Q(**{f"{field_name}__gte": lo, f"{field_name}__lt": hi}))
            for name, (lo, hi) in buckets.items()
        }

    decided = (
        AuditEntry.objects.filter(created_at__gte=start, created_at__lt=end)
        .values("outcome")
        .annotate(**hourly("created_at"))
        .order_by()
    )
    for row in decided:
        series = groups[group_of.get(row["outcome"], QUIET_GROUP[0])]
        for i in range(hours):
            series[i] += row[f"h{i}"]
    received = InboundEvent.objects.filter(received_at__gte=start, received_at__lt=end).aggregate(
        **hourly("received_at")
    )
    events = [received[f"h{i}"] for i in range(hours)]

    activity = HourlyActivity(hours=slots, events=events, groups=groups)
    colors = {key: color for key, _label, color, _outcomes in OUTCOME_GROUPS} | {
        QUIET_GROUP[0]: QUIET_GROUP[2]
    }
    labels = {key: str(label) for key, label, _color, _outcomes in OUTCOME_GROUPS} | {
        QUIET_GROUP[0]: str(QUIET_GROUP[1])
    }
    bars = [Series(key, labels[key], colors[key], groups[key]) for key in activity.group_keys]
    line = Series("events", gettext("Events received"), EVENTS_COLOR, events)
    activity.chart = stacked_bars_svg(
        labels=[slot.strftime("%H:00") for slot in slots],
        bars=bars,
        line=line,
        title=gettext("Events received and decisions per hour, last %(hours)s hours") % {"hours": hours},
    )
    activity.legend = [(s.color, s.label) for s in bars] + [(EVENTS_COLOR, line.label)]
    return activity


@dataclass
class PaymentLatency:
    """How long paid orders took to move their deal, from the payment event to the write (last day)."""

    count: int
    p50: str
    p99: str


def payment_latency(*, now: datetime, hours: int = HOURS) -> PaymentLatency:
    """p50 and p99 of `latency_ms` of the payments applied in the last `hours` (nearest rank; three queries
    through the outcome index, whatever the table's size)."""
    payments = AuditEntry.objects.filter(
        outcome=Outcome.PAYMENT_APPLIED,
        created_at__gte=now - timedelta(hours=hours),
        latency_ms__isnull=False,
    )
    count = payments.count()
    if not count:
        return PaymentLatency(count=0, p50="", p99="")
    ordered = payments.order_by("latency_ms").values_list("latency_ms", flat=True)

    def rank(p: float) -> str:
        return duration_text(ordered[max(math.ceil(p * count) - 1, 0)])

    return PaymentLatency(count=count, p50=rank(0.50), p99=rank(0.99))


@dataclass
class PortalRow:
    """One portal as the dashboard shows it: health, REST use, reconciliation."""

    side: str
    name: str
    health: dict[str, Any]
    # None when the bucket holds nothing: never used (the database store), or drained and expired (Redis).
    level: float | None
    burst: int  # the portal's bucket, as Bitrix counts it
    reserve: int
    rate: float
    watermark: Watermark | None
    own_burst: int = 0  # bxsync's share of it (BXSYNC_RATE_SHARE); the rest is the portal's other apps'
    shared: bool = False  # the shop and the CRM are one portal: one bucket for both

    @property
    def others(self) -> int:
        return max(self.burst - self.own_burst, 0)

    @property
    def level_rounded(self) -> int:
        return round(self.level or 0)

    @property
    def level_percent(self) -> int:
        return min(round((self.level or 0) / self.burst * 100), 100) if self.burst else 0

    @property
    def level_high(self) -> bool:
        return (self.level or 0) >= self.ordinary_limit

    @property
    def ordinary_limit(self) -> int:
        return max((self.own_burst or self.burst) - self.reserve, 1)

    @property
    def last_contact_at(self) -> datetime | None:
        return _moment(self.health.get("last_contact"))

    @property
    def failing_since_at(self) -> datetime | None:
        return _moment(self.health.get("failing_since"))

    @property
    def last_outage_since_at(self) -> datetime | None:
        return _moment(self.health.get("last_outage_since"))

    @property
    def recovered_at(self) -> datetime | None:
        return _moment(self.health.get("recovered_at"))


def _moment(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso) if iso else None


def portals_overview(*, report: dict[str, Any]) -> list[PortalRow]:
    """Each portal's health (from `health_report`), its rate-limit bucket now and its watermark."""
    watermarks = {w.portal: w for w in Watermark.objects.all()}
    _, own_burst = bucket_share()
    shared = buckets_shared()
    rows = []
    for side in (Side.CMS, Side.CRM):
        rows.append(
            PortalRow(
                side=side,
                name=str(SIDE_WORDS[side]),
                health=report.get("portals", {}).get(side, {}),
                level=limiter_level(side),
                burst=settings.BXSYNC_RATE_BURST,
                reserve=priority_reserve(),
                rate=settings.BXSYNC_RATE_PER_SECOND,
                watermark=watermarks.get(side),
                own_burst=own_burst,
                shared=shared,
            )
        )
    return rows


def attention_list(*, limit: int = ATTENTION_SHOWN) -> tuple[int, list[dict[str, Any]]]:
    """How many active links need a person, and the most recently changed of them with the reason."""
    flagged = Link.objects.filter(state=LinkState.ACTIVE, needs_attention=True)
    count = flagged.count()
    links = flagged.order_by("-updated_at")[:limit]
    return count, [
        {"link": link, "reason": reason_text(reason=link.attention, message=link.attention_reason)}
        for link in links
    ]


def dashboard_context(*, now: datetime) -> dict[str, Any]:
    """Everything the dashboard shows."""
    report = health_report()
    attention_count, attention = attention_list()
    queues = report.get("queue", {})
    return {
        "activity": activity_hourly(now=now),
        "payments": payment_latency(now=now),
        "attention_count": attention_count,
        "attention": attention,
        "queues": queues,
        "dead_letters": sum(q.get("dead", 0) for q in queues.values()),
        "portals": portals_overview(report=report),
        "healthy": report.get("ok", False),
        "report": report,
        "now": now,
    }


def dashboard_view(request):
    """The dashboard page (in the admin, for `statussync.view_dashboard`)."""
    from django.contrib import admin

    if not request.user.has_perm("statussync.view_dashboard"):
        raise PermissionDenied
    context = {
        **admin.site.each_context(request),
        "title": gettext("Dashboard"),
        **dashboard_context(now=timezone.now()),
        "doctor": doctor_panel(user=request.user),
    }
    return TemplateResponse(request, "admin/statussync/dashboard.html", context)

"""A link's timeline: the support page that answers "why is order 123 in this status?".

It tells the link's story in order, in plain words: each event Bitrix sent about the order, its payments or
the deal (duplicates counted) → each decision bxsync made and why, in the reader's language → what it wrote,
with the REST calls and the time it took → the echo of that write, recognised and ignored. Payments and
blocked regressions stand out. It is the link's page in the admin (`LinkTimelineMixin`).

The page reads a bounded number of rows whatever the link's history: the newest page first, older and newer
pages by a keyset cursor (a moment and a row id), each stream read through its own index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Max, Min, Q
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from statussync.mapping.catalog import pipeline_label, stage_label, status_label
from statussync.models import AuditEntry, InboundEvent, Link, LinkState, Outcome, Side
from statussync.reasons import Reason

PAGE_SIZE = 50
PAYMENT_EVENT = "ONPAYMENTENTITYSAVED"
# How many of a link's payments the page looks for events of (a link has one or two in practice).
PAYMENTS_LOOKED_UP = 50

# --- the words ---------------------------------------------------------------------------------------------

# What each outcome means, for someone who has never seen the code: a title, and one or two sentences.
OUTCOME_STORY: dict[str, tuple[Any, Any]] = {
    Outcome.APPLIED: (
        _("Synced"),
        _("One side changed; bxsync copied the change to the other side."),
    ),
    Outcome.PAYMENT_APPLIED: (
        _("Payment: deal moved"),
        _(
            "The order was paid, so bxsync moved the deal to its pipeline's paid stage. "
            "Payments go first and win over any other change."
        ),
    ),
    Outcome.ECHO: (
        _("Echo recognised"),
        _(
            "Bitrix reported bxsync's own write back as a change. bxsync recognised it and wrote nothing, "
            "so a change never bounces back and forth."
        ),
    ),
    Outcome.NO_CHANGE: (
        _("Nothing to do"),
        _("Both sides already matched; nothing was written."),
    ),
    Outcome.CONFLICT_RESOLVED: (
        _("Conflict resolved"),
        _(
            "Both sides changed since they last agreed. The pipeline's conflict rule chose the winner, and "
            "bxsync copied the winner's value to the other side."
        ),
    ),
    Outcome.CONFLICT_FLAGGED: (
        _("Conflict: a manager must choose"),
        _(
            "Both sides changed since they last agreed, and bxsync could not tell safely which change is "
            "right. Nothing was written; the link waits for a manager."
        ),
    ),
    Outcome.REGRESSION_BLOCKED: (
        _("Blocked: paid order sent back"),
        _(
            "Someone moved the deal to a stage that would put the already paid order back to awaiting "
            "payment. bxsync did not apply it to the order and flagged the link for a manager."
        ),
    ),
    Outcome.UNMAPPED: (
        _("No rule for this value"),
        _(
            "The mapping has no rule for this status or stage, so nothing was written. Once a manager adds "
            "the rule, the next regular check copies it."
        ),
    ),
    Outcome.UNLINKED: (
        _("No partner found"),
        _("No deal names this order (or the deal names no order), so there was nothing to sync."),
    ),
    Outcome.AMBIGUOUS: (
        _("Several deals name this order"),
        _("More than one deal names the same order. bxsync does not guess: nothing was written."),
    ),
    Outcome.LINKED: (_("Linked"), _("bxsync found the deal of this order and linked them.")),
    Outcome.CLOSED: (
        _("Link closed"),
        _("The order or the deal was deleted, so bxsync stopped syncing this pair."),
    ),
    Outcome.IGNORED: (_("Ignored"), _("There was nothing to sync.")),
    Outcome.FAILED: (
        _("Failed"),
        _(
            "The work did not complete. Work that keeps failing goes to the dead-letter list, where a "
            "manager can replay it."
        ),
    ),
    Outcome.RETRIED: (
        _("Will try again"),
        _("A portal was busy or did not answer; bxsync tries again shortly, by itself."),
    ),
    Outcome.RECEIVED: (_("Event received"), _("bxsync stored the event.")),
}

# How each outcome looks: a payment and a blocked regression must stand out on a long page.
OUTCOME_TONE: dict[str, str] = {
    Outcome.PAYMENT_APPLIED: "payment",
    Outcome.REGRESSION_BLOCKED: "blocked",
    Outcome.FAILED: "failed",
    Outcome.CONFLICT_FLAGGED: "attention",
    Outcome.UNMAPPED: "attention",
    Outcome.AMBIGUOUS: "attention",
    Outcome.RETRIED: "retry",
    Outcome.APPLIED: "write",
    Outcome.CONFLICT_RESOLVED: "write",
}

# The Bitrix events, as the people who made them would say it.
EVENT_WORDS: dict[str, Any] = {
    "ONSALEORDERSAVED": _("Order %(order)s was saved in the shop"),
    "ONORDERDELETED": _("Order %(order)s was deleted in the shop"),
    PAYMENT_EVENT: _("Payment %(payment)s of order %(order)s was saved in the shop"),
    "ONCRMDEALADD": _("Deal %(deal)s was created in the CRM"),
    "ONCRMDEALUPDATE": _("Deal %(deal)s was changed in the CRM"),
    "ONCRMDEALDELETE": _("Deal %(deal)s was deleted in the CRM"),
    "ONCRMDEALMOVETOCATEGORY": _("Deal %(deal)s was moved to another pipeline in the CRM"),
}

# What asked for a decision (`AuditEntry.origin`).
ORIGIN_WORDS: dict[str, Any] = {
    "event": _("an event from Bitrix"),
    "reconcile": _("the regular check of both portals, which catches events Bitrix lost"),
    "admin": _("a manager, in the admin"),
}

SIDE_WORDS: dict[str, Any] = {Side.CMS: _("Shop"), Side.CRM: _("CRM")}


def outcome_title(outcome: str) -> str:
    """The outcome's short title in the reader's language."""
    story = OUTCOME_STORY.get(outcome)
    return str(story[0]) if story else outcome


def reason_text(*, reason: dict[str, Any] | None, message: str = "") -> str:
    """A decision's reason in the reader's language (stored as a code with parameters), with statuses and
    stages named as the portals name them; the English text of entries recorded before reasons were codes."""
    parsed = Reason.from_json(reason)
    return _labelled(parsed).render(gettext) if parsed is not None else message


def _labelled(reason: Reason) -> Reason:
    """`reason` with its statuses and stages as the portals name them (see `labels`)."""
    return reason.named(status=status_label, stage=stage_label)


def duration_text(ms: int | None) -> str:
    """`latency_ms` for people: "420 ms", "3.2 s", "4 min 5 s"."""
    if ms is None:
        return ""
    if ms < 1000:
        return gettext("%(n)s ms") % {"n": ms}
    if ms < 60_000:
        return gettext("%(n)s s") % {"n": f"{ms / 1000:.1f}"}
    minutes, seconds = divmod(ms // 1000, 60)
    return gettext("%(m)s min %(s)s s") % {"m": minutes, "s": seconds}


# --- the story ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Cursor:
    """A position in a link's story: a moment, then events before decisions, then the row id."""

    at: datetime
    rank: int  # 0 event, 1 decision
    id: int

    def encode(self) -> str:
        """For a URL: whole microseconds since the epoch, the rank and the id."""
        micros = (self.at - _EPOCH) // timedelta(microseconds=1)
        return f"{micros}.{self.rank}.{self.id}"

    @classmethod
    def decode(cls, text: str | None) -> Cursor | None:
        """The cursor in `text`, or None when absent or malformed (the page then starts at the newest)."""
        try:
            micros, rank, row_id = (int(part) for part in (text or "").split("."))
            at = _EPOCH + timedelta(microseconds=micros)
        except (ValueError, OverflowError):  # not three numbers, or a moment no calendar holds
            return None
        if rank not in (0, 1) or not 0 <= row_id <= _LARGEST_ID:
            return None
        return cls(at, rank, row_id)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LARGEST_ID = 2**63 - 1  # the databases' bigint: a larger id in a query is an error, not "no row"


@dataclass
class EventStep:
    """An event Bitrix sent about the link's order, one of its payments or its deal."""

    at: datetime
    id: int
    side: str
    event: str
    text: str
    duplicates: int
    payment: bool
    kind: Literal["event"] = "event"

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.at, 0, self.id)

    @property
    def day(self) -> date:
        return timezone.localdate(self.at)

    @property
    def tone(self) -> str:
        return "payment-event" if self.payment else "event"


@dataclass
class DecisionStep:
    """A decision bxsync made about the link: why, what it saw, what it wrote, at what cost."""

    at: datetime
    id: int
    outcome: str
    title: str
    explanation: str
    reason: str
    asked_by: str
    seen: list[str]
    agreed_before: str
    write: str
    agreed_after: str
    held: str
    flagged: bool
    closed: bool
    rest_calls: int
    latency: str
    covered: str = ""  # the events of pending jobs this decision's reads answered (sync/covered.py)
    kind: Literal["decision"] = "decision"

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.at, 1, self.id)

    @property
    def day(self) -> date:
        return timezone.localdate(self.at)

    @property
    def tone(self) -> str:
        return OUTCOME_TONE.get(self.outcome, "quiet")


Step = EventStep | DecisionStep


@dataclass
class TimelinePage:
    """One page of a link's story, oldest first, with the cursors of the pages before and after it."""

    steps: list[Step] = field(default_factory=list)
    older: Cursor | None = None  # the page before this one starts before this
    newer: Cursor | None = None  # the page after this one starts after this
    latest: bool = True  # this page ends with the newest step

    def older_query(self) -> str:
        return urlencode({"before": self.older.encode()}) if self.older else ""

    def newer_query(self) -> str:
        return urlencode({"after": self.newer.encode()}) if self.newer else ""


def link_timeline(
    *, link: Link, before: Cursor | None = None, after: Cursor | None = None, size: int = PAGE_SIZE
) -> TimelinePage:
    """A page of `link`'s story: the newest `size` steps, or those just before `before` or just after
    `after`. Four queries, each through an index and limited to one page and one row."""
    since, until = _link_span(link)
    newest_first = after is None
    audit = _audit_rows(link=link, since=since, until=until, before=before, after=after, size=size)
    payments = _payment_ids(link)
    events = _event_rows(
        link=link, payments=payments, since=since, until=until, before=before, after=after, size=size
    )
    steps: list[Step] = [_event_step(e, link=link) for e in events] + [decision_step(a) for a in audit]
    steps.sort(key=lambda s: s.cursor, reverse=newest_first)
    more = len(steps) > size
    steps = steps[:size]
    steps.sort(key=lambda s: s.cursor)
    page = TimelinePage(steps=steps)
    if steps:
        # Reading back (older pages), more rows mean an older page; a cursor of either kind means a newer one.
        has_older = more if newest_first else True
        has_newer = (before is not None) if newest_first else more
        page.older = steps[0].cursor if has_older else None
        page.newer = steps[-1].cursor if has_newer else None
        page.latest = not has_newer
    elif after is not None:
        page.older = after  # past the newest step: offer the way back
    return page


def _link_span(link: Link) -> tuple[datetime | None, datetime | None]:
    """The time in which the order's and the deal's own events and unlinked decisions belong to this link:
    after the link that had this order or deal before closed, and until the next one was made. One query."""
    others = (
        Link.objects.filter(Q(order_id=link.order_id) | Q(deal_id=link.deal_id))
        .exclude(id=link.id)
        .aggregate(
            since=Max("closed_at", filter=Q(closed_at__lte=link.created_at)),
            until=Min("created_at", filter=Q(created_at__gt=link.created_at)),
        )
    )
    return others["since"], others["until"]


def _in_span(field_name: str, since: datetime | None, until: datetime | None) -> Q:
    span = Q()
    if since is not None:
        span &= Q(**{f"{field_name}__gte": since})
    if until is not None:
        span &= Q(**{f"{field_name}__lt": until})
    return span


def _paged(rank: int, field_name: str, before: Cursor | None, after: Cursor | None) -> tuple[Q, list[str]]:
    """The keyset condition and ordering of one stream (events rank 0, decisions rank 1)."""
    if after is not None:
        same = Q(id__gt=after.id) if after.rank == rank else Q() if after.rank < rank else Q(pk__in=[])
        condition = Q(**{f"{field_name}__gt": after.at}) | (Q(**{field_name: after.at}) & same)
        return condition, [field_name, "id"]
    if before is not None:
        same = Q(id__lt=before.id) if before.rank == rank else Q() if before.rank > rank else Q(pk__in=[])
        condition = Q(**{f"{field_name}__lt": before.at}) | (Q(**{field_name: before.at}) & same)
        return condition, [f"-{field_name}", "-id"]
    return Q(), [f"-{field_name}", "-id"]


def _audit_rows(
    *,
    link: Link,
    since: datetime | None,
    until: datetime | None,
    before: Cursor | None,
    after: Cursor | None,
    size: int,
) -> list[AuditEntry]:
    # The link's own decisions, and those about its order or deal made while it had no link (the first
    # sight, an unlinked deal, a second deal naming the order). The link's own carry its order and deal ids,
    # so one OR of two indexed equalities finds both. Not `link_id IS NULL` in SQL: the planner may walk that
    # index, which holds every unlinked entry of the table; within the span no other link has this order or
    # deal, and the few rows of another link that a race could leave there are dropped below.
    mine = (Q(order_id=link.order_id) | Q(deal_id=link.deal_id)) & _in_span("created_at", since, until)
    condition, ordering = _paged(1, "created_at", before, after)
    rows = AuditEntry.objects.filter(mine & condition).order_by(*ordering)[: size + 1]
    return [row for row in rows if row.link_id in (None, link.id)]


def _payment_ids(link: Link) -> list[str]:
    """The payments whose events belong to the link: a payment event names the payment, not the order, and
    the decision it led to recorded which one."""
    befores = (
        AuditEntry.objects.filter(link=link, event__contains=PAYMENT_EVENT)
        .order_by("-created_at")
        .values_list("before", flat=True)[:PAYMENTS_LOOKED_UP]
    )
    return sorted({str(b["payment"]) for b in befores if isinstance(b, dict) and b.get("payment")})


def _event_rows(
    *,
    link: Link,
    payments: list[str],
    since: datetime | None,
    until: datetime | None,
    before: Cursor | None,
    after: Cursor | None,
    size: int,
) -> list[InboundEvent]:
    # By side too: order 123 and deal 123 are different things in different portals.
    mine = Q(side=Side.CMS, entity_id=link.order_id) & ~Q(event=PAYMENT_EVENT) | Q(
        side=Side.CRM, entity_id=link.deal_id
    )
    if payments:
        mine |= Q(side=Side.CMS, event=PAYMENT_EVENT, entity_id__in=payments)
    condition, ordering = _paged(0, "received_at", before, after)
    rows = InboundEvent.objects.filter(mine & _in_span("received_at", since, until) & condition)
    return list(
        rows.only("id", "side", "event", "entity_id", "received_at", "duplicates").order_by(*ordering)[
            : size + 1
        ]
    )


def _event_step(event: InboundEvent, *, link: Link) -> EventStep:
    payment = event.event == PAYMENT_EVENT
    words = EVENT_WORDS.get(event.event)
    params = {"order": link.order_id, "deal": link.deal_id, "payment": event.entity_id}
    if words is not None:
        text = str(words) % params
    else:
        text = gettext("%(event)s from the %(side)s") % {
            "event": event.event,
            "side": SIDE_WORDS.get(event.side, event.side),
        }
    return EventStep(
        at=event.received_at,
        id=event.id,
        side=str(SIDE_WORDS.get(event.side, event.side)),
        event=event.event,
        text=text,
        duplicates=event.duplicates,
        payment=payment,
    )


def decision_step(entry: AuditEntry) -> DecisionStep:
    """One audit entry as the timeline tells it."""
    title, explanation = OUTCOME_STORY.get(entry.outcome, (entry.outcome, ""))
    before, after = entry.before or {}, entry.after or {}
    return DecisionStep(
        at=entry.created_at,
        id=entry.id,
        outcome=entry.outcome,
        title=str(title),
        explanation=str(explanation),
        reason=reason_text(reason=entry.reason, message=entry.message),
        asked_by=_asked_by(entry),
        seen=_seen(before),
        agreed_before=_agreed(before.get("base")),
        write=_write(after),
        # Held back: the base's deal side moves only so the same stage is not flagged again; "agreed" would
        # mislead, so the page says where each side stays instead.
        agreed_after="" if "needs_attention" in after else _agreed(after.get("base")),
        held=_held(before, after),
        flagged="needs_attention" in after,
        closed=after.get("link") == "closed",
        rest_calls=entry.rest_calls,
        latency=duration_text(entry.latency_ms),
        covered=_covered(after),
    )


def _asked_by(entry: AuditEntry) -> str:
    events = [e.strip() for e in entry.event.split(",") if e.strip() in EVENT_WORDS]
    origin = ORIGIN_WORDS.get(entry.origin)
    if events and entry.origin == "event":
        return gettext("an event from Bitrix (%(events)s)") % {"events": ", ".join(events)}
    return str(origin) if origin else ""


def _covered(after: dict[str, Any]) -> str:
    """The events of the pending jobs this decision's reads answered, e.g. "ONSALEORDERSAVED (2)"."""
    covered = after.get("covered")
    if not isinstance(covered, list):
        return ""
    counts: dict[str, int] = {}
    for job in covered:
        if isinstance(job, dict):
            event = str(job.get("event") or job.get("kind", ""))
            counts[event] = counts.get(event, 0) + int(job.get("events", 1))
    return ", ".join(f"{event} ({n})" if n > 1 else event for event, n in sorted(counts.items()))


def _seen(before: dict[str, Any]) -> list[str]:
    """What bxsync read on both sides just before deciding."""
    seen = []
    if "order_status" in before:
        status = status_label(str(before["order_status"]))
        if before.get("order_paid"):
            seen.append(gettext("order status %(status)s, paid") % {"status": status})
        else:
            seen.append(gettext("order status %(status)s, not paid") % {"status": status})
    elif before.get("order") == "deleted":
        seen.append(gettext("the order is deleted"))
    if "deal_stage" in before:
        seen.append(
            gettext("deal stage %(stage)s (%(pipeline)s)")
            % {
                "stage": stage_label(str(before["deal_stage"])),
                "pipeline": pipeline_label(before.get("pipeline")),
            }
        )
    elif before.get("deal") == "deleted":
        seen.append(gettext("the deal is deleted"))
    return seen


def _agreed(base: Any) -> str:
    if not isinstance(base, dict):
        return ""
    text = gettext("order %(status)s ↔ deal %(stage)s") % {
        "status": status_label(str(base.get("order_status", ""))),
        "stage": stage_label(str(base.get("deal_stage", ""))),
    }
    return text + (gettext(", paid") if base.get("paid") else "")


def _write(after: dict[str, Any]) -> str:
    if "deal_stage" in after:
        return gettext("in the CRM: deal stage → %(stage)s") % {
            "stage": stage_label(str(after["deal_stage"]))
        }
    if "order_status" in after:
        return gettext("in the shop: order status → %(status)s") % {
            "status": status_label(str(after["order_status"]))
        }
    return ""


def _held(before: dict[str, Any], after: dict[str, Any]) -> str:
    """For a change held back for a manager: where each side stays meanwhile."""
    if "needs_attention" not in after or "order_status" not in before or "deal_stage" not in before:
        return ""
    return gettext(
        "The order stays %(status)s and the deal stays at %(stage)s until a manager decides; bxsync does "
        "not flag the same stage again."
    ) % {
        "status": status_label(str(before["order_status"])),
        "stage": stage_label(str(before["deal_stage"])),
    }


# --- the summary at the top ---------------------------------------------------------------------------------

# Decisions that explain where the pair stands: a write, or a change held back.
EXPLAINING_OUTCOMES = [
    Outcome.APPLIED,
    Outcome.PAYMENT_APPLIED,
    Outcome.CONFLICT_RESOLVED,
    Outcome.CONFLICT_FLAGGED,
    Outcome.REGRESSION_BLOCKED,
    Outcome.UNMAPPED,
]


@dataclass
class LinkSummary:
    """Where the link stands, for the top of its page."""

    active: bool
    seen: list[str]
    seen_at: datetime | None
    agreed: str
    agreed_at: datetime | None
    attention: str
    closed_reason: str
    explaining: DecisionStep | None


def link_summary(*, link: Link) -> LinkSummary:
    """The link's state in plain words: both sides as last read, the last agreed state, and the latest
    decision that explains it (two queries)."""
    mine = AuditEntry.objects.filter(link=link).order_by("-created_at", "-id")
    last = mine.only("created_at", "before").first()
    entry = mine.filter(outcome__in=EXPLAINING_OUTCOMES).first()
    agreed = ""
    if link.base_at is not None:
        agreed = _agreed(
            {
                "order_status": link.base_order_status,
                "deal_stage": link.base_deal_stage,
                "paid": link.base_paid,
            },
        )
    attention = ""
    if link.needs_attention:
        attention = reason_text(reason=link.attention, message=link.attention_reason)
    return LinkSummary(
        active=link.state == LinkState.ACTIVE,
        seen=_seen(last.before or {}) if last else [],
        seen_at=last.created_at if last else None,
        agreed=agreed,
        agreed_at=link.base_at,
        attention=attention,
        closed_reason=link.close_reason,
        explaining=decision_step(entry) if entry else None,
    )


# --- the page ----------------------------------------------------------------------------------------------


def link_timeline_view(model_admin, request, object_id: str, extra_context: dict | None = None):
    """The link's page: its summary and a page of its story. Read-only for everyone."""
    link = model_admin.get_object(request, unquote(object_id))
    if link is None:
        return model_admin._get_obj_does_not_exist_redirect(request, model_admin.opts, object_id)
    if not model_admin.has_view_or_change_permission(request, link):
        raise PermissionDenied
    before = Cursor.decode(request.GET.get("before"))
    after = None if before else Cursor.decode(request.GET.get("after"))
    if before is None and after is None and (request.GET.get("before") or request.GET.get("after")):
        messages.warning(request, gettext("That place in the story could not be read; the newest is shown."))
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "original": link,
        "link": link,
        "title": gettext("Order %(order)s ↔ deal %(deal)s") % {"order": link.order_id, "deal": link.deal_id},
        "subtitle": None,
        "summary": link_summary(link=link),
        "page": link_timeline(link=link, before=before, after=after),
        "audit_url_query": urlencode({"q": link.order_id}),
        **(extra_context or {}),
    }
    return TemplateResponse(request, "admin/statussync/link/timeline.html", context)


class LinkTimelineMixin:
    """Makes the link's page in the admin its timeline (for `LinkAdmin`).

    A GET shows the timeline; anything else goes to the admin's own change view, which refuses a change
    without the permission to make it (403).
    """

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method in ("GET", "HEAD"):
            return link_timeline_view(self, request, object_id, extra_context)
        return super().change_view(request, object_id, form_url, extra_context)

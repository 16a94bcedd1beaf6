"""What managers do to links in the admin: resync, take one side's value, rediscover, resolve link problems.

Every action goes through the sync run like any event: it queues a job (origin "admin"), and the worker reads
both sides, decides with the engine and writes through intents and read-back. "Take the shop's (CRM's) value"
is a job carrying which side wins, which the engine honours as an override — never a raw write from here.
Each action leaves an audit entry saying who asked for what, so the link's story names the person.

These functions do not open transactions of their own: the admin calls them in one short transaction per
request, a background operation (`statussync.bulk`) in one per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q
from django.utils import timezone

from statussync.jobs import job_request
from statussync.models import (
    AuditEntry,
    BulkAction,
    JobKind,
    Link,
    LinkProblem,
    LinkProblemKind,
    LinkProblemState,
    LinkState,
    Outcome,
    Side,
)
from statussync.reasons import Reason, why

# The side that wins each forced decision, and what the job and the audit call the request.
_WINS: dict[str, str] = {BulkAction.RESYNC: "", BulkAction.TAKE_SHOP: Side.CMS, BulkAction.TAKE_CRM: Side.CRM}
_EVENTS: dict[str, str] = {
    BulkAction.RESYNC: "admin resync",
    BulkAction.TAKE_SHOP: "admin take shop",
    BulkAction.TAKE_CRM: "admin take crm",
    BulkAction.REDISCOVER: "admin rediscover",
}
_REASONS: dict[str, str] = {
    BulkAction.RESYNC: "admin_resync",
    BulkAction.TAKE_SHOP: "admin_take_shop",
    BulkAction.TAKE_CRM: "admin_take_crm",
    BulkAction.REDISCOVER: "admin_rediscover",
}


@dataclass
class LinksActed:
    """How an action on links went: how many were queued, and how many were skipped (closed meanwhile)."""

    done: int = 0
    skipped: int = 0


def links_act(*, action: str, link_ids: list[int], user: str) -> LinksActed:
    """Apply a manager's `action` (a `BulkAction`) to the active links among `link_ids`, as `user`."""
    result = LinksActed()
    links = list(Link.objects.filter(id__in=link_ids, state=LinkState.ACTIVE))
    result.skipped = len(set(link_ids)) - len(links)
    for link in links:
        if action == BulkAction.REDISCOVER:
            link_rediscover(link=link, user=user)
        else:
            link_resync(link=link, user=user, wins=_WINS[action], action=action)
        result.done += 1
    return result


def link_resync(*, link: Link, user: str, wins: str = "", action: str = BulkAction.RESYNC) -> None:
    """Queue a sync of `link` (re-read both sides), optionally with one side's value winning."""
    job_request(kind=JobKind.ORDER, entity_id=link.order_id, origin="admin", event=_EVENTS[action], wins=wins)
    _audit_request(link=link, event=_EVENTS[action], reason=why(_REASONS[action], user=user))


def link_rediscover(*, link: Link, user: str) -> None:
    """Close `link` (saying why and who) and queue its order, so discovery finds the order's deal afresh."""
    reason = why("admin_rediscover", user=user)
    _link_close(link=link, reason=reason, user=user)
    job_request(kind=JobKind.ORDER, entity_id=link.order_id, origin="admin", event="admin rediscover")
    _audit_request(link=link, event="admin rediscover", reason=reason)


class ProblemResolveError(ValueError):
    """A resolution that no longer fits the problem (the deal is not among its candidates, it is resolved)."""


def link_problem_resolve(*, problem: LinkProblem, user: str, deal_id: str = "") -> Reason:
    """Resolve a link problem the way the manager chose, and return what was done (for the message).

    Several deals naming one order: link the order to `deal_id` (closing whatever links stand in the way)
    and queue the order, whose run takes the pair as first seen. A deal that names another order now: close
    its stale link and queue the deal and the old order, so discovery links each to what names it now.
    """
    if problem.state != LinkProblemState.OPEN:
        raise ProblemResolveError("resolved already")
    now = timezone.now()
    if problem.kind == LinkProblemKind.SEVERAL_DEALS:
        if deal_id not in problem.deals:
            raise ProblemResolveError(f"deal {deal_id} does not name order {problem.order_id}")
        reason = why("problem_deal_chosen", user=user, order=problem.order_id, deal=deal_id)
        standing = Link.objects.filter(state=LinkState.ACTIVE).filter(
            Q(order_id=problem.order_id) | Q(deal_id=deal_id)
        )
        link = None
        for other in standing:
            if other.order_id == problem.order_id and other.deal_id == deal_id:
                link = other
            else:
                _link_close(link=other, reason=reason, user=user)
        if link is None:
            link = Link.objects.create(order_id=problem.order_id, deal_id=deal_id)
        job_request(kind=JobKind.ORDER, entity_id=problem.order_id, origin="admin", event="admin repair")
    else:
        reason = why("problem_link_closed", user=user, order=problem.order_id, deal=problem.deal_id)
        link = problem.link
        if link is not None and link.state == LinkState.ACTIVE:
            _link_close(link=link, reason=reason, user=user)
        job_request(kind=JobKind.DEAL, entity_id=problem.deal_id, origin="admin", event="admin repair")
        job_request(kind=JobKind.ORDER, entity_id=problem.order_id, origin="admin", event="admin repair")
    LinkProblem.objects.filter(id=problem.id, state=LinkProblemState.OPEN).update(
        state=LinkProblemState.RESOLVED, resolved_at=now, resolved_by=user, resolution=reason.as_json()
    )
    _audit_request(link=link, event="admin repair", reason=reason, order_id=problem.order_id)
    return reason


def _link_close(*, link: Link, reason: Reason, user: str) -> None:
    Link.objects.filter(id=link.id, state=LinkState.ACTIVE).update(
        state=LinkState.CLOSED,
        closed_at=timezone.now(),
        close_reason=str(reason)[:200],
        closure=reason.as_json(),
        closed_by=user[:150],
        needs_attention=False,
        attention_reason="",
        attention=None,
    )


def _audit_request(*, link: Link | None, event: str, reason: Reason, order_id: str = "") -> None:
    """The manager's request, in the link's story (before what the worker then decides)."""
    AuditEntry.objects.create(
        event=event,
        order_id=link.order_id if link is not None else order_id,
        deal_id=link.deal_id if link is not None else "",
        link=link,
        outcome=Outcome.RECEIVED,
        message=str(reason),
        reason=reason.as_json(),
        origin="admin",
    )

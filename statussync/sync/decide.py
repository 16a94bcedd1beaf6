"""Deciding: the engine's three-way merge for every live item, with the mapping and each pipeline's stages."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from django.conf import settings

from statussync import portals
from statussync.bitrix import BitrixError
from statussync.engine import (
    Base,
    Decision,
    Intent,
    Mapping,
    Origin,
    Write,
    decide,
    intent_settle,
    side_name,
)
from statussync.models import Link, Outcome, Side
from statussync.reasons import Reason, why

from .items import Item
from .stages import mapping_with_stages

if TYPE_CHECKING:
    from .run import SyncRun

logger = logging.getLogger(__name__)


def decisions_make(run: SyncRun) -> None:
    """Give every live item the engine's decision (or settle it when there is nothing to decide)."""
    items = run.live()
    if not items:
        return
    stages_seen: dict[int, set[str]] = {}
    for item in items:
        if item.deal is not None and not item.deal_missing:
            stages_seen.setdefault(item.deal.pipeline, set()).add(item.deal.stage)
    try:
        mapping, unreadable = mapping_with_stages(run, pipelines=set(stages_seen), stages_seen=stages_seen)
    except BitrixError as exc:
        run.contact(Side.CRM, exc)
        for item in items:
            item.fail(exc)
        return
    for item in items:
        if item.order is None and not item.order_missing and item.link is None:
            item.settle(Outcome.IGNORED, why("nothing_to_sync"))
            continue
        if item.link is None and (item.order_missing or item.deal_missing):
            item.settle(Outcome.IGNORED, why("gone_never_linked"))
            continue
        problem = link_problem_of(item)
        if problem is not None:
            # Writing now could move the wrong order; a manager says which pair belongs together.
            item.settle(Outcome.AMBIGUOUS, problem)
            continue
        try:
            item.decision = decision_for(item, mapping)
            error = unreadable.get(item.deal.pipeline) if item.deal is not None else None
            if error is not None and item.decision.reason.code == "payment_held":
                # The stage list could not be read, so nobody knows where the deal stands: retry later rather
                # than ask a manager about a portal's bad minute.
                item.decision = None
                item.fail(error)
        except Exception as exc:
            # A bug met on one item fails that item alone; the rest of the run goes on.
            logger.exception("could not decide %s", item.describe())
            item.fail(exc)


def decision_for(item: Item, mapping: Mapping) -> Decision:
    """The engine's decision for the item as read (its link's base, any unconfirmed write, the mapping)."""
    order = None if item.order_missing else item.order
    deal = None if item.deal_missing else item.deal
    base = base_of(item.link)
    intent = intent_of(item.link)
    if intent is not None:
        settled = intent_settle(base=base, intent=intent, order=order, deal=deal)
        if settled is intent.base:
            item.landed = intent.write.value
        base = settled
    decision = decide(
        base=base,
        order=order,
        deal=deal,
        mapping=mapping,
        origin=_echo_origin(item, base),
        tolerance_seconds=settings.BXSYNC_CONFLICT_TOLERANCE_SECONDS,
        override=item.wins,
    )
    if item.landed:
        # The base moves to what the landed write agreed (a decision that keeps the base would lose it). When
        # nothing more is to be done, the audit tells the landed write's own story.
        written = (item.link.intent_base if item.link else None) or {}
        reason = decision.reason
        if decision.write is None and decision.outcome in ("no_change", "echo") and written.get("outcome"):
            decision = replace(decision, outcome=written["outcome"])
            reason = Reason.from_json(written.get("reason")) or reason
        decision = replace(
            decision, reason=why("landed", then=reason, value=item.landed), new_base=decision.new_base or base
        )
    return decision


def link_problem_of(item: Item) -> Reason | None:
    """Why the item's link cannot be synced as it stands: its deal's order field no longer names the link's
    order (a manager re-pointed or cleared it). None when the link holds (or there is none: discovery's job).

    A deleted order or deal is not a problem of the link: it closes as usual."""
    link, deal = item.link, item.deal
    if link is None or deal is None or item.deal_missing or item.order_missing or deal.deleted:
        return None
    if deal.order_id == link.order_id:
        return None
    field = portals.deal_order_field()
    if deal.order_id:
        return why(
            "deal_names_other_order", deal=link.deal_id, order=link.order_id, named=deal.order_id, field=field
        )
    return why("deal_names_no_order", deal=link.deal_id, order=link.order_id, field=field)


def intent_of(link: Link | None) -> Intent | None:
    """The write the link's last run sent without seeing it confirmed, if any."""
    if link is None or not link.intent_side or not isinstance(link.intent_base, dict):
        return None
    b = link.intent_base
    base = Base(
        order_status=b["order_status"],
        deal_stage=b["deal_stage"],
        paid=b["paid"],
        pipeline=b.get("pipeline"),
        last_write_side=side_name(link.intent_side),
        last_write_value=link.intent_value,
    )
    return Intent(write=Write(side_name(link.intent_side), link.intent_value), base=base)


def base_of(link: Link | None) -> Base | None:
    """The link's base as the engine sees it; None for a link seen for the first time."""
    if link is None or link.base_at is None:
        return None
    return Base(
        order_status=link.base_order_status,
        deal_stage=link.base_deal_stage,
        paid=link.base_paid,
        pipeline=link.pipeline_id,
        last_write_side=side_name(link.last_write_side) if link.last_write_side else "",
        last_write_value=link.last_write_value,
    )


def _echo_origin(item: Item, base: Base | None) -> Origin:
    """Events from both sides of a link in one run leave no single origin. With a base, the engine uses the
    origin only to name an echo, so name the side bxsync last wrote to if one of the events came from it."""
    if item.origin is not None or base is None or not base.last_write_side:
        return item.origin
    job_sides = {Side.CRM if job.kind == "deal" else Side.CMS for job in item.jobs if job.origin == "event"}
    return base.last_write_side if base.last_write_side in job_sides else None

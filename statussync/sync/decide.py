"""Deciding: the engine's three-way merge for every live item, with the mapping and each pipeline's stages."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from django.conf import settings

from statussync import portals
from statussync.bitrix import BitrixError
from statussync.engine import Base, Mapping, Origin, decide
from statussync.mapping import mapping_load
from statussync.models import Link, Outcome, Side

from .items import Item

if TYPE_CHECKING:
    from .run import SyncRun


def decisions_make(run: SyncRun) -> None:
    """Give every live item the engine's decision (or settle it when there is nothing to decide)."""
    items = run.live()
    if not items:
        return
    try:
        mapping = _mapping_with_stages(run, pipelines={i.deal.pipeline for i in items if i.deal})
    except BitrixError as exc:
        run.contact(Side.CRM, exc)
        for item in items:
            item.fail(exc)
        return
    for item in items:
        if item.order is None and not item.order_missing and item.link is None:
            item.settle(Outcome.IGNORED, "nothing to sync")
            continue
        if item.link is None and (item.order_missing or item.deal_missing):
            item.settle(Outcome.IGNORED, "the order or deal no longer exists and was never linked")
            continue
        base = base_of(item.link)
        item.decision = decide(
            base=base,
            order=None if item.order_missing else item.order,
            deal=None if item.deal_missing else item.deal,
            mapping=mapping,
            origin=_echo_origin(item, base),
            tolerance_seconds=settings.BXSYNC_CONFLICT_TOLERANCE_SECONDS,
        )


def _mapping_with_stages(run: SyncRun, *, pipelines: set[int]) -> Mapping:
    """The stored mapping, with each pipeline's stage order and success stage as the CRM lists them."""
    mapping = mapping_load()
    wanted = sorted(pipelines & set(mapping.pipelines))
    stages = portals.pipeline_stages(crm=run.crm, pipelines=wanted) if wanted else {}
    run.contact(Side.CRM, None)
    return replace(
        mapping,
        pipelines={
            pid: replace(
                pm,
                success_stages=stages.get(pid, portals.PipelineStages()).success,
                stage_order=stages.get(pid, portals.PipelineStages()).order,
            )
            for pid, pm in mapping.pipelines.items()
        },
    )


def base_of(link: Link | None) -> Base | None:
    """The link's base as the engine sees it; None for a link seen for the first time."""
    if link is None or link.base_at is None:
        return None
    return Base(
        order_status=link.base_order_status,
        deal_stage=link.base_deal_stage,
        paid=link.base_paid,
        pipeline=link.pipeline_id,
        last_write_side=link.last_write_side,  # type: ignore[arg-type]
        last_write_value=link.last_write_value,
    )


def _echo_origin(item: Item, base: Base | None) -> Origin:
    """Events from both sides of a link in one run leave no single origin. With a base, the engine uses the
    origin only to name an echo, so name the side bxsync last wrote to if one of the events came from it."""
    if item.origin is not None or base is None or not base.last_write_side:
        return item.origin
    job_sides = {Side.CRM if job.kind == "deal" else Side.CMS for job in item.jobs if job.origin == "event"}
    return base.last_write_side if base.last_write_side in job_sides else None

"""What a mapping change does to the links that exist: the impact preview, and save-and-resync.

A link's base is the last state both sides agreed on *under the mapping of the time*. A new mapping can
disagree with it: the rule for the base's order status now names another stage, or the rule for its deal
stage another status. `mapping_impact` counts those links in SQL — only the (pipeline, status) and
(pipeline, stage) pairs whose target changed can differ, so the query names them — and describes a sample.
It stays bounded on any number of links: one COUNT and one page of rows.

A resync alone would change nothing for such a link: both sides still equal its base, and the engine
propagates only a side that differs from the base. So `mapping_change_resync` first marks, on each link
that would move, the side whose value now leads as changed — the shop's order status when the new mapping
gives it a stage (the deal follows the order, as the mapping now says), otherwise the deal's stage — by
blanking the *other* side of the base, then queues an ordinary job. The run that follows decides with the
new mapping, writes through the same paths as any change (payment, regression and conflict rules
included), and records the new base and its audit entry.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from statussync import engine
from statussync.jobs import job_request
from statussync.leases import heartbeat
from statussync.mapping.document import mapping_of_document
from statussync.models import JobKind, Link, LinkState, MappingChange

logger = logging.getLogger(__name__)

SAMPLE_SIZE = 20
RESYNC_CHUNK = 500

Move = Literal["deal", "order", "unmapped", "agrees"]


@dataclass(frozen=True)
class LinkRemap:
    """One link under the new mapping: what it was agreed on, and what would move where."""

    link_id: int
    order_id: str
    deal_id: str
    pipeline_id: int
    order_status: str
    deal_stage: str
    move: Move
    target: str = ""  # the deal's new stage (move "deal") or the order's new status (move "order")


@dataclass(frozen=True)
class MappingImpact:
    """How many active links map differently under the new mapping, how many of them would move, a sample
    (most recent first) and whether anything at all differs."""

    affected: int
    moving: int
    sample: tuple[LinkRemap, ...]
    changed: bool


class Remap:
    """A change from mapping document `before` to `after`, as it bears on links' bases.

    Only the (pipeline, order status) pairs whose stage changed, and the (pipeline, deal stage) pairs whose
    status changed, can make a link map differently; the side whose rule changed leads: a changed status
    rule moves the deal, else a changed stage rule moves the order.
    """

    def __init__(self, *, before: dict[str, Any], after: dict[str, Any]) -> None:
        old, self.new = _maps(before), _maps(after)
        self.changed = before != after
        empty = engine.PipelineMap(pipeline=-1, to_crm={}, to_cms={})
        self.statuses: dict[int, set[str]] = {}
        self.stages: dict[int, set[str]] = {}
        for pid in set(old) | set(self.new):
            o, n = old.get(pid, empty), self.new.get(pid, empty)
            statuses = {s for s in set(o.to_crm) | set(n.to_crm) if o.to_crm.get(s) != n.to_crm.get(s)}
            stages = {t for t in set(o.to_cms) | set(n.to_cms) if o.to_cms.get(t) != n.to_cms.get(t)}
            if statuses or stages:
                self.statuses[pid], self.stages[pid] = statuses, stages

    def affected(self) -> Q | None:
        """The links that map differently: their base's status or stage is a changed source value."""
        return _any(
            Q(pipeline_id=pid)
            & (
                Q(base_order_status__in=sorted(self.statuses[pid]))
                | Q(base_deal_stage__in=sorted(self.stages[pid]))
            )
            for pid in sorted(self.statuses)
        )

    def moving(self) -> Q | None:
        """The links that would move: a changed source value whose new target differs from the other side."""
        parts = []
        for pid in sorted(self.statuses):
            pm = self.new.get(pid)
            if pm is None:
                continue
            for status in sorted(self.statuses[pid]):
                if new_stage := pm.to_crm.get(status):
                    parts.append(Q(pipeline_id=pid, base_order_status=status) & ~Q(base_deal_stage=new_stage))
            for stage in sorted(self.stages[pid]):
                if new_status := pm.to_cms.get(stage):
                    parts.append(Q(pipeline_id=pid, base_deal_stage=stage) & ~Q(base_order_status=new_status))
        return _any(parts)

    def of(self, link: Link) -> LinkRemap:
        """What the new mapping does with this link's base."""
        pid = link.pipeline_id or 0
        pm = self.new.get(pid)
        status, stage = link.base_order_status, link.base_deal_stage
        new_stage = pm.to_crm.get(status) if pm else None
        new_status = pm.to_cms.get(stage) if pm else None
        move: Move
        if status in self.statuses.get(pid, ()) and new_stage and new_stage != stage:
            move, target = "deal", new_stage
        elif stage in self.stages.get(pid, ()) and new_status and new_status != status:
            move, target = "order", new_status
        elif new_stage == stage or new_status == status:
            move, target = "agrees", ""
        else:
            move, target = "unmapped", ""
        return LinkRemap(
            link_id=link.id,
            order_id=link.order_id,
            deal_id=link.deal_id,
            pipeline_id=pid,
            order_status=status,
            deal_stage=stage,
            move=move,
            target=target,
        )


def _maps(document: dict[str, Any]) -> dict[int, engine.PipelineMap]:
    return dict(mapping_of_document(document).pipelines)


def _any(parts: Iterable[Q]) -> Q | None:
    condition: Q | None = None
    for part in parts:
        condition = part if condition is None else condition | part
    return condition


def _links(condition: Q) -> QuerySet[Link]:
    return Link.objects.filter(condition, state=LinkState.ACTIVE, base_at__isnull=False)


def mapping_impact(
    *, before: dict[str, Any], after: dict[str, Any], sample: int = SAMPLE_SIZE
) -> MappingImpact:
    """The preview of a change from mapping document `before` to `after`: two COUNTs and a page of rows,
    however many links there are. The sample shows the links that would move first, most recent first."""
    remap = Remap(before=before, after=after)
    affected_q = remap.affected()
    if affected_q is None:
        return MappingImpact(affected=0, moving=0, sample=(), changed=remap.changed)
    affected = _links(affected_q).count()
    moving_q = remap.moving()
    moving = _links(moving_q).count() if moving_q is not None and affected else 0
    rows = list(_links(moving_q).order_by("-id")[:sample]) if moving_q is not None and moving else []
    if len(rows) < sample and affected > len(rows):
        rows += list(
            _links(affected_q).exclude(id__in=[r.id for r in rows]).order_by("-id")[: sample - len(rows)]
        )
    return MappingImpact(
        affected=affected, moving=moving, sample=tuple(remap.of(link) for link in rows), changed=remap.changed
    )


def mapping_affects_links(*, before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Whether a change from `before` to `after` makes any active link map differently: one EXISTS, which
    stops at the first such link (indexed), for the save's transaction to decide whether to ask first; the
    counts of `mapping_impact` are taken outside it."""
    affected_q = Remap(before=before, after=after).affected()
    return affected_q is not None and _links(affected_q).exists()


# --- save and resync ---------------------------------------------------------------------------------------


def mapping_change_resync_start(*, change: MappingChange) -> None:
    """Queue the resync of the links a recorded change moves, in the background, once it is committed."""
    MappingChange.objects.filter(id=change.id).update(resync_requested=True)
    transaction.on_commit(lambda: _resync_wake(change.id), robust=True)


def _resync_wake(change_id: int) -> None:
    from django_q.tasks import async_task

    async_task("statussync.tasks.mapping_resync", change_id, task_name=f"mapping-resync-{change_id}")


def mapping_change_resync(
    *, change_id: int, max_seconds: float | None = None, chunk: int = RESYNC_CHUNK
) -> int:
    """Queue a resync for every link the change moves, `chunk` links per short transaction, from where the
    last run stopped. Returns how many links this call queued; another task holding the change's lease
    makes it return 0 at once. After `max_seconds` it hands over to a fresh task.

    The task holds the change like a job (statussync/leases.py): its heartbeat renews the lease while it
    works, and each chunk is kept only while the claim still holds, so a task that stalled past its lease and
    lost the change stops there."""
    now = timezone.now()
    token = uuid.uuid4().hex
    taken = (
        MappingChange.objects.filter(id=change_id, resync_requested=True, resync_finished_at__isnull=True)
        .filter(Q(resync_lease_until__isnull=True) | Q(resync_lease_until__lt=now))
        .update(resync_lease_until=now + _lease(), resync_token=token)
    )
    if not taken:
        return 0
    with heartbeat(
        renew=lambda: _resync_held(change_id, token).update(resync_lease_until=timezone.now() + _lease()),
        what=f"the resync of mapping change {change_id}",
    ):
        return _resync_chunks(change_id, token=token, max_seconds=max_seconds, chunk=chunk)


def _lease() -> timedelta:
    return timedelta(seconds=settings.BXSYNC_JOB_LEASE_SECONDS)


def _resync_held(change_id: int, token: str) -> QuerySet[MappingChange]:
    """The change, if this task's claim still holds it (fencing)."""
    return MappingChange.objects.filter(
        id=change_id, resync_token=token, resync_lease_until__gte=timezone.now()
    )


def _resync_chunks(change_id: int, *, token: str, max_seconds: float | None, chunk: int) -> int:
    change = MappingChange.objects.get(id=change_id)
    remap = Remap(before=change.before, after=change.after)
    moving_q = remap.moving()
    started = time.monotonic()
    queued = 0
    after_id = change.resync_after_id
    while moving_q is not None:
        if max_seconds is not None and time.monotonic() - started >= max_seconds:
            _resync_held(change_id, token).update(resync_lease_until=None, resync_token="")
            transaction.on_commit(lambda: _resync_wake(change_id), robust=True)
            return queued
        # One short transaction per chunk: a webhook waiting for SQLite's write lock waits for one chunk.
        with transaction.atomic():
            # The claim first: on PostgreSQL the row stays locked until the chunk commits, so no task takes
            # the change over meanwhile; a claim already gone queues nothing more.
            if not _resync_held(change_id, token).update(resync_lease_until=timezone.now() + _lease()):
                logger.warning("the resync of mapping change %s was taken over; this task stops", change_id)
                return queued
            links = list(_links(moving_q).filter(id__gt=after_id).order_by("id")[:chunk])
            if not links:
                break
            done = sum(_link_resync(link, remap) for link in links)
            queued += done
            after_id = links[-1].id
            MappingChange.objects.filter(id=change_id).update(
                resync_after_id=after_id, resync_queued=F("resync_queued") + done
            )
    _resync_held(change_id, token).update(resync_finished_at=timezone.now(), resync_lease_until=None)
    return queued


def _link_resync(link: Link, remap: Remap) -> int:
    move = remap.of(link).move
    if move == "deal":
        blank = {"base_order_status": ""}  # the order's status counts as changed: the deal follows it
    elif move == "order":
        blank = {"base_deal_stage": ""}  # the deal's stage counts as changed: the order follows it
    else:
        return 0
    # Only while the base is still the one the change was measured against: a run that moved it since has
    # decided with the new mapping already.
    Link.objects.filter(
        id=link.id, base_order_status=link.base_order_status, base_deal_stage=link.base_deal_stage
    ).update(**blank)
    job_request(kind=JobKind.ORDER, entity_id=link.order_id, origin="admin", event="mapping change")
    return 1


def mapping_resyncs_resume() -> int:
    """Wake the resyncs whose task died (its lease ran out) or never started; the sweeper calls this."""
    now = timezone.now()
    stalled = list(
        MappingChange.objects.filter(resync_requested=True, resync_finished_at__isnull=True)
        .filter(Q(resync_lease_until__isnull=True) | Q(resync_lease_until__lt=now))
        .filter(created_at__lt=now - timedelta(seconds=30))
        .values_list("id", flat=True)
    )
    for change_id in stalled:
        _resync_wake(change_id)
    return len(stalled)

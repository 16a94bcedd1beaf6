"""Recording: move the link's base, write the audit entry and finish the jobs — one transaction for a chunk of
items, each item alone when its chunk fails — or hand failed work to the jobs' failure policy. Also the
portals' health as this run saw it."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from statussync import metrics
from statussync.bitrix import BitrixError, TransientError
from statussync.engine import DealState, OrderState
from statussync.health import portal_contact_record
from statussync.jobs import error_text, job_release, job_request, jobs_fail, jobs_finish
from statussync.models import (
    AuditEntry,
    Job,
    JobKind,
    JobState,
    Link,
    LinkProblem,
    LinkProblemKind,
    LinkProblemState,
    LinkState,
    Outcome,
    Side,
    UnmappedValue,
)
from statussync.reasons import Reason, why

from .covered import covers_finish
from .decide import base_of
from .items import Item, ItemResult
from .locks import locks_give_back, locks_held
from .stages import catalog_refresh_soon

if TYPE_CHECKING:
    from .run import SyncRun

logger = logging.getLogger(__name__)


# How many items one transaction records, by database. One transaction an item made a run of 1,000 items
# take 7-12 s to record on PostgreSQL (each commit waits for a disk flush) while the next run found its orders
# still locked; there a chunk's transaction locks only its own rows. On SQLite it holds the one write lock
# every webhook waits for (IMMEDIATE, bxsync_project/settings.py): 10 items hold it 7-11 ms, one item alone
# held it 2 ms and its jobs' commit once more, so 1,000 items hold it about a third as long in all, in longer
# stretches. docs/decisions.md "How a run records its items".
RECORD_CHUNK = {"postgresql": 100, "sqlite": 10}


def items_record(run: SyncRun) -> list[ItemResult]:
    """Record every item of the run, in its order: the items to store in chunks (RECORD_CHUNK), one
    transaction each, giving back their orders' locks as they go; the rest (busy, failed, a dry run) alone."""
    results: dict[int, ItemResult] = {}
    stored: list[int] = []
    for n, item in enumerate(run.items):
        if _stored(run, item):
            stored.append(n)
        else:
            results[n] = item_record_safely(run, item)
    # An order two items of the run name (they are merged as a rule) keeps its lock until the run ends.
    once = {o for o, times in Counter(i.order_id for i in run.items).items() if times == 1}
    size = RECORD_CHUNK.get(connection.vendor, 10)
    for start in range(0, len(stored), size):
        chunk = stored[start : start + size]
        recorded = _chunk_record_safely(run, [run.items[n] for n in chunk], release=once)
        results.update(zip(chunk, recorded, strict=True))
    return [results[n] for n in range(len(run.items))]


def _stored(run: SyncRun, item: Item) -> bool:
    """Whether recording `item` stores its ending (link, audit, jobs finished) under the run's lock."""
    return not (run.dry_run or item.busy or item.error is not None)


def _chunk_record_safely(run: SyncRun, items: list[Item], *, release: set[str]) -> list[ItemResult]:
    """`_chunk_record`; a chunk that fails is recorded again item by item, so one bad item fails alone."""
    if len(items) > 1:
        try:
            results = _chunk_record(run, items, release=release)
        except Exception:
            logger.exception("could not record %d items together; recording them one by one", len(items))
        else:
            for result in results:
                _metrics_count(result.item, result)
            return results
    return [item_record_safely(run, item, release=release) for item in items]


def item_record_safely(run: SyncRun, item: Item, *, release: Collection[str] = ()) -> ItemResult:
    """`item_record`, with a bug or a database error met on one item failing that item alone."""
    result = _item_record_safely(run, item, release=release)
    if not run.dry_run:
        _metrics_count(item, result)
    return result


def _metrics_count(item: Item, result: ItemResult) -> None:
    """The decision, the write and a payment's latency, for /metrics (counted once the item is recorded)."""
    metrics.DECISIONS.labels(outcome=result.outcome).inc()
    write = item.decision.write if item.decision is not None else None
    if write is not None and item.write_sent:
        took = item.error is None and _write_took_effect(item)
        metrics.WRITES.labels(
            portal=write.side, result="took effect" if took else "failed or no effect"
        ).inc()
    # From the first event's arrival (the job's creation); a payment reconciliation found has no arrival.
    if result.outcome == Outcome.PAYMENT_APPLIED and item.source == "event" and item.started is not None:
        metrics.PAYMENT_LATENCY.observe(max((timezone.now() - item.started).total_seconds(), 0.0))


def _item_record_safely(run: SyncRun, item: Item, *, release: Collection[str]) -> ItemResult:
    try:
        return item_record(run, item, release=release)
    except Exception as exc:
        logger.exception("could not record %s", item.describe())
        item.error = exc
        try:
            return _record_failure(run, item)
        except Exception:
            logger.exception("could not retry %s; its jobs return when their lease ends", item.describe())
            return ItemResult(item, Outcome.FAILED, why("error", error=error_text(exc)))


def item_record(run: SyncRun, item: Item, *, release: Collection[str] = ()) -> ItemResult:
    """Record how `item` ended and finish, release or retry its jobs; its order's lock is given back at
    once if `release` names the order."""
    if item.busy:
        if run.dry_run:
            return ItemResult(item, "busy", why("busy"))
        for job in item.jobs or _jobs_for_later(item):
            job_release(job=job)
        return ItemResult(item, "busy", why("busy"))
    if item.error is not None:
        return _record_failure(run, item)
    if run.dry_run:
        ending = _ending(item)
        return ItemResult(item, ending.outcome, ending.reason)
    try:
        return _chunk_record(run, [item], release=release)[0]
    except IntegrityError as exc:
        # Another worker linked the same order or deal a moment ago; the retry will find its link.
        item.error = TransientError(portal="db", method="link", code="race", description=str(exc)[:200])
        return _record_failure(run, item)


@dataclass
class _Ending:
    """How an item that reached its end is recorded: its outcome and why, whether its write took effect,
    and whether the deal stayed where it was (the write had no effect at all)."""

    outcome: str
    reason: Reason
    took_effect: bool
    stuck: bool


def _ending(item: Item) -> _Ending:
    if item.decision is not None:
        outcome, reason = item.decision.outcome, item.decision.reason
    else:
        outcome, reason = item.outcome or Outcome.IGNORED, item.reason or why("nothing_to_sync")
    took_effect = _write_took_effect(item)
    stuck = not took_effect and _deal_stayed(item)
    if stuck:
        outcome = Outcome.FAILED
        reason = why(
            "write_no_effect_stage",
            then=reason,
            target=item.decision.write.value,  # type: ignore[union-attr]
            stage=item.deal.stage,  # type: ignore[union-attr]
        )
    elif not took_effect:
        outcome = Outcome.FAILED
        # Only a deal read back elsewhere fails the check (_write_took_effect).
        pipeline = item.written.pipeline if isinstance(item.written, DealState) else None
        reason = why("write_no_effect", then=reason, pipeline=pipeline)
    return _Ending(outcome, reason, took_effect, stuck)


@dataclass(eq=False)
class _Stored:
    """What recording one item stores, gathered before its chunk's transaction: on SQLite that transaction
    holds the one write lock, so it only runs the statements."""

    item: Item
    ending: _Ending
    link: Link | None  # a first-seen pair's link is made here, unsaved
    changes: dict[str, Any] = field(default_factory=dict)  # for the link
    writes: list[Callable[[], object]] = field(default_factory=list)  # problems, unmapped values, a job
    entry: AuditEntry | None = None

    def change(self, fields: dict[str, Any]) -> None:
        """Change the link's `fields` (after any change made before)."""
        if self.link is not None and self.link.pk is None:
            for name, value in fields.items():
                setattr(self.link, name, value)
        else:
            self.changes.update(fields)


def _chunk_record(run: SyncRun, items: list[Item], *, release: Collection[str]) -> list[ItemResult]:
    """Store the endings of `items` in one transaction: each item's link, audit entry and finished jobs
    together, or nothing of it; the locks of `release`'s orders recorded here are given back in it."""
    now = timezone.now()  # one moment for the chunk: links left alike share one UPDATE
    stored = [_stored_make(item, now=now) for item in items]
    with transaction.atomic():
        held = locks_held(run, [i.order_id for i in items if i.order_id])
        # Fencing: a run that outlived its lock, while another worker took the order, records nothing of it;
        # whatever it wrote is on the link as an intent, which that worker settles.
        kept = [s for s in stored if not s.item.order_id or s.item.order_id in held]
        links = [(s.link, s.changes) for s in kept if s.link is not None]
        Link.objects.bulk_create([link for link, _ in links if link.pk is None])  # first-seen pairs
        _links_update([(link, changes) for link, changes in links if changes])
        for s in kept:
            for write in s.writes:
                write()
            covered = covers_finish(s.item) if s.ending.took_effect else []
            if covered and s.entry is not None:
                s.entry.after["covered"] = covered  # the events this item's reads answered too (covered.py)
        AuditEntry.objects.bulk_create([s.entry for s in kept if s.entry is not None])
        jobs_finish(jobs=[job for s in kept if not s.ending.stuck for job in s.item.jobs])
        locks_give_back(run, {s.item.order_id for s in kept if not s.ending.stuck}.intersection(release))
    for s in kept:
        if s.ending.stuck:
            # The base stayed, so the change (a payment too) is decided again on the retry, with the catalog
            # read afresh: a stage deleted in the CRM then stops the write before it is sent (engine.decide).
            catalog_refresh_soon()
            failed = s.item.jobs or _jobs_for_later(s.item)
            jobs_fail(jobs=failed, error=WriteHadNoEffect(str(s.ending.reason)))
    return [
        ItemResult(s.item, s.ending.outcome, s.ending.reason) if s in kept else _lost(s.item) for s in stored
    ]


def _lost(item: Item) -> ItemResult:
    return ItemResult(item, "lost", why("lock_lost"))


def _stored_make(item: Item, *, now: datetime) -> _Stored:
    """What recording `item` stores: its link's changes, its audit entry, the other writes it makes."""
    ending = _ending(item)
    stored = _Stored(item, ending, item.link)
    _link_save(stored, now=now, took_effect=ending.took_effect, flag=ending.reason if ending.stuck else None)
    _problem_record(stored)
    after = _after_dict(item) if ending.took_effect else {"deal": "unchanged: the write had no effect"}
    stored.entry = _audit_entry(
        item, outcome=ending.outcome, reason=ending.reason, link=stored.link, after=after
    )
    if item.decision and item.decision.unmapped:
        stored.writes.append(partial(_unmapped_seen, *item.decision.unmapped))
    if not ending.took_effect and not ending.stuck:
        redecide = partial(job_request, kind=JobKind.DEAL, origin="reconcile", event="redecide")
        stored.writes.append(partial(redecide, entity_id=item.deal_id))
    return stored


def _links_update(changes: list[tuple[Link, dict[str, Any]]]) -> None:
    """Save the links' changes: links left alike (a storm's title edits leave most at the same stage,
    status and moment) share one UPDATE."""
    alike: dict[str, tuple[dict[str, Any], list[int]]] = {}
    for link, fields in changes:
        alike.setdefault(repr(sorted(fields.items())), (fields, []))[1].append(link.id)
    for fields, ids in alike.values():
        Link.objects.filter(id__in=ids).update(**fields)


class WriteHadNoEffect(Exception):
    """The CRM answered `true` to a stage write and left the deal where it was: retried with backoff, then
    the dead-letter list (`jobs.jobs_fail`), while the link waits for a manager."""


def _write_took_effect(item: Item) -> bool:
    """Whether the item's write did what it was meant to, as read back right after it.

    `crm.deal.update` answers `true` and changes nothing when the deal moved to another pipeline since we read
    it [docs/bitrix.md "Deals"]: then the base must not move. A deal at another stage of the same
    pipeline took the write and was moved again at once (a robot runs after every save); that move is an
    event of its own. A deal still at the stage it was read at took nothing: the same `true` answers a stage
    the pipeline does not have (deleted in the CRM, or a stale mapping), since api-reference/crm/deals/
    crm-deal-update.md ignores "an incorrect field" and lists no error for it [docs/bitrix.md "Deals"].
    """
    decision = item.decision
    if decision is None or decision.write is None or decision.write.side != "crm":
        return True
    written = item.written
    if not isinstance(written, DealState) or written.stage == decision.write.value:
        return True
    if decision.new_base is not None and written.pipeline != decision.new_base.pipeline:
        return False
    return not _deal_stayed(item)


def _deal_stayed(item: Item) -> bool:
    """The deal, read back after a stage write, is still in the pipeline and at the stage it was read at."""
    written, before = item.written, item.deal
    write = item.decision.write if item.decision is not None else None
    return (
        isinstance(written, DealState)
        and before is not None
        and write is not None
        and written.stage != write.value
        and (written.stage, written.pipeline) == (before.stage, before.pipeline)
    )


def _link_save(
    stored: _Stored, *, now: datetime, took_effect: bool = True, flag: Reason | None = None
) -> None:
    """Make a first-seen pair's link, move its base, close it, flag it or clear its flag (in `stored`). Any
    write intent on the link is settled by now (confirmed, adopted or decided afresh) and is cleared."""
    item = stored.item
    decision = item.decision
    link = item.link
    seen = _seen(item, now=now)
    if decision is None:
        if link is not None and seen:
            stored.change(seen)
        return
    if not took_effect:
        # The base stays; a write that changed nothing in the same pipeline (`flag`) waits for a manager.
        attention: dict[str, Any] = {}
        if flag is not None:
            attention = {
                "needs_attention": True,
                "attention_reason": str(flag)[:300],
                "attention": flag.as_json(),
            }
        stored.change({**_NO_INTENT, **seen, **attention, "updated_at": now})
        return
    if decision.close:
        if link is not None:
            reason = str(decision.reason)[:200]
            stored.change({"state": LinkState.CLOSED, "closed_at": now, "close_reason": reason, **seen})
        return
    if link is None:
        link = stored.link = Link(
            order_id=item.order_id,
            deal_id=item.deal_id,
            pipeline_id=item.deal.pipeline if item.deal else None,
        )
    updates: dict[str, Any] = {**_NO_INTENT, **seen}
    if item.landed and link.intent_side:
        updates.update(
            last_write_side=link.intent_side, last_write_value=link.intent_value, last_write_at=now
        )
    if decision.new_base is not None:
        base = decision.new_base
        updates.update(
            base_order_status=base.order_status,
            base_deal_stage=base.deal_stage,
            base_paid=base.paid,
            pipeline_id=base.pipeline,
            base_at=now,
        )
        if decision.write is not None:
            updates.update(
                last_write_side=decision.write.side, last_write_value=decision.write.value, last_write_at=now
            )
            if _read_back_shows(item, decision.write.value):
                updates["echo_expected"] = decision.write.side  # statussync/sync/echoes.py
        if link.base_at is None:
            # The order has its link now: a "several deals name it" problem is settled.
            resolution = why("problem_linked", order=link.order_id, deal=link.deal_id)
            settle = partial(_problems_settle, kind=LinkProblemKind.SEVERAL_DEALS, resolution=resolution)
            stored.writes.append(partial(settle, key=link.order_id))
    flag = decision.flag
    if flag is None and decision.outcome == Outcome.UNMAPPED:
        # No write until a manager adds a rule: the links list shows it among those needing attention.
        flag = decision.reason
    if flag:
        updates.update(needs_attention=True, attention_reason=str(flag)[:300], attention=flag.as_json())
    elif (
        decision.write is not None
        or (decision.outcome == Outcome.NO_CHANGE and decision.new_base is not None)
        or _attention_code(link) in _PROBLEM_CODES
    ):
        # A later agreement settles an earlier conflict or regression; a deal that names its order again
        # settles the link's problem.
        updates.update(needs_attention=False, attention_reason="", attention=None)
    if _attention_code(link) in _PROBLEM_CODES:
        gone = why("problem_gone")
        stored.writes.append(
            partial(
                _problems_settle, kind=LinkProblemKind.DEAL_ORDER_CHANGED, key=link.deal_id, resolution=gone
            )
        )
    stored.change({**updates, "updated_at": now})


def _seen(item: Item, *, now: Any) -> dict[str, Any]:
    """Both sides as this run leaves them: as read, or as written (read back when the portal said)."""
    seen: dict[str, Any] = {}
    write = item.decision.write if item.decision is not None else None
    if item.order is not None and not item.order_missing:
        status = item.order.status
        if write is not None and write.side == "cms":
            status = item.written.status if isinstance(item.written, OrderState) else write.value
        seen.update(last_order_status=status, last_order_paid=item.order.paid)
    if item.deal is not None and not item.deal_missing:
        stage = item.deal.stage
        if write is not None and write.side == "crm":
            stage = item.written.stage if isinstance(item.written, DealState) else write.value
        seen["last_deal_stage"] = stage
    if seen:
        seen["last_read_at"] = now
        seen["echo_expected"] = ""  # read: the echo of an earlier write is read like any event now
    return seen


def _read_back_shows(item: Item, value: str) -> bool:
    """Whether the write's read-back (same batch call) shows the value written: only then is its echo
    known."""
    written = item.written
    if isinstance(written, OrderState):
        return written.status == value
    return isinstance(written, DealState) and written.stage == value


# The reasons that make a link problem, and of which kind.
_PROBLEM_KINDS: dict[str, str] = {
    "deal_names_other_order": LinkProblemKind.DEAL_ORDER_CHANGED,
    "deal_names_no_order": LinkProblemKind.DEAL_ORDER_CHANGED,
    "several_deals": LinkProblemKind.SEVERAL_DEALS,
    "order_linked_elsewhere": LinkProblemKind.SEVERAL_DEALS,
}
_PROBLEM_CODES = frozenset(c for c, k in _PROBLEM_KINDS.items() if k == LinkProblemKind.DEAL_ORDER_CHANGED)


def _attention_code(link: Link | None) -> str:
    attention = link.attention if link is not None else None
    return str(attention.get("code", "")) if isinstance(attention, dict) else ""


def _problem_record(stored: _Stored) -> None:
    """A pair bxsync cannot sync until a manager says which deal goes with which order: flag the link and
    list the problem (once per subject while it is open; a situation a manager already settled is not asked
    again)."""
    item, link = stored.item, stored.link
    reason = item.reason
    kind = _PROBLEM_KINDS.get(reason.code) if item.decision is None and reason is not None else None
    if kind is None or reason is None:
        return
    if kind == LinkProblemKind.DEAL_ORDER_CHANGED:
        if link is None:
            return
        stored.change(
            {"needs_attention": True, "attention_reason": str(reason)[:300], "attention": reason.as_json()}
        )
        named = str(reason.params.get("named", ""))
        stored.writes.append(
            partial(
                _problem_upsert,
                kind=kind,
                key=link.deal_id,
                order_id=link.order_id,
                deal_id=link.deal_id,
                deals=[link.deal_id],
                named_order=named,
                link=link,
            )
        )
        return
    stored.writes.append(partial(_problem_list_order, item, kind=kind, reason=reason))


def _problem_list_order(item: Item, *, kind: str, reason: Reason) -> None:
    """List the problem of an order several deals name (inside the recording transaction: it reads the
    order's link as it stands)."""
    if reason.code == "order_linked_elsewhere":
        order_id = str(reason.params["order"])
        deals = sorted({str(reason.params["deal"]), str(reason.params["other"])})
        linked = Link.objects.filter(state=LinkState.ACTIVE, order_id=order_id).first()
    else:
        order_id = item.order_id
        deals = sorted({d.deal_id for d in item.candidates or [] if not d.deleted})
        linked = None
    _problem_upsert(
        kind=kind,
        key=order_id,
        order_id=order_id,
        deal_id=linked.deal_id if linked else "",
        deals=deals,
        named_order="",
        link=linked,
    )


def _problem_upsert(
    *,
    kind: str,
    key: str,
    order_id: str,
    deal_id: str,
    deals: list[str],
    named_order: str,
    link: Link | None,
) -> None:
    now = timezone.now()
    fields = {
        "order_id": order_id,
        "deal_id": deal_id,
        "deals": deals,
        "named_order": named_order,
        "link": link,
    }
    open_problem = LinkProblem.objects.filter(kind=kind, key=key, state=LinkProblemState.OPEN)
    if open_problem.update(times_seen=F("times_seen") + 1, last_seen=now, **fields):
        return
    latest = LinkProblem.objects.filter(kind=kind, key=key).order_by("-id").first()
    if (
        latest is not None
        and latest.resolved_by
        and latest.deals == deals
        and latest.named_order == named_order
    ):
        # A manager settled exactly this (e.g. chose one of these deals); the other deal still naming the
        # order is their call, not a new problem.
        return
    try:
        with transaction.atomic():
            LinkProblem.objects.create(kind=kind, key=key, **fields)
    except IntegrityError:
        pass  # another run listed it a moment ago


def _problems_settle(*, kind: str, key: str, resolution: Reason) -> None:
    """Mark the open problem of `kind` about `key` resolved by bxsync itself (the data put it right)."""
    LinkProblem.objects.filter(kind=kind, key=key, state=LinkProblemState.OPEN).update(
        state=LinkProblemState.RESOLVED, resolved_at=timezone.now(), resolution=resolution.as_json()
    )


_NO_INTENT: dict[str, Any] = {"intent_side": "", "intent_value": "", "intent_base": None, "intent_at": None}


def _record_failure(run: SyncRun, item: Item) -> ItemResult:
    """Retry or dead-letter the item's jobs by the failure policy, and audit why."""
    error = item.error
    assert error is not None
    reason = why("error", error=error_text(error)[:2000])
    if run.dry_run:
        return ItemResult(item, Outcome.FAILED, reason)
    refused = isinstance(error, BitrixError) and not isinstance(error, TransientError)
    if item.write_sent and item.link is not None and refused:
        # The portal refused the write outright: it did not land, so there is nothing to settle later.
        Link.objects.filter(id=item.link.id).update(**_NO_INTENT)
    states = jobs_fail(jobs=item.jobs or _jobs_for_later(item), error=error)
    outcome = Outcome.FAILED if JobState.DEAD in states else Outcome.RETRIED
    _audit(item, outcome=outcome, reason=reason, link=item.link, after={})
    return ItemResult(item, outcome, reason)


def _jobs_for_later(item: Item) -> list[Job]:
    """An on-demand item (reconciliation) that could not finish becomes a job, so it is not lost."""
    kind, entity = (JobKind.ORDER, item.order_id) if item.order_id else (JobKind.DEAL, item.deal_id)
    job_request(kind=kind, entity_id=entity, origin="reconcile", event="reconcile")
    return []  # the new pending job is the retry; there is no claimed job to give back


def _audit(item: Item, *, outcome: str, reason: Reason, link: Link | None, after: dict[str, Any]) -> None:
    """Write the audit entry of one item."""
    _audit_entry(item, outcome=outcome, reason=reason, link=link, after=after).save()


def _audit_entry(
    item: Item, *, outcome: str, reason: Reason, link: Link | None, after: dict[str, Any]
) -> AuditEntry:
    """The audit entry of one item, unsaved: what asked, what was seen, what was decided or went wrong."""
    return AuditEntry(
        side={"cms": Side.CMS, "payment": Side.CMS, "crm": Side.CRM}.get(item.origin or "", ""),
        event=", ".join(sorted(set(item.events)))[:64],
        order_id=item.order_id,
        deal_id=item.deal_id,
        link=link,
        outcome=outcome,
        before=_before_dict(item),
        after=after,
        message=str(reason),
        reason=reason.as_json(),
        rest_calls=item.calls,
        latency_ms=_latency_ms(item),
        origin=item.source,
    )


def _before_dict(item: Item) -> dict[str, Any]:
    state: dict[str, Any] = {}
    if item.payment_id:
        # A payment event names the payment, not the order: the link's timeline finds the event by it.
        state["payment"] = item.payment_id
    if item.order is not None:
        state["order_status"] = item.order.status
        state["order_paid"] = item.order.paid
    elif item.order_missing:
        state["order"] = "deleted"
    if item.deal is not None:
        state["deal_stage"] = item.deal.stage
        state["pipeline"] = item.deal.pipeline
    elif item.deal_missing:
        state["deal"] = "deleted"
    base = base_of(item.link)
    if base is not None:
        state["base"] = {"order_status": base.order_status, "deal_stage": base.deal_stage, "paid": base.paid}
    return state


def _after_dict(item: Item) -> dict[str, Any]:
    decision = item.decision
    if decision is None:
        return {}
    after: dict[str, Any] = {}
    if decision.write is not None:
        key = "deal_stage" if decision.write.side == "crm" else "order_status"
        after[key] = decision.write.value
    if decision.new_base is not None:
        after["base"] = {
            "order_status": decision.new_base.order_status,
            "deal_stage": decision.new_base.deal_stage,
            "paid": decision.new_base.paid,
        }
    if decision.close:
        after["link"] = "closed"
    if decision.flag:
        after["needs_attention"] = str(decision.flag)
    return after


def _latency_ms(item: Item) -> int | None:
    if item.started is None:
        return None
    return max(int((timezone.now() - item.started).total_seconds() * 1000), 0)


def _unmapped_seen(side: str, pipeline: int, value: str) -> None:
    updated = UnmappedValue.objects.filter(side=side, pipeline_id=pipeline, value=value).update(
        times_seen=F("times_seen") + 1, last_seen=timezone.now()
    )
    if not updated:
        try:
            with transaction.atomic():
                UnmappedValue.objects.create(side=side, pipeline_id=pipeline, value=value)
        except IntegrityError:
            pass


def portal_contacts_record(
    contacts: dict[str, BitrixError | None], *, answered_at: dict[str, datetime] | None = None
) -> None:
    """Each portal's last contact, or its last error, as this run saw it (for /api/health/); a success
    counts from when the portal answered, not from the end of the run."""
    for portal, error in contacts.items():
        portal_contact_record(portal=portal, error=error, at=(answered_at or {}).get(portal))

"""The sync decision: a pure three-way merge, no I/O.

Given the link's base (the last state both sides agreed on), the order and the deal as they are now, the
mapping and the side whose event asked for the work, `decide` says what to write (at most one write) and
what the new base is. Only a side that differs from its base is propagated, so the echo of bxsync's own
write finds both sides equal to the base and writes nothing: one human change, exactly one write.

Every rule of docs/contract.md "Behaviour" 1 to 6 is a row in tests/test_engine.py.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingABC
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from statussync.reasons import Reason, why

SideName = Literal["cms", "crm"]
# Who asked for this decision: the shop (an order event), a payment event, the CRM (a deal event), or
# nobody in particular (reconciliation, an admin resync).
Origin = Literal["cms", "payment", "crm"] | None


def side_name(stored: str) -> SideName:
    """Return the engine's name of a side stored in the database (the models' `Side` values are the same)."""
    if stored == "cms":
        return "cms"
    if stored == "crm":
        return "crm"
    raise ValueError(f"not a side: {stored!r}")


@dataclass(frozen=True)
class OrderState:
    """An order as the shop reports it now."""

    order_id: str
    status: str
    paid: bool
    status_changed_at: datetime | None = None  # sale `dateStatus`
    deleted: bool = False


@dataclass(frozen=True)
class DealState:
    """A deal as the CRM reports it now."""

    deal_id: str
    stage: str
    pipeline: int
    stage_changed_at: datetime | None = None  # crm `MOVED_TIME`
    order_id: str = ""  # the deal order field
    deleted: bool = False
    # STAGE_SEMANTIC_ID "S": the deal is at its pipeline's success stage, whatever that stage is called.
    successful: bool = False


@dataclass(frozen=True)
class Base:
    """The last state both sides agreed on, and what bxsync itself wrote last."""

    order_status: str
    deal_stage: str
    paid: bool
    pipeline: int | None = None
    last_write_side: SideName | Literal[""] = ""
    last_write_value: str = ""


@dataclass(frozen=True)
class PipelineMap:
    """The mapping of one pipeline, split by direction."""

    pipeline: int
    to_crm: MappingABC[str, str]  # order status -> deal stage (rules "both" and "to_crm")
    to_cms: MappingABC[str, str]  # deal stage -> order status (rules "both" and "to_cms")
    paid_stage: str = ""
    conflict_policy: str = "latest"
    success_stages: frozenset[str] = frozenset()  # the pipeline's "S" stage, read from the CRM
    # The pipeline's in-progress and success stages in the CRM's SORT order, read from the CRM: "past the
    # paid stage" means later here. Failure stages are left out: a lost deal whose order gets paid is not
    # past the paid stage, it still owes the move.
    stage_order: tuple[str, ...] = ()
    failure_stages: frozenset[str] = frozenset()  # LOSE, APOLOGY and the like, read from the CRM

    def knows(self, stage: str) -> bool:
        """Whether the CRM's stage list, as bxsync last read it, has `stage` in this pipeline."""
        return stage in self.stage_order or stage in self.failure_stages or stage in self.success_stages

    def reached(self, stage: str, target: str) -> bool | None:
        """Whether a deal at `stage` is at or past `target` in this pipeline; None when the stage list does
        not place one of them (a stage added in the CRM since it was read, or a list that could not be read):
        then nobody knows whether moving to `target` would move the deal backwards."""
        if stage == target or stage in self.success_stages:
            return True
        if stage in self.failure_stages:
            return False
        if stage in self.stage_order and target in self.stage_order:
            return self.stage_order.index(stage) >= self.stage_order.index(target)
        return None


@dataclass(frozen=True)
class Mapping:
    """The whole status map."""

    pipelines: MappingABC[int, PipelineMap]
    awaiting_payment_statuses: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Write:
    """One write: a new order status (side "cms") or a new deal stage (side "crm")."""

    side: SideName
    value: str


@dataclass(frozen=True)
class Decision:
    """What to do. `new_base` None means the base stays as it is."""

    outcome: str
    reason: Reason
    write: Write | None = None
    new_base: Base | None = None
    flag: Reason | None = None  # the link needs a manager's attention, for this reason
    close: bool = False
    unmapped: tuple[SideName, int, str] | None = None


@dataclass(frozen=True)
class Intent:
    """A write bxsync sent but never saw confirmed, and the base it would lead to."""

    write: Write
    base: Base


def intent_settle(
    *, base: Base | None, intent: Intent, order: OrderState | None, deal: DealState | None
) -> Base | None:
    """The base to decide from when an earlier write's outcome is unknown (its reply was lost, or the worker
    stopped before moving the base). The target showing the written value means the write landed: its base
    is the base now, and the decision that follows finds nothing left to write. Otherwise it did not land, and
    the old base stands, so the change is decided (and written) again — once."""
    if intent.write.side == "crm":
        target = deal.stage if deal is not None else None
    else:
        target = order.status if order is not None else None
    if target == intent.write.value:
        return intent.base
    return base


@dataclass(frozen=True)
class LinkResolution:
    """Which deal an order is linked to, found through the deal order field."""

    outcome: Literal["linked", "unlinked", "ambiguous"]
    deal: DealState | None = None
    candidates: tuple[str, ...] = field(default_factory=tuple)


def link_resolve(*, order_id: str, candidates: Sequence[DealState]) -> LinkResolution:
    """No deal holds the order id: unlinked. Several: ambiguous, and nothing is written. One: linked."""
    live = [d for d in candidates if not d.deleted]
    if not live:
        return LinkResolution(outcome="unlinked")
    if len(live) > 1:
        return LinkResolution(outcome="ambiguous", candidates=tuple(sorted(d.deal_id for d in live)))
    return LinkResolution(outcome="linked", deal=live[0], candidates=(live[0].deal_id,))


def decide(
    *,
    base: Base | None,
    order: OrderState | None,
    deal: DealState | None,
    mapping: Mapping,
    origin: Origin,
    tolerance_seconds: float = 2.0,
    override: SideName | None = None,
) -> Decision:
    """The three-way merge. `base` None is a link seen for the first time.

    `override` is a manager's "take the shop's (CRM's) value": that side counts as changed and wins, as
    under a `cms_wins` (`crm_wins`) policy, whatever the base says, so a link stuck in a conflict, a
    blocked regression or a drift the base has absorbed is brought in line. A payment and the no-regression
    rule still come first: a forced decision is decided like any other, not written blindly.

    A write to a stage the CRM's stage list no longer has (a rule or paid stage pointing at a deleted stage)
    is not sent: the link is flagged instead, since `crm.deal.update` would answer `true` and change nothing
    [docs/bitrix.md "Deals"]."""
    decision = _decide(
        base=base,
        order=order,
        deal=deal,
        mapping=mapping,
        origin=origin,
        tolerance_seconds=tolerance_seconds,
        override=override,
    )
    write = decision.write
    pm = mapping.pipelines.get(deal.pipeline) if deal is not None else None
    if write is None or write.side != "crm" or pm is None or not pm.stage_order or pm.knows(write.value):
        return decision
    reason = why("mapping_stage_gone", target=write.value, pipeline=pm.pipeline, then=decision.reason)
    return Decision(outcome="unmapped", reason=reason, flag=reason)


def _decide(
    *,
    base: Base | None,
    order: OrderState | None,
    deal: DealState | None,
    mapping: Mapping,
    origin: Origin,
    tolerance_seconds: float,
    override: SideName | None,
) -> Decision:
    if order is None or order.deleted:
        return Decision(outcome="closed", reason=why("order_deleted"), close=True)
    if deal is None or deal.deleted:
        return Decision(outcome="closed", reason=why("deal_deleted"), close=True)

    pm = mapping.pipelines.get(deal.pipeline)
    if pm is None:
        return Decision(
            outcome="unmapped",
            reason=why("pipeline_unmapped", pipeline=deal.pipeline),
            unmapped=("crm", deal.pipeline, deal.stage),
        )

    agreed = Base(order_status=order.status, deal_stage=deal.stage, paid=order.paid, pipeline=deal.pipeline)
    in_agreement = pm.to_crm.get(order.status) == deal.stage or pm.to_cms.get(deal.stage) == order.status

    if base is None:
        # A payment is decided from state, never from which event arrived first: a paid order whose deal has
        # not reached the paid stage still owes that move, whether the payment, the order or the deal (created
        # after the payment) is seen first, or reconciliation finds the pair. `_payment` writes nothing when
        # the deal is already at or past the paid stage.
        paid_changed = order.paid
        # Agreement on the status rules does not absorb a payment: the deal still has to reach the paid stage.
        if in_agreement and not paid_changed:
            return Decision(outcome="no_change", reason=why("first_sight_agree"), new_base=agreed)
        # Nothing agreed yet. An event says that something about the order or deal changed (a title edit
        # fires ONCRMDEALUPDATE too), not which side moved last; the status and stage change times do. So
        # both count as changed and the pipeline's conflict policy decides, as in reconciliation.
        order_changed = deal_changed = True
        previous = replace(agreed, paid=False)
    else:
        order_changed = order.status != base.order_status
        deal_changed = deal.stage != base.deal_stage or (
            base.pipeline is not None and base.pipeline != deal.pipeline
        )
        paid_changed = order.paid and not base.paid
        previous = base

    if paid_changed:
        payment = _payment(
            order=order, deal=deal, pm=pm, order_changed=order_changed, deal_changed=deal_changed
        )
        if payment is not None:
            return payment

    if override is not None:
        return _override(
            winner=override,
            order=order,
            deal=deal,
            pm=pm,
            mapping=mapping,
            previous=previous,
            in_agreement=in_agreement,
        )

    if not order_changed and not deal_changed:
        if base is not None and _is_echo(base=base, order=order, deal=deal, origin=origin):
            return Decision(outcome="echo", reason=why("echo"), new_base=_keep_paid(base, order))
        new_base = _keep_paid(base, order) if base is not None and base.paid != order.paid else None
        return Decision(outcome="no_change", reason=why("nothing_changed"), new_base=new_base)

    if order_changed and deal_changed:
        if in_agreement:
            return Decision(outcome="no_change", reason=why("both_changed_agree"), new_base=agreed)
        return _conflict(
            order=order, deal=deal, pm=pm, mapping=mapping, previous=previous, tol=tolerance_seconds
        )
    if order_changed:
        return _order_to_deal(order=order, deal=deal, pm=pm)
    return _deal_to_order(order=order, deal=deal, pm=pm, mapping=mapping, previous=previous)


def _payment(
    *, order: OrderState, deal: DealState, pm: PipelineMap, order_changed: bool, deal_changed: bool
) -> Decision | None:
    """Payment beats every policy: the deal goes to the paid stage [docs/contract.md "Behaviour" 3].

    None (no paid stage configured, or the deal itself moved to a mapped stage that needs no payment move):
    the ordinary status rules decide, and the new base they produce records the payment.
    """
    target = pm.paid_stage
    # An order that is paid and moved on in the same save (finished, or sent to a stage after the paid one)
    # belongs at that later stage, not at the paid stage before it.
    status_stage = pm.to_crm.get(order.status)
    if order_changed and status_stage and status_stage != target and pm.reached(status_stage, target):
        target = status_stage
    if not target:
        return None
    paid_base = Base(order_status=order.status, deal_stage=deal.stage, paid=True, pipeline=deal.pipeline)
    reached = True if deal.successful else pm.reached(deal.stage, target)
    if not reached and pm.stage_order and not pm.knows(target):
        # The paid stage itself is gone from the CRM: nothing to move to (see `decide`).
        move = why("payment_move", stage=deal.stage, target=target)
        reason = why("mapping_stage_gone", target=target, pipeline=pm.pipeline, then=move)
        return Decision(outcome="unmapped", reason=reason, flag=reason)
    if reached is None:
        # Moving the deal could move it backwards: hold the payment (the base stays unpaid, so the move is
        # decided again once the stage list places the stage) and ask a manager.
        reason = why("payment_held", stage=deal.stage, target=target)
        return Decision(outcome="regression_blocked", reason=reason, flag=reason)
    if reached:
        if deal_changed and pm.to_cms.get(deal.stage, order.status) != order.status:
            # A manager moved the deal there (e.g. to WON) since the base: no payment move is needed, but
            # that move is a deal change the order must still follow; absorbing it into the base loses it.
            return None
        return Decision(
            outcome="no_change", reason=why("paid_deal_there", stage=deal.stage), new_base=paid_base
        )
    return Decision(
        outcome="payment_applied",
        reason=why("payment_move", stage=deal.stage, target=target),
        write=Write("crm", target),
        new_base=replace(paid_base, deal_stage=target, last_write_side="crm", last_write_value=target),
    )


def _order_to_deal(
    *, order: OrderState, deal: DealState, pm: PipelineMap, outcome: str = "applied"
) -> Decision:
    target = pm.to_crm.get(order.status)
    if target is None:
        return Decision(
            outcome="unmapped",
            reason=why("status_unmapped", status=order.status, pipeline=pm.pipeline),
            unmapped=("cms", pm.pipeline, order.status),
        )
    agreed = Base(order_status=order.status, deal_stage=deal.stage, paid=order.paid, pipeline=deal.pipeline)
    if target == deal.stage:
        return Decision(outcome="no_change", reason=why("deal_already_there", stage=target), new_base=agreed)
    return Decision(
        outcome=outcome,
        reason=why("order_to_deal", status=order.status, stage=deal.stage, target=target),
        write=Write("crm", target),
        new_base=replace(agreed, deal_stage=target, last_write_side="crm", last_write_value=target),
    )


def _deal_to_order(
    *,
    order: OrderState,
    deal: DealState,
    pm: PipelineMap,
    mapping: Mapping,
    previous: Base,
    outcome: str = "applied",
) -> Decision:
    target = pm.to_cms.get(deal.stage)
    if target is None:
        return Decision(
            outcome="unmapped",
            reason=why("stage_unmapped", stage=deal.stage, pipeline=pm.pipeline),
            unmapped=("crm", pm.pipeline, deal.stage),
        )
    if order.paid and target in mapping.awaiting_payment_statuses and target != order.status:
        # The deal side of the base moves so the same stage is not re-flagged on every event; the order
        # side stays, and the link waits for a manager.
        reason = why("regression", stage=deal.stage, target=target)
        return Decision(
            outcome="regression_blocked",
            reason=reason,
            flag=reason,
            new_base=replace(previous, deal_stage=deal.stage, pipeline=deal.pipeline, paid=True),
        )
    agreed = Base(order_status=order.status, deal_stage=deal.stage, paid=order.paid, pipeline=deal.pipeline)
    if target == order.status:
        return Decision(
            outcome="no_change", reason=why("order_already_there", status=target), new_base=agreed
        )
    return Decision(
        outcome=outcome,
        reason=why("deal_to_order", stage=deal.stage, status=order.status, target=target),
        write=Write("cms", target),
        new_base=replace(agreed, order_status=target, last_write_side="cms", last_write_value=target),
    )


def _conflict(
    *, order: OrderState, deal: DealState, pm: PipelineMap, mapping: Mapping, previous: Base, tol: float
) -> Decision:
    """Both sides changed since the base: the pipeline's policy decides [docs/contract.md "Behaviour" 5]."""
    policy = pm.conflict_policy
    winner: SideName | None
    if policy == "cms_wins":
        winner = "cms"
    elif policy == "crm_wins":
        winner = "crm"
    elif policy == "latest":
        winner = _latest(order=order, deal=deal, tol=tol)
        if winner is None:
            reason = why("conflict_tie", status=order.status, stage=deal.stage)
            return Decision(outcome="conflict_flagged", reason=reason, flag=reason)
    else:
        reason = why("conflict_manual", status=order.status, stage=deal.stage)
        return Decision(outcome="conflict_flagged", reason=reason, flag=reason)

    if winner == "cms":
        decision = _order_to_deal(order=order, deal=deal, pm=pm, outcome="conflict_resolved")
    else:
        decision = _deal_to_order(
            order=order, deal=deal, pm=pm, mapping=mapping, previous=previous, outcome="conflict_resolved"
        )
    code = "conflict_shop_wins" if winner == "cms" else "conflict_crm_wins"
    return replace(decision, reason=why(code, policy=policy, then=decision.reason))


def _override(
    *,
    winner: SideName,
    order: OrderState,
    deal: DealState,
    pm: PipelineMap,
    mapping: Mapping,
    previous: Base,
    in_agreement: bool,
) -> Decision:
    """A manager's forced decision: the winning side's value goes to the other side through the mapping."""
    if in_agreement:
        agreed = Base(
            order_status=order.status, deal_stage=deal.stage, paid=order.paid, pipeline=deal.pipeline
        )
        return Decision(outcome="no_change", reason=why("override_agree"), new_base=agreed)
    if winner == "cms":
        decision = _order_to_deal(order=order, deal=deal, pm=pm)
    else:
        decision = _deal_to_order(order=order, deal=deal, pm=pm, mapping=mapping, previous=previous)
    code = "override_shop" if winner == "cms" else "override_crm"
    return replace(decision, reason=why(code, then=decision.reason))


def _latest(*, order: OrderState, deal: DealState, tol: float) -> SideName | None:
    if order.status_changed_at is None or deal.stage_changed_at is None:
        return None
    delta = (order.status_changed_at - deal.stage_changed_at).total_seconds()
    if abs(delta) <= tol:
        return None
    return "cms" if delta > 0 else "crm"


def _is_echo(*, base: Base, order: OrderState, deal: DealState, origin: Origin) -> bool:
    if origin == "crm":
        return base.last_write_side == "crm" and base.last_write_value == deal.stage
    if origin in ("cms", "payment"):
        return base.last_write_side == "cms" and base.last_write_value == order.status
    return False


def _keep_paid(base: Base, order: OrderState) -> Base:
    return replace(base, paid=order.paid)

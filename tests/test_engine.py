"""Table-driven tests of the pure sync decision (statussync.engine): docs/contract.md "Behaviour" 1 to 6.

Every row states the whole decision: outcome, the write (side and value, or None), the new base (None: the
base stays as it is), and the flag / close / unmapped fields. The mapping is the contract's example plus a
pipeline 1 with `C1:` stage ids; rows vary the conflict policy with `dataclasses.replace`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from statussync.engine import (
    Base,
    DealState,
    Decision,
    LinkResolution,
    Mapping,
    OrderState,
    PipelineMap,
    decide,
    link_resolve,
)
from tests.support.mappings import two_pipelines

# ----------------------------------------------------------------------------------------------------------
# The mapping: docs/contract.md "The mapping file", the example verbatim, plus pipeline 1.
# ----------------------------------------------------------------------------------------------------------

# The success ("S" semantic) stage and the SORT order of each pipeline's stages are read from the CRM, not
# from the file. These are Bitrix's default stages [docs/bitrix.md "Stages and pipelines"].
SUCCESS_STAGES = {0: frozenset({"WON"}), 1: frozenset({"C1:WON"})}
# Failure stages (LOSE, APOLOGY) are not in the order: they are not "past" the paid stage.
DEFAULT_STAGES = ("NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "FINAL_INVOICE", "WON")
STAGE_ORDER = {0: DEFAULT_STAGES, 1: tuple(f"C1:{stage}" for stage in DEFAULT_STAGES)}
FAILURE_STAGES = {0: frozenset({"LOSE", "APOLOGY"}), 1: frozenset({"C1:LOSE", "C1:APOLOGY"})}


def _pipeline_map(spec: dict[str, Any]) -> PipelineMap:
    to_crm: dict[str, str] = {}
    to_cms: dict[str, str] = {}
    for rule in spec["rules"]:
        if rule["direction"] in ("both", "to_crm"):
            to_crm[rule["order_status"]] = rule["deal_stage"]
        if rule["direction"] in ("both", "to_cms"):
            to_cms[rule["deal_stage"]] = rule["order_status"]
    return PipelineMap(
        pipeline=spec["pipeline"],
        to_crm=to_crm,
        to_cms=to_cms,
        paid_stage=spec["paid_stage"],
        conflict_policy=spec["conflict_policy"],
        success_stages=SUCCESS_STAGES[spec["pipeline"]],
        stage_order=STAGE_ORDER[spec["pipeline"]],
        failure_stages=FAILURE_STAGES[spec["pipeline"]],
    )


def _mapping(file: dict[str, Any]) -> Mapping:
    return Mapping(
        pipelines={spec["pipeline"]: _pipeline_map(spec) for spec in file["pipelines"]},
        awaiting_payment_statuses=frozenset(file["awaiting_payment_statuses"]),
    )


MAPPING = _mapping(two_pipelines())


def with_pipeline(mapping: Mapping = MAPPING, pipeline: int = 0, **changes: Any) -> Mapping:
    """The mapping with one pipeline's settings replaced (policy, paid stage, rules)."""
    pipelines = dict(mapping.pipelines)
    pipelines[pipeline] = replace(pipelines[pipeline], **changes)
    return replace(mapping, pipelines=pipelines)


def policy(name: str, pipeline: int = 0) -> Mapping:
    return with_pipeline(pipeline=pipeline, conflict_policy=name)


# A to_crm-only rule: D (delivering) is shown in the CRM as EXECUTING, but EXECUTING set by hand means nothing
# to the shop.
TO_CRM_ONLY = with_pipeline(
    to_crm={**MAPPING.pipelines[0].to_crm, "D": "EXECUTING"},
)
NO_PAID_STAGE = with_pipeline(paid_stage="")

# ----------------------------------------------------------------------------------------------------------
# Builders.
# ----------------------------------------------------------------------------------------------------------

T0 = datetime(2024, 5, 6, 10, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def order(
    status: str, *, paid: bool = False, changed: float | None = 0.0, deleted: bool = False
) -> OrderState:
    return OrderState(
        order_id="101",
        status=status,
        paid=paid,
        status_changed_at=None if changed is None else at(changed),
        deleted=deleted,
    )


def deal(
    stage: str,
    *,
    pipeline: int = 0,
    changed: float | None = 0.0,
    deleted: bool = False,
    deal_id: str = "7",
    successful: bool = False,
) -> DealState:
    return DealState(
        deal_id=deal_id,
        stage=stage,
        pipeline=pipeline,
        stage_changed_at=None if changed is None else at(changed),
        order_id="101",
        deleted=deleted,
        successful=successful,
    )


def base(status: str, stage: str, *, paid: bool = False, pipeline: int = 0, wrote: str = "") -> Base:
    """`wrote` is "crm:STAGE" or "cms:STATUS": what bxsync wrote last."""
    side, _, value = wrote.partition(":")
    return Base(
        order_status=status,
        deal_stage=stage,
        paid=paid,
        pipeline=pipeline,
        last_write_side=side,  # type: ignore[arg-type]
        last_write_value=value,
    )


@dataclass(frozen=True)
class Row:
    base: Base | None
    order: OrderState | None
    deal: DealState | None
    origin: str | None
    outcome: str
    write: tuple[str, str] | None
    new_base: Base | None
    flag: bool = False
    close: bool = False
    unmapped: tuple[str, int, str] | None = None
    mapping: Mapping = MAPPING
    tolerance: float = 2.0


def row(row_id: str, **fields: Any) -> Any:
    return pytest.param(Row(**fields), id=row_id)


def run(r: Row) -> Decision:
    return decide(
        base=r.base,
        order=r.order,
        deal=r.deal,
        mapping=r.mapping,
        origin=r.origin,  # type: ignore[arg-type]
        tolerance_seconds=r.tolerance,
    )


def check(r: Row) -> Decision:
    d = run(r)
    assert d.outcome == r.outcome, d.reason
    assert (None if d.write is None else (d.write.side, d.write.value)) == r.write, d.reason
    assert d.new_base == r.new_base, d.reason
    assert bool(d.flag) == r.flag, d.reason
    assert d.close == r.close
    assert d.unmapped == r.unmapped
    assert d.reason
    return d


# ----------------------------------------------------------------------------------------------------------
# 1. Both ways.
# ----------------------------------------------------------------------------------------------------------

BOTH_WAYS = [
    row(
        "order-N-to-P-moves-deal-to-PREPARATION",
        base=base("N", "NEW"),
        order=order("P"),
        deal=deal("NEW"),
        origin="cms",
        outcome="applied",
        write=("crm", "PREPARATION"),
        new_base=base("P", "PREPARATION", wrote="crm:PREPARATION"),
    ),
    row(
        "order-P-to-F-moves-deal-to-WON",
        base=base("P", "PREPARATION"),
        order=order("F"),
        deal=deal("PREPARATION"),
        origin="cms",
        outcome="applied",
        write=("crm", "WON"),
        new_base=base("F", "WON", wrote="crm:WON"),
    ),
    row(
        "pipeline-1-order-P-to-F-moves-deal-to-C1:WON",
        base=base("P", "C1:PREPARATION", pipeline=1),
        order=order("F"),
        deal=deal("C1:PREPARATION", pipeline=1),
        origin="cms",
        outcome="applied",
        write=("crm", "C1:WON"),
        new_base=base("F", "C1:WON", pipeline=1, wrote="crm:C1:WON"),
    ),
    row(
        "order-C-maps-to-LOSE-not-APOLOGY",
        base=base("P", "PREPARATION"),
        order=order("C"),
        deal=deal("PREPARATION"),
        origin="cms",
        outcome="applied",
        write=("crm", "LOSE"),
        new_base=base("C", "LOSE", wrote="crm:LOSE"),
    ),
    row(
        "pipeline-1-order-C-maps-to-C1:LOSE",
        base=base("N", "C1:NEW", pipeline=1),
        order=order("C"),
        deal=deal("C1:NEW", pipeline=1),
        origin="cms",
        outcome="applied",
        write=("crm", "C1:LOSE"),
        new_base=base("C", "C1:LOSE", pipeline=1, wrote="crm:C1:LOSE"),
    ),
    row(
        "order-changed-but-deal-already-at-mapped-stage",
        base=base("N", "PREPARATION"),
        order=order("P"),
        deal=deal("PREPARATION"),
        origin="cms",
        outcome="no_change",
        write=None,
        new_base=base("P", "PREPARATION"),
    ),
    row(
        "deal-PREPARATION-to-WON-sets-order-F",
        base=base("P", "PREPARATION"),
        order=order("P"),
        deal=deal("WON"),
        origin="crm",
        outcome="applied",
        write=("cms", "F"),
        new_base=base("F", "WON", wrote="cms:F"),
    ),
    row(
        "pipeline-1-deal-C1:NEW-to-C1:PREPARATION-sets-order-P",
        base=base("N", "C1:NEW", pipeline=1),
        order=order("N"),
        deal=deal("C1:PREPARATION", pipeline=1),
        origin="crm",
        outcome="applied",
        write=("cms", "P"),
        new_base=base("P", "C1:PREPARATION", pipeline=1, wrote="cms:P"),
    ),
    row(
        "to_cms-only-APOLOGY-sets-order-C",
        base=base("P", "PREPARATION"),
        order=order("P"),
        deal=deal("APOLOGY"),
        origin="crm",
        outcome="applied",
        write=("cms", "C"),
        new_base=base("C", "APOLOGY", wrote="cms:C"),
    ),
    row(
        "to_cms-only-APOLOGY-when-order-already-C",
        base=base("C", "LOSE"),
        order=order("C"),
        deal=deal("APOLOGY"),
        origin="crm",
        outcome="no_change",
        write=None,
        new_base=base("C", "APOLOGY"),
    ),
    row(
        "to_crm-only-D-moves-deal-to-EXECUTING",
        mapping=TO_CRM_ONLY,
        base=base("P", "PREPARATION"),
        order=order("D"),
        deal=deal("PREPARATION"),
        origin="cms",
        outcome="applied",
        write=("crm", "EXECUTING"),
        new_base=base("D", "EXECUTING", wrote="crm:EXECUTING"),
    ),
    row(
        "to_crm-only-EXECUTING-does-not-propagate-back",
        mapping=TO_CRM_ONLY,
        base=base("P", "PREPARATION"),
        order=order("P"),
        deal=deal("EXECUTING"),
        origin="crm",
        outcome="unmapped",
        write=None,
        new_base=None,
        unmapped=("crm", 0, "EXECUTING"),
    ),
]


@pytest.mark.parametrize("r", BOTH_WAYS)
def test_it_syncs_both_ways(r: Row) -> None:
    check(r)


# ----------------------------------------------------------------------------------------------------------
# 3. Payment first.
# ----------------------------------------------------------------------------------------------------------

PAID_CONFLICT = {  # order N -> P and paid; a manager moved the deal NEW -> LOSE later, in the same window
    "base": base("N", "NEW"),
    "order": order("P", paid=True, changed=10),
    "deal": deal("LOSE", changed=20),
    "outcome": "payment_applied",
    "write": ("crm", "PREPAYMENT_INVOICE"),
    "new_base": base("P", "PREPAYMENT_INVOICE", paid=True, wrote="crm:PREPAYMENT_INVOICE"),
}

PAYMENT = [
    row(
        "paid-deal-at-a-success-stage-the-stage-list-did-not-name",
        base=base("P", "UC_WON2"),
        order=order("P", paid=True),
        deal=deal("UC_WON2", successful=True),
        origin="payment",
        outcome="no_change",
        write=None,
        new_base=base("P", "UC_WON2", paid=True),
    ),
    row(
        "paid-moves-deal-to-paid-stage",
        base=base("N", "NEW"),
        order=order("N", paid=True),
        deal=deal("NEW"),
        origin="payment",
        outcome="payment_applied",
        write=("crm", "PREPAYMENT_INVOICE"),
        new_base=base("N", "PREPAYMENT_INVOICE", paid=True, wrote="crm:PREPAYMENT_INVOICE"),
    ),
    row(
        "pipeline-1-paid-moves-deal-to-C1:PREPAYMENT_INVOICE",
        base=base("N", "C1:NEW", pipeline=1),
        order=order("N", paid=True),
        deal=deal("C1:NEW", pipeline=1),
        origin="payment",
        outcome="payment_applied",
        write=("crm", "C1:PREPAYMENT_INVOICE"),
        new_base=base("N", "C1:PREPAYMENT_INVOICE", paid=True, pipeline=1, wrote="crm:C1:PREPAYMENT_INVOICE"),
    ),
    row(
        "paid-seen-first-through-an-order-event",
        base=base("N", "NEW"),
        order=order("N", paid=True),
        deal=deal("NEW"),
        origin="cms",
        outcome="payment_applied",
        write=("crm", "PREPAYMENT_INVOICE"),
        new_base=base("N", "PREPAYMENT_INVOICE", paid=True, wrote="crm:PREPAYMENT_INVOICE"),
    ),
    row(
        "paid-deal-already-at-paid-stage",
        base=base("N", "PREPAYMENT_INVOICE"),
        order=order("N", paid=True),
        deal=deal("PREPAYMENT_INVOICE"),
        origin="payment",
        outcome="no_change",
        write=None,
        new_base=base("N", "PREPAYMENT_INVOICE", paid=True),
    ),
    row(
        "paid-deal-already-at-success-stage",
        base=base("F", "WON"),
        order=order("F", paid=True),
        deal=deal("WON"),
        origin="payment",
        outcome="no_change",
        write=None,
        new_base=base("F", "WON", paid=True),
    ),
    row(
        "pipeline-1-paid-deal-already-at-C1:WON",
        base=base("F", "C1:WON", pipeline=1),
        order=order("F", paid=True),
        deal=deal("C1:WON", pipeline=1),
        origin="payment",
        outcome="no_change",
        write=None,
        new_base=base("F", "C1:WON", paid=True, pipeline=1),
    ),
    row(
        "paid-and-F-in-one-save-goes-to-success-stage",
        base=base("P", "PREPARATION"),
        order=order("F", paid=True),
        deal=deal("PREPARATION"),
        origin="payment",
        outcome="payment_applied",
        write=("crm", "WON"),
        new_base=base("F", "WON", paid=True, wrote="crm:WON"),
    ),
    row(
        "paid-and-F-in-one-save-deal-already-WON",
        base=base("P", "WON"),
        order=order("F", paid=True),
        deal=deal("WON"),
        origin="cms",
        outcome="no_change",
        write=None,
        new_base=base("F", "WON", paid=True),
    ),
    *[
        row(f"payment-beats-{name}-via-{origin}", mapping=policy(name), origin=origin, **PAID_CONFLICT)
        for name in ("latest", "cms_wins", "crm_wins", "manual")
        for origin in ("payment", "crm")
    ],
    row(
        "payment-beats-a-simultaneous-manager-deal-move",
        base=base("N", "NEW"),
        order=order("N", paid=True),
        deal=deal("PREPARATION", changed=30),
        origin="crm",
        outcome="payment_applied",
        write=("crm", "PREPAYMENT_INVOICE"),
        new_base=base("N", "PREPAYMENT_INVOICE", paid=True, wrote="crm:PREPAYMENT_INVOICE"),
    ),
    row(
        "paid-while-a-manager-moved-the-deal-to-WON-order-follows",
        base=base("P", "PREPARATION"),
        order=order("P", paid=True),
        deal=deal("WON", changed=30),
        origin="payment",
        outcome="applied",
        write=("cms", "F"),
        new_base=base("F", "WON", paid=True, wrote="cms:F"),
    ),
    row(
        "paid-while-deal-moved-to-WON-and-order-changed-latest-decides",
        base=base("N", "NEW"),
        order=order("P", paid=True, changed=10),
        deal=deal("WON", changed=30),
        origin="payment",
        outcome="conflict_resolved",
        write=("cms", "F"),
        new_base=base("F", "WON", paid=True, wrote="cms:F"),
    ),
    row(
        "paid-while-deal-moved-to-WON-and-order-changed-manual-flags",
        mapping=policy("manual"),
        base=base("N", "NEW"),
        order=order("P", paid=True, changed=10),
        deal=deal("WON", changed=30),
        origin="payment",
        outcome="conflict_flagged",
        write=None,
        new_base=None,
        flag=True,
    ),
    row(
        "no-paid-stage-falls-back-status-unchanged",
        mapping=NO_PAID_STAGE,
        base=base("N", "NEW"),
        order=order("N", paid=True),
        deal=deal("NEW"),
        origin="payment",
        outcome="no_change",
        write=None,
        new_base=base("N", "NEW", paid=True),
    ),
    row(
        "no-paid-stage-falls-back-to-status-rule",
        mapping=NO_PAID_STAGE,
        base=base("N", "NEW"),
        order=order("P", paid=True),
        deal=deal("NEW"),
        origin="payment",
        outcome="applied",
        write=("crm", "PREPARATION"),
        new_base=base("P", "PREPARATION", paid=True, wrote="crm:PREPARATION"),
    ),
    row(
        "first-sight-payment-event-in-agreement-moves-deal",
        base=None,
        order=order("N", paid=True),
        deal=deal("NEW"),
        origin="payment",
        outcome="payment_applied",
        write=("crm", "PREPAYMENT_INVOICE"),
        new_base=base("N", "PREPAYMENT_INVOICE", paid=True, wrote="crm:PREPAYMENT_INVOICE"),
    ),
    row(
        "first-sight-payment-event-deal-already-WON",
        base=None,
        order=order("F", paid=True),
        deal=deal("WON"),
        origin="payment",
        outcome="no_change",
        write=None,
        new_base=base("F", "WON", paid=True),
    ),
    row(
        "first-sight-payment-event-unpaid-order-adopts-agreement",
        base=None,
        order=order("N"),
        deal=deal("NEW"),
        origin="payment",
        outcome="no_change",
        write=None,
        new_base=base("N", "NEW"),
    ),
    row(
        "first-sight-payment-event-disagreeing-moves-deal",
        base=None,
        order=order("P", paid=True),
        deal=deal("NEW"),
        origin="payment",
        outcome="payment_applied",
        write=("crm", "PREPAYMENT_INVOICE"),
        new_base=base("P", "PREPAYMENT_INVOICE", paid=True, wrote="crm:PREPAYMENT_INVOICE"),
    ),
    # A payment is decided from state, not from the event that arrived first (issue: payments lost on pairs
    # seen for the first time): a paid order whose deal is not at or past the paid stage owes that move.
    *[
        row(
            f"first-sight-paid-order-{status}-via-{origin or 'reconcile'}-moves-deal-to-paid-stage",
            base=None,
            order=order(status, paid=True, changed=30),
            deal=deal(stage, changed=changed),
            origin=origin,
            outcome="payment_applied",
            write=("crm", "PREPAYMENT_INVOICE"),
            new_base=base(status, "PREPAYMENT_INVOICE", paid=True, wrote="crm:PREPAYMENT_INVOICE"),
        )
        for status, stage, changed in [
            ("N", "NEW", 10),  # in agreement under the status rules
            ("P", "NEW", 10),  # the order moved later (status_on_paid)
            ("P", "NEW", 60),  # the deal was created after the payment
            ("P", "PREPARATION", 60),  # in agreement, but short of the paid stage
            ("P", "LOSE", 60),  # a failure stage is not past the paid stage
        ]
        for origin in ("payment", "cms", "crm", None)
    ],
    *[
        row(
            f"first-sight-paid-order-deal-at-the-success-stage-via-{origin or 'reconcile'}",
            base=None,
            order=order("F", paid=True, changed=10),
            deal=deal("WON", changed=30),
            origin=origin,
            outcome="no_change",
            write=None,
            new_base=base("F", "WON", paid=True),
        )
        for origin in ("payment", "cms", "crm", None)
    ],
    row(
        "first-sight-paid-order-deal-past-the-paid-stage-gets-no-payment-move",
        base=None,
        order=order("P", paid=True, changed=10),
        deal=deal("EXECUTING", changed=30),
        origin="cms",
        outcome="no_change",
        write=None,
        new_base=base("P", "EXECUTING", paid=True),
    ),
    row(
        "first-sight-paid-order-whose-status-is-past-the-paid-stage-goes-to-that-stage",
        mapping=TO_CRM_ONLY,
        base=None,
        order=order("D", paid=True, changed=30),
        deal=deal("NEW", changed=10),
        origin="cms",
        outcome="payment_applied",
        write=("crm", "EXECUTING"),
        new_base=base("D", "EXECUTING", paid=True, wrote="crm:EXECUTING"),
    ),
    row(
        "paid-order-deal-already-past-the-paid-stage-is-just-paid",
        mapping=TO_CRM_ONLY,
        base=base("D", "EXECUTING"),
        order=order("D", paid=True),
        deal=deal("EXECUTING"),
        origin="payment",
        outcome="no_change",
        write=None,
        new_base=base("D", "EXECUTING", paid=True),
    ),
    # Never backwards: a stage list that does not place the deal's stage (unread, or the stage was added in
    # the CRM since) holds the payment for a manager; the base stays unpaid, so the move is decided again.
    row(
        "stage-order-unknown-paid-order-is-held-never-moving-the-deal-back",
        mapping=with_pipeline(TO_CRM_ONLY, stage_order=(), failure_stages=frozenset()),
        base=base("D", "EXECUTING"),
        order=order("D", paid=True),
        deal=deal("EXECUTING"),
        origin="payment",
        outcome="regression_blocked",
        write=None,
        new_base=None,
        flag=True,
    ),
    row(
        "stage-unknown-to-the-stage-list-paid-order-is-held",
        base=base("P", "UC_PACKED"),
        order=order("P", paid=True),
        deal=deal("UC_PACKED"),
        origin="payment",
        outcome="regression_blocked",
        write=None,
        new_base=None,
        flag=True,
    ),
    *[
        row(
            f"stage-order-unknown-paid-order-deal-at-the-{where}-stage-is-just-paid",
            mapping=with_pipeline(stage_order=(), failure_stages=frozenset()),
            base=base("P", stage),
            order=order("P", paid=True),
            deal=deal(stage),
            origin="payment",
            outcome="no_change",
            write=None,
            new_base=base("P", stage, paid=True),
        )
        for where, stage in (("paid", "PREPAYMENT_INVOICE"), ("success", "WON"))
    ],
    row(
        "paid-order-deal-at-a-failure-stage-still-owes-the-move",
        base=base("P", "LOSE"),
        order=order("P", paid=True),
        deal=deal("LOSE"),
        origin="payment",
        outcome="payment_applied",
        write=("crm", "PREPAYMENT_INVOICE"),
        new_base=base("P", "PREPAYMENT_INVOICE", paid=True, wrote="crm:PREPAYMENT_INVOICE"),
    ),
    row(
        "paid-stage-no-longer-in-the-crm-writes-nothing-and-flags",
        mapping=with_pipeline(paid_stage="UC_GONE"),
        base=base("P", "NEW"),
        order=order("P", paid=True),
        deal=deal("NEW"),
        origin="payment",
        outcome="unmapped",
        write=None,
        new_base=None,
        flag=True,
    ),
    row(
        "rule-to-a-stage-no-longer-in-the-crm-writes-nothing-and-flags",
        mapping=with_pipeline(to_crm={**MAPPING.pipelines[0].to_crm, "D": "UC_GONE"}),
        base=base("P", "PREPARATION"),
        order=order("D"),
        deal=deal("PREPARATION"),
        origin="cms",
        outcome="unmapped",
        write=None,
        new_base=None,
        flag=True,
    ),
    row(
        "already-paid-base-is-no-new-payment",
        base=base("P", "PREPARATION", paid=True),
        order=order("P", paid=True),
        deal=deal("PREPARATION"),
        origin="payment",
        outcome="no_change",
        write=None,
        new_base=None,
    ),
]


@pytest.mark.parametrize("r", PAYMENT)
def test_it_puts_payment_first(r: Row) -> None:
    check(r)


# ----------------------------------------------------------------------------------------------------------
# 4. No regression after payment.
# ----------------------------------------------------------------------------------------------------------

REGRESSION = [
    row(
        "paid-order-deal-to-NEW-is-blocked",
        base=base("P", "PREPARATION", paid=True),
        order=order("P", paid=True),
        deal=deal("NEW"),
        origin="crm",
        outcome="regression_blocked",
        write=None,
        new_base=base("P", "NEW", paid=True),
        flag=True,
    ),
    row(
        "paid-order-deal-back-from-paid-stage-to-NEW-is-blocked",
        base=base("P", "PREPAYMENT_INVOICE", paid=True, wrote="crm:PREPAYMENT_INVOICE"),
        order=order("P", paid=True),
        deal=deal("NEW"),
        origin="crm",
        outcome="regression_blocked",
        write=None,
        new_base=base("P", "NEW", paid=True, wrote="crm:PREPAYMENT_INVOICE"),
        flag=True,
    ),
    row(
        "pipeline-1-paid-order-deal-to-C1:NEW-is-blocked",
        base=base("P", "C1:PREPARATION", paid=True, pipeline=1),
        order=order("P", paid=True),
        deal=deal("C1:NEW", pipeline=1),
        origin="crm",
        outcome="regression_blocked",
        write=None,
        new_base=base("P", "C1:NEW", paid=True, pipeline=1),
        flag=True,
    ),
    row(
        "unpaid-order-deal-to-NEW-applies",
        base=base("P", "PREPARATION"),
        order=order("P"),
        deal=deal("NEW"),
        origin="crm",
        outcome="applied",
        write=("cms", "N"),
        new_base=base("N", "NEW", wrote="cms:N"),
    ),
    row(
        "paid-order-deal-to-LOSE-is-no-regression",
        base=base("P", "PREPARATION", paid=True),
        order=order("P", paid=True),
        deal=deal("LOSE"),
        origin="crm",
        outcome="applied",
        write=("cms", "C"),
        new_base=base("C", "LOSE", paid=True, wrote="cms:C"),
    ),
    row(
        # Judgement call kept: a paid order still at N is not "put back"; the deal leaves the paid stage.
        "paid-order-still-N-deal-back-to-NEW-is-not-a-regression",
        base=base("N", "PREPAYMENT_INVOICE", paid=True, wrote="crm:PREPAYMENT_INVOICE"),
        order=order("N", paid=True),
        deal=deal("NEW"),
        origin="crm",
        outcome="no_change",
        write=None,
        new_base=base("N", "NEW", paid=True),
    ),
    row(
        "blocked-stage-is-not-flagged-again",
        base=base("P", "NEW", paid=True),
        order=order("P", paid=True),
        deal=deal("NEW"),
        origin="crm",
        outcome="no_change",
        write=None,
        new_base=None,
    ),
]


@pytest.mark.parametrize("r", REGRESSION)
def test_it_blocks_regression_after_payment(r: Row) -> None:
    check(r)


# ----------------------------------------------------------------------------------------------------------
# 5. Conflicts: base N/NEW; the order went to P, the deal to LOSE; reconciliation asks (origin None).
# ----------------------------------------------------------------------------------------------------------

CMS_WON = {"write": ("crm", "PREPARATION"), "new_base": base("P", "PREPARATION", wrote="crm:PREPARATION")}
CRM_WON = {"write": ("cms", "C"), "new_base": base("C", "LOSE", wrote="cms:C")}
FLAGGED = {"outcome": "conflict_flagged", "write": None, "new_base": None, "flag": True}


def conflict(row_id: str, order_at: float | None, deal_at: float | None, **fields: Any) -> Any:
    fields.setdefault("origin", None)
    return row(
        row_id,
        base=base("N", "NEW"),
        order=order("P", changed=order_at),
        deal=deal("LOSE", changed=deal_at),
        **fields,
    )


CONFLICTS = [
    conflict("latest-order-newer", 30, 10, outcome="conflict_resolved", **CMS_WON),
    conflict("latest-deal-newer", 10, 30, outcome="conflict_resolved", **CRM_WON),
    conflict(
        "latest-deal-newer-asked-by-order-event", 10, 30, origin="cms", outcome="conflict_resolved", **CRM_WON
    ),
    conflict("latest-tie-within-tolerance", 10, 11.5, **FLAGGED),
    conflict("latest-tie-at-exactly-the-tolerance", 12, 10, **FLAGGED),
    conflict("latest-just-beyond-the-tolerance", 12.5, 10, outcome="conflict_resolved", **CMS_WON),
    conflict("latest-zero-tolerance", 11, 10, tolerance=0.0, outcome="conflict_resolved", **CMS_WON),
    conflict("latest-order-time-missing", None, 10, **FLAGGED),
    conflict("latest-deal-time-missing", 10, None, **FLAGGED),
    conflict("latest-both-times-missing", None, None, **FLAGGED),
    conflict(
        "cms_wins-even-if-deal-newer",
        10,
        30,
        mapping=policy("cms_wins"),
        outcome="conflict_resolved",
        **CMS_WON,
    ),
    conflict(
        "crm_wins-even-if-order-newer",
        30,
        10,
        mapping=policy("crm_wins"),
        outcome="conflict_resolved",
        **CRM_WON,
    ),
    conflict("manual-flags-and-writes-nothing", 30, 10, mapping=policy("manual"), **FLAGGED),
    conflict(
        "pipeline-1-policy-is-its-own",
        30,
        10,
        mapping=policy("crm_wins", pipeline=1),
        outcome="conflict_resolved",
        **CMS_WON,
    ),
    row(
        "crm_wins-still-blocks-a-regression",
        mapping=policy("crm_wins"),
        base=base("P", "PREPARATION", paid=True),
        order=order("F", paid=True, changed=30),
        deal=deal("NEW", changed=10),
        origin=None,
        outcome="regression_blocked",
        write=None,
        new_base=base("P", "NEW", paid=True),
        flag=True,
    ),
    row(
        "latest-deal-newer-still-blocks-a-regression",
        base=base("P", "PREPARATION", paid=True),
        order=order("F", paid=True, changed=10),
        deal=deal("NEW", changed=30),
        origin="crm",
        outcome="regression_blocked",
        write=None,
        new_base=base("P", "NEW", paid=True),
        flag=True,
    ),
    row(
        "crm_wins-with-an-unmapped-deal-stage",
        mapping=policy("crm_wins"),
        base=base("N", "NEW"),
        order=order("P"),
        deal=deal("EXECUTING"),
        origin=None,
        outcome="unmapped",
        write=None,
        new_base=None,
        unmapped=("crm", 0, "EXECUTING"),
    ),
    *[
        row(
            f"both-changed-to-matching-values-{name}",
            mapping=policy(name),
            base=base("N", "NEW"),
            order=order("P", changed=10),
            deal=deal("PREPARATION", changed=30),
            origin=None,
            outcome="no_change",
            write=None,
            new_base=base("P", "PREPARATION"),
        )
        for name in ("latest", "cms_wins", "crm_wins", "manual")
    ],
    row(
        "both-changed-to-C-and-APOLOGY-match",
        mapping=policy("manual"),
        base=base("P", "PREPARATION"),
        order=order("C"),
        deal=deal("APOLOGY"),
        origin="crm",
        outcome="no_change",
        write=None,
        new_base=base("C", "APOLOGY"),
    ),
]


@pytest.mark.parametrize("r", CONFLICTS)
def test_it_resolves_conflicts_by_policy(r: Row) -> None:
    check(r)


# ----------------------------------------------------------------------------------------------------------
# 6. Unmapped, deleted, other pipeline.
# ----------------------------------------------------------------------------------------------------------

UNMAPPED = [
    row(
        "order-status-without-rule",
        base=base("N", "NEW"),
        order=order("X"),
        deal=deal("NEW"),
        origin="cms",
        outcome="unmapped",
        write=None,
        new_base=None,
        unmapped=("cms", 0, "X"),
    ),
    row(
        "order-status-to_crm-rule-absent-in-pipeline-1",
        mapping=TO_CRM_ONLY,
        base=base("P", "C1:PREPARATION", pipeline=1),
        order=order("D"),
        deal=deal("C1:PREPARATION", pipeline=1),
        origin="cms",
        outcome="unmapped",
        write=None,
        new_base=None,
        unmapped=("cms", 1, "D"),
    ),
    row(
        "deal-stage-without-rule",
        base=base("P", "PREPARATION"),
        order=order("P"),
        deal=deal("EXECUTING"),
        origin="crm",
        outcome="unmapped",
        write=None,
        new_base=None,
        unmapped=("crm", 0, "EXECUTING"),
    ),
    row(
        "paid-stage-set-by-hand-has-no-order-status",
        base=base("P", "PREPARATION", paid=True),
        order=order("P", paid=True),
        deal=deal("PREPAYMENT_INVOICE"),
        origin="crm",
        outcome="unmapped",
        write=None,
        new_base=None,
        unmapped=("crm", 0, "PREPAYMENT_INVOICE"),
    ),
    row(
        "pipeline-without-mapping",
        base=base("P", "PREPARATION"),
        order=order("F"),
        deal=deal("C7:NEW", pipeline=7),
        origin="cms",
        outcome="unmapped",
        write=None,
        new_base=None,
        unmapped=("crm", 7, "C7:NEW"),
    ),
    row(
        "pipeline-without-mapping-on-first-sight",
        base=None,
        order=order("N"),
        deal=deal("C7:NEW", pipeline=7),
        origin=None,
        outcome="unmapped",
        write=None,
        new_base=None,
        unmapped=("crm", 7, "C7:NEW"),
    ),
]


@pytest.mark.parametrize("r", UNMAPPED)
def test_it_records_unmapped_values(r: Row) -> None:
    check(r)


DELETIONS = [
    row(
        f"{what}-{origin or 'reconcile'}",
        base=base("P", "PREPARATION"),
        order=the_order,
        deal=the_deal,
        origin=origin,
        outcome="closed",
        write=None,
        new_base=None,
        close=True,
    )
    for what, the_order, the_deal in [
        ("order-deleted", order("P", deleted=True), deal("PREPARATION")),
        ("order-gone", None, deal("WON")),
        ("deal-deleted", order("F"), deal("PREPARATION", deleted=True)),
        ("deal-gone", order("F", paid=True), None),
        ("both-deleted", order("P", deleted=True), deal("PREPARATION", deleted=True)),
    ]
    for origin in ("cms", "crm", None)
]


@pytest.mark.parametrize("r", DELETIONS)
def test_it_closes_the_link_of_a_deleted_entity(r: Row) -> None:
    check(r)


PIPELINE_MOVES = [
    row(
        "moved-to-pipeline-1-at-C1:PREPARATION-already-agrees",
        base=base("P", "PREPARATION", pipeline=0),
        order=order("P"),
        deal=deal("C1:PREPARATION", pipeline=1),
        origin="crm",
        outcome="no_change",
        write=None,
        new_base=base("P", "C1:PREPARATION", pipeline=1),
    ),
    row(
        "moved-to-pipeline-1-at-C1:PREPARATION-sets-order-P",
        base=base("N", "NEW", pipeline=0),
        order=order("N"),
        deal=deal("C1:PREPARATION", pipeline=1),
        origin="crm",
        outcome="applied",
        write=("cms", "P"),
        new_base=base("P", "C1:PREPARATION", pipeline=1, wrote="cms:P"),
    ),
    row(
        "moved-to-pipeline-1-with-the-same-stage-id-still-counts-as-a-change",
        mapping=with_pipeline(pipeline=1, to_cms={**MAPPING.pipelines[1].to_cms, "PREPARATION": "F"}),
        base=base("P", "PREPARATION", pipeline=0),
        order=order("P"),
        deal=deal("PREPARATION", pipeline=1),
        origin="crm",
        outcome="applied",
        write=("cms", "F"),
        new_base=base("F", "PREPARATION", pipeline=1, wrote="cms:F"),
    ),
    row(
        "after-the-move-an-order-change-uses-pipeline-1-stages",
        base=base("P", "C1:PREPARATION", pipeline=1),
        order=order("F"),
        deal=deal("C1:PREPARATION", pipeline=1),
        origin="cms",
        outcome="applied",
        write=("crm", "C1:WON"),
        new_base=base("F", "C1:WON", pipeline=1, wrote="crm:C1:WON"),
    ),
    row(
        "moved-to-pipeline-1-at-C1:NEW-for-a-paid-order-is-blocked",
        base=base("P", "PREPARATION", paid=True, pipeline=0),
        order=order("P", paid=True),
        deal=deal("C1:NEW", pipeline=1),
        origin="crm",
        outcome="regression_blocked",
        write=None,
        new_base=base("P", "C1:NEW", paid=True, pipeline=1),
        flag=True,
    ),
    row(
        "paid-after-the-move-uses-pipeline-1-paid-stage",
        base=base("N", "NEW", pipeline=0),
        order=order("N", paid=True),
        deal=deal("C1:NEW", pipeline=1),
        origin="payment",
        outcome="payment_applied",
        write=("crm", "C1:PREPAYMENT_INVOICE"),
        new_base=base("N", "C1:PREPAYMENT_INVOICE", paid=True, pipeline=1, wrote="crm:C1:PREPAYMENT_INVOICE"),
    ),
]


@pytest.mark.parametrize("r", PIPELINE_MOVES)
def test_it_uses_the_mapping_of_the_pipeline_a_deal_moved_to(r: Row) -> None:
    check(r)


# ----------------------------------------------------------------------------------------------------------
# 6. Link discovery.
# ----------------------------------------------------------------------------------------------------------

D7, D8, D9 = deal("NEW", deal_id="7"), deal("NEW", deal_id="8"), deal("NEW", deal_id="9")
D8_GONE = deal("NEW", deal_id="8", deleted=True)


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        pytest.param([], LinkResolution(outcome="unlinked"), id="none-unlinked"),
        pytest.param([D7], LinkResolution(outcome="linked", deal=D7, candidates=("7",)), id="one-linked"),
        pytest.param(
            [D9, D7],
            LinkResolution(outcome="ambiguous", candidates=("7", "9")),
            id="two-ambiguous-sorted-ids",
        ),
        pytest.param(
            [D8_GONE, D7],
            LinkResolution(outcome="linked", deal=D7, candidates=("7",)),
            id="deleted-one-ignored",
        ),
        pytest.param([D8_GONE], LinkResolution(outcome="unlinked"), id="only-a-deleted-one-unlinked"),
        pytest.param(
            [D7, D8_GONE, D9],
            LinkResolution(outcome="ambiguous", candidates=("7", "9")),
            id="two-live-one-deleted-ambiguous",
        ),
    ],
)
def test_it_resolves_the_link_through_the_deal_field(
    candidates: list[DealState], expected: LinkResolution
) -> None:
    assert link_resolve(order_id="101", candidates=candidates) == expected


# ----------------------------------------------------------------------------------------------------------
# 7. First sight of a link (base None).
# ----------------------------------------------------------------------------------------------------------

FIRST_SIGHT = [
    *[
        row(
            f"agreement-{o}-{s}-adopted-{origin or 'reconcile'}",
            base=None,
            order=order(o),
            deal=deal(s, pipeline=p),
            origin=origin,
            outcome="no_change",
            write=None,
            new_base=base(o, s, pipeline=p),
        )
        for o, s, p in [("N", "NEW", 0), ("C", "APOLOGY", 0), ("F", "C1:WON", 1)]
        for origin in ("cms", "crm", None)
    ],
    # The event's side does not decide: a deal's title edit fires ONCRMDEALUPDATE too.
    row(
        "disagreement-the-later-stage-move-wins-over-an-order-event",
        base=None,
        order=order("P", changed=10),
        deal=deal("NEW", changed=30),
        origin="cms",
        outcome="conflict_resolved",
        write=("cms", "N"),
        new_base=base("N", "NEW", wrote="cms:N"),
    ),
    row(
        "disagreement-the-later-status-change-wins-over-a-deal-event",
        base=None,
        order=order("P", changed=30),
        deal=deal("NEW", changed=10),
        origin="crm",
        outcome="conflict_resolved",
        write=("crm", "PREPARATION"),
        new_base=base("P", "PREPARATION", wrote="crm:PREPARATION"),
    ),
    row(
        "disagreement-at-the-same-second-is-flagged-whatever-the-event",
        base=None,
        order=order("P", changed=10),
        deal=deal("NEW", changed=10),
        origin="cms",
        outcome="conflict_flagged",
        write=None,
        new_base=None,
        flag=True,
    ),
    row(
        "disagreement-deal-event-paid-order-is-not-regressed-the-deal-gets-the-payment",
        base=None,
        order=order("P", paid=True, changed=10),
        deal=deal("NEW", changed=30),
        origin="crm",
        outcome="payment_applied",
        write=("crm", "PREPAYMENT_INVOICE"),
        new_base=base("P", "PREPAYMENT_INVOICE", paid=True, wrote="crm:PREPAYMENT_INVOICE"),
    ),
    row(
        "reconcile-order-newer",
        base=None,
        order=order("P", changed=30),
        deal=deal("NEW", changed=10),
        origin=None,
        outcome="conflict_resolved",
        write=("crm", "PREPARATION"),
        new_base=base("P", "PREPARATION", wrote="crm:PREPARATION"),
    ),
    row(
        "reconcile-deal-newer",
        base=None,
        order=order("P", changed=10),
        deal=deal("WON", changed=30),
        origin=None,
        outcome="conflict_resolved",
        write=("cms", "F"),
        new_base=base("F", "WON", wrote="cms:F"),
    ),
    row(
        "reconcile-tie-flagged",
        base=None,
        order=order("P", changed=10),
        deal=deal("WON", changed=10),
        origin=None,
        outcome="conflict_flagged",
        write=None,
        new_base=None,
        flag=True,
    ),
    row(
        "reconcile-uses-the-policy-cms_wins",
        mapping=policy("cms_wins"),
        base=None,
        order=order("P", changed=10),
        deal=deal("WON", changed=30),
        origin=None,
        outcome="conflict_resolved",
        write=("crm", "PREPARATION"),
        new_base=base("P", "PREPARATION", wrote="crm:PREPARATION"),
    ),
    row(
        "reconcile-finds-a-paid-order-whose-deal-never-got-the-payment",
        base=None,
        order=order("P", paid=True, changed=30),
        deal=deal("NEW", changed=10),
        origin=None,
        outcome="payment_applied",
        write=("crm", "PREPAYMENT_INVOICE"),
        new_base=base("P", "PREPAYMENT_INVOICE", paid=True, wrote="crm:PREPAYMENT_INVOICE"),
    ),
]


@pytest.mark.parametrize("r", FIRST_SIGHT)
def test_it_decides_on_first_sight(r: Row) -> None:
    check(r)


# ----------------------------------------------------------------------------------------------------------
# 2. Loop-free: after every write of every table above, the echo writes nothing.
# ----------------------------------------------------------------------------------------------------------


def after_write(r: Row, d: Decision) -> tuple[OrderState, DealState]:
    """Both sides as they are once the decision's write landed."""
    assert r.order is not None
    assert r.deal is not None
    assert d.write is not None
    if d.write.side == "cms":
        return replace(r.order, status=d.write.value), r.deal
    return r.order, replace(r.deal, stage=d.write.value)


ALL_ROWS = [
    *BOTH_WAYS,
    *PAYMENT,
    *REGRESSION,
    *CONFLICTS,
    *UNMAPPED,
    *PIPELINE_MOVES,
    *FIRST_SIGHT,
]
WRITE_ROWS = [p for p in ALL_ROWS if p.values[0].write is not None]


def test_the_tables_have_rows_with_writes() -> None:
    assert len(WRITE_ROWS) >= 30


@pytest.mark.parametrize("r", WRITE_ROWS)
def test_it_writes_nothing_for_the_echo_of_its_own_write(r: Row) -> None:
    d = check(r)
    assert d.new_base is not None
    new_order, new_deal = after_write(r, d)
    # After a write both sides equal the new base.
    assert (new_order.status, new_deal.stage, new_order.paid, new_deal.pipeline) == (
        d.new_base.order_status,
        d.new_base.deal_stage,
        d.new_base.paid,
        d.new_base.pipeline,
    )
    echo_origin = (
        d.write.side
    )  # crm.deal.update fires ONCRMDEALUPDATE; sale.order.update fires ONSALEORDERSAVED
    echo = decide(base=d.new_base, order=new_order, deal=new_deal, mapping=r.mapping, origin=echo_origin)
    assert (echo.outcome, echo.write, echo.flag) == ("echo", None, None)
    assert echo.new_base in (None, d.new_base)


@pytest.mark.parametrize("r", WRITE_ROWS)
def test_it_reports_no_change_when_the_state_matches_but_it_wrote_nothing(r: Row) -> None:
    d = run(r)
    assert d.new_base is not None
    assert d.write is not None
    new_order, new_deal = after_write(r, d)
    forgotten = replace(d.new_base, last_write_side="", last_write_value="")
    other_origin = "cms" if d.write.side == "crm" else "crm"
    for b, origin in [(forgotten, d.write.side), (d.new_base, other_origin), (d.new_base, None)]:
        again = decide(base=b, order=new_order, deal=new_deal, mapping=r.mapping, origin=origin)
        assert (again.outcome, again.write, again.flag) == ("no_change", None, None), (origin, again.reason)


def test_it_writes_exactly_once_per_human_change() -> None:
    """A manager moves the deal; bxsync sets the order; both portals fire events for that; nothing more."""
    link_base: Base | None = base("N", "NEW")
    shop = order("N")
    crm = deal("NEW")
    writes = []

    def handle(origin: str | None) -> Decision:
        nonlocal link_base, shop, crm
        d = decide(base=link_base, order=shop, deal=crm, mapping=MAPPING, origin=origin)  # type: ignore[arg-type]
        if d.write is not None:
            writes.append(d.write)
            if d.write.side == "cms":
                shop = replace(shop, status=d.write.value)
            else:
                crm = replace(crm, stage=d.write.value)
        if d.new_base is not None:
            link_base = d.new_base
        return d

    crm = replace(crm, stage="PREPARATION", stage_changed_at=at(60))  # the human change
    assert handle("crm").outcome == "applied"
    assert handle("cms").outcome == "echo"  # ONSALEORDERSAVED for bxsync's own sale.order.update
    assert handle("crm").outcome == "no_change"  # the original ONCRMDEALUPDATE, delivered twice
    assert handle(None).outcome == "no_change"  # reconciliation
    assert [(w.side, w.value) for w in writes] == [("cms", "P")]

    shop = replace(shop, paid=True)  # the customer pays
    assert handle("payment").outcome == "payment_applied"
    assert handle("crm").outcome == "echo"  # ONCRMDEALUPDATE for bxsync's own crm.deal.update
    assert handle("payment").outcome == "no_change"  # at-least-once: the payment event again
    assert handle(None).outcome == "no_change"
    assert [(w.side, w.value) for w in writes] == [("cms", "P"), ("crm", "PREPAYMENT_INVOICE")]
    assert link_base == base("P", "PREPAYMENT_INVOICE", paid=True, wrote="crm:PREPAYMENT_INVOICE")


# ----------------------------------------------------------------------------------------------------------
# 2. Loop-free, property style: random bases, one human change on one side, any later event writes nothing.
# ----------------------------------------------------------------------------------------------------------

STATUSES = ["N", "P", "F", "C", "X"]  # X: no rule
POLICIES = ["latest", "cms_wins", "crm_wins", "manual"]


def _stages(pipeline: int) -> list[str]:
    pm = MAPPING.pipelines[pipeline]
    return sorted({*pm.to_cms, *pm.to_crm.values(), pm.paid_stage, "EXECUTING"})


def _random_step(rng: random.Random) -> tuple[Mapping, Base, OrderState, DealState, str]:
    pipeline = rng.choice([0, 1])
    pm = MAPPING.pipelines[pipeline]
    stage, status = rng.choice(sorted(pm.to_cms.items()))
    paid = rng.random() < 0.4
    link_base = base(status, stage, paid=paid, pipeline=pipeline)
    shop = order(status, paid=paid, changed=0)
    crm = deal(stage, pipeline=pipeline, changed=0)
    side = rng.choice(["cms", "crm", "payment"] if not paid else ["cms", "crm"])
    if side == "cms":
        shop = replace(
            shop, status=rng.choice([s for s in STATUSES if s != status]), status_changed_at=at(60)
        )
    elif side == "crm":
        crm = replace(
            crm, stage=rng.choice([s for s in _stages(pipeline) if s != stage]), stage_changed_at=at(60)
        )
    else:
        shop = replace(shop, paid=True)
        if rng.random() < 0.5:  # paid and a new status in the same save
            shop = replace(shop, status=rng.choice(STATUSES), status_changed_at=at(60))
    return policy(rng.choice(POLICIES), pipeline), link_base, shop, crm, side


@pytest.mark.parametrize("seed", [1, 2, 3, 42, 2024])
def test_it_never_writes_twice_for_one_human_change(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(400):
        mapping, link_base, shop, crm, side = _random_step(rng)
        d = decide(base=link_base, order=shop, deal=crm, mapping=mapping, origin=side)  # type: ignore[arg-type]
        case = (link_base, shop.status, shop.paid, crm.stage, side, d.outcome, d.reason)
        if d.write is not None:
            if d.write.side == "cms":
                shop = replace(shop, status=d.write.value)
            else:
                crm = replace(crm, stage=d.write.value)
            assert d.new_base is not None, case
            assert (d.new_base.order_status, d.new_base.deal_stage) == (shop.status, crm.stage), case
        after = d.new_base or link_base
        for origin in ("cms", "crm", "payment", None):
            again = decide(base=after, order=shop, deal=crm, mapping=mapping, origin=origin)  # type: ignore[arg-type]
            assert again.write is None, (*case, origin, again.outcome, again.reason)
            if d.write is not None:
                shop_event = origin in ("cms", "payment")
                expected = "echo" if (d.write.side == "cms") == shop_event and origin else "no_change"
                assert again.outcome == expected, (*case, origin, again.outcome)


@pytest.mark.parametrize("seed", [7, 99])
def test_it_writes_at_most_once_per_human_change_over_a_long_history(seed: int) -> None:
    """A random walk of human changes, each followed by every kind of event: writes <= human changes."""
    rng = random.Random(seed)
    mapping = policy(rng.choice(POLICIES))
    link_base = base("N", "NEW")
    shop, crm = order("N"), deal("NEW")
    human_changes = writes = 0
    for step in range(300):
        when = at(10 * (step + 1))
        if rng.random() < 0.5:
            shop = replace(shop, status=rng.choice(STATUSES), status_changed_at=when)
        else:
            crm = replace(crm, stage=rng.choice(_stages(0)), stage_changed_at=when)
        if not shop.paid and rng.random() < 0.05:
            shop = replace(shop, paid=True)
        human_changes += 1
        for origin in rng.sample(["cms", "crm", "payment", None], 4):
            d = decide(base=link_base, order=shop, deal=crm, mapping=mapping, origin=origin)  # type: ignore[arg-type]
            if d.write is not None:
                writes += 1
                if d.write.side == "cms":
                    shop = replace(shop, status=d.write.value)
                else:
                    crm = replace(crm, stage=d.write.value)
            if d.new_base is not None:
                link_base = d.new_base
        settled = decide(base=link_base, order=shop, deal=crm, mapping=mapping, origin=None)
        assert settled.write is None, (step, settled.outcome, settled.reason)
    assert 0 < writes <= human_changes

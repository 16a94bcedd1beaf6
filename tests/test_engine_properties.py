"""Hypothesis on the engine: for any base, order, deal, mapping, policy and origin, the decision is total and
loop-free — what bxsync writes, it never writes again, and after a write both sides equal the new base."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from statussync.engine import Base, DealState, Mapping, OrderState, PipelineMap, decide

STATUSES = ["N", "P", "D", "F", "C", "X"]
STAGES = ["NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "WON", "LOSE", "APOLOGY", "UC_1"]
ORDER = ("NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "WON")
T0 = datetime(2026, 1, 1, tzinfo=UTC)

times = st.one_of(st.none(), st.integers(0, 120).map(lambda s: T0 + timedelta(seconds=s)))


@st.composite
def mappings(draw) -> Mapping:
    to_crm = draw(st.dictionaries(st.sampled_from(STATUSES), st.sampled_from(STAGES), max_size=5))
    to_cms = draw(st.dictionaries(st.sampled_from(STAGES), st.sampled_from(STATUSES), max_size=6))
    pm = PipelineMap(
        pipeline=0,
        to_crm=to_crm,
        to_cms=to_cms,
        paid_stage=draw(st.sampled_from(["", "PREPAYMENT_INVOICE", "EXECUTING"])),
        conflict_policy=draw(st.sampled_from(["latest", "cms_wins", "crm_wins", "manual"])),
        success_stages=frozenset({"WON"}),
        stage_order=draw(st.sampled_from([ORDER, ()])),
    )
    awaiting = frozenset(draw(st.lists(st.sampled_from(STATUSES), max_size=2)))
    return Mapping(pipelines={0: pm}, awaiting_payment_statuses=awaiting)


orders = st.builds(
    OrderState,
    order_id=st.just("1"),
    status=st.sampled_from(STATUSES),
    paid=st.booleans(),
    status_changed_at=times,
)
deals = st.builds(
    DealState,
    deal_id=st.just("7"),
    stage=st.sampled_from(STAGES),
    pipeline=st.just(0),
    stage_changed_at=times,
    successful=st.booleans(),
)
bases = st.one_of(
    st.none(),
    st.builds(
        Base,
        order_status=st.sampled_from(STATUSES),
        deal_stage=st.sampled_from(STAGES),
        paid=st.booleans(),
        pipeline=st.just(0),
        last_write_side=st.sampled_from(["", "cms", "crm"]),
        last_write_value=st.sampled_from(["", *STATUSES[:2], *STAGES[:2]]),
    ),
)
origins = st.sampled_from(["cms", "crm", "payment", None])


@settings(max_examples=300, deadline=None)
@given(mapping=mappings(), base=bases, order=orders, deal=deals, origin=origins)
def test_it_never_writes_again_what_it_has_just_written(mapping, base, order, deal, origin):
    decision = decide(base=base, order=order, deal=deal, mapping=mapping, origin=origin)
    assert decision.reason.render()  # every decision explains itself
    if decision.write is None:
        return
    if decision.write.side == "cms":
        order = replace(order, status=decision.write.value)
    else:
        deal = replace(deal, stage=decision.write.value)
    new_base = decision.new_base
    assert new_base is not None
    assert (new_base.order_status, new_base.deal_stage) == (order.status, deal.stage)
    for echo_origin in ("cms", "crm", "payment", None):
        again = decide(base=new_base, order=order, deal=deal, mapping=mapping, origin=echo_origin)
        assert again.write is None, (decision.reason.render(), again.outcome, again.reason.render())

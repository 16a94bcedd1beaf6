"""A manager's forced decision ("take the shop's / the CRM's value"): the engine's `override` argument.

The override makes one side win as a `cms_wins` / `crm_wins` policy would, even where the base says nothing
changed; payment and the no-regression rule still come first.
"""

from __future__ import annotations

import pytest

from statussync.engine import Write, decide
from tests.test_engine import MAPPING, base, deal, order, policy


@pytest.mark.parametrize(
    ("case", "o", "d", "b", "override", "outcome", "write"),
    [
        # In sync on the base, but a manager wants the deal to follow the order: nothing to write when they
        # already agree.
        ("agree", order("P"), deal("PREPARATION"), base("P", "PREPARATION"), "cms", "no_change", None),
        ("agree crm", order("P"), deal("PREPARATION"), base("P", "PREPARATION"), "crm", "no_change", None),
        # A conflict the `manual` policy flagged: the manager picks the winner.
        (
            "conflict shop",
            order("F"),
            deal("LOSE"),
            base("P", "PREPARATION"),
            "cms",
            "applied",
            ("crm", "WON"),
        ),
        ("conflict crm", order("F"), deal("LOSE"), base("P", "PREPARATION"), "crm", "applied", ("cms", "C")),
        # A drift the base absorbed (the base already equals both sides' current values, but they disagree
        # under the mapping, e.g. after a mapping change): the chosen side is pushed across.
        ("drift shop", order("F"), deal("NEW"), base("F", "NEW"), "cms", "applied", ("crm", "WON")),
        ("drift crm", order("F"), deal("NEW"), base("F", "NEW"), "crm", "applied", ("cms", "N")),
        # First sight: no base at all.
        ("first sight", order("P"), deal("WON"), None, "crm", "applied", ("cms", "F")),
        # An unmapped winner writes nothing.
        ("unmapped", order("D"), deal("NEW"), base("N", "NEW"), "cms", "unmapped", None),
    ],
)
def test_it_lets_the_chosen_side_win(case, o, d, b, override, outcome, write):
    decision = decide(base=b, order=o, deal=d, mapping=policy("manual"), origin=None, override=override)

    assert decision.outcome == outcome, case
    assert decision.write == (Write(*write) if write else None), case
    if decision.write is not None:
        assert decision.new_base is not None
        assert decision.new_base.last_write_value == write[1]


def test_it_still_blocks_a_regression_of_a_paid_order_when_the_crm_is_chosen():
    # The deal went back to NEW after payment; the base recorded the blocked move.
    paid_base = base("P", "NEW", paid=True)

    decision = decide(
        base=paid_base,
        order=order("P", paid=True),
        deal=deal("NEW"),
        mapping=MAPPING,
        origin=None,
        override="crm",
    )

    assert decision.outcome == "regression_blocked"
    assert decision.write is None
    assert decision.flag is not None


def test_it_repairs_a_blocked_regression_when_the_shop_is_chosen():
    paid_base = base("P", "NEW", paid=True)

    decision = decide(
        base=paid_base,
        order=order("P", paid=True),
        deal=deal("NEW"),
        mapping=MAPPING,
        origin=None,
        override="cms",
    )

    assert decision.write == Write("crm", "PREPARATION")
    assert decision.reason.code == "override_shop"
    assert "a manager chose the shop's value" in str(decision.reason)


def test_it_lets_a_payment_come_first():
    decision = decide(
        base=base("N", "NEW"),
        order=order("N", paid=True),
        deal=deal("NEW"),
        mapping=MAPPING,
        origin=None,
        override="crm",
    )

    assert decision.outcome == "payment_applied"
    assert decision.write == Write("crm", "PREPAYMENT_INVOICE")


def test_it_decides_as_before_without_an_override():
    decision = decide(
        base=base("P", "PREPARATION"),
        order=order("P"),
        deal=deal("PREPARATION"),
        mapping=MAPPING,
        origin="cms",
    )

    assert decision.outcome == "no_change"
    assert decision.reason.code == "nothing_changed"

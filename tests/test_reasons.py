"""Reasons rendered for people: codes with parameters, named as the portals name statuses and stages."""

from __future__ import annotations

from statussync.reasons import why


def names(kind: str):
    return lambda code: f"<{kind} {code}>"


def test_it_names_statuses_and_stages_however_deep_and_leaves_the_rest():
    reason = why(
        "conflict_shop_wins",
        policy="latest change wins",
        then=why("order_to_deal", status="P", stage="NEW", target="PREPARATION"),
    )

    named = reason.named(status=names("status"), stage=names("stage"))

    assert named.render() == (
        "both sides changed; latest change wins: the shop wins; "
        "order status <status P>: deal <stage NEW> → <stage PREPARATION>"
    )


def test_it_knows_which_target_is_a_status_and_which_a_stage():
    to_order = why("deal_to_order", stage="WON", status="P", target="F")
    regression = why("regression", stage="NEW", target="N")

    assert to_order.named(status=names("status"), stage=names("stage")).params["target"] == "<status F>"
    assert regression.named(status=names("status"), stage=names("stage")).params["target"] == "<status N>"
    assert (
        why("payment_move", stage="NEW", target="PAID")
        .named(status=names("status"), stage=names("stage"))
        .params["target"]
        == "<stage PAID>"
    )

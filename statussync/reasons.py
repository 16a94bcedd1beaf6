"""Why bxsync did what it did: a reason code with parameters, so the audit renders in the reader's language.

The engine and the sync run say *why* with a `Reason`; the audit stores its code and parameters, and the admin
renders them through gettext. The English texts here are the msgids. This module stays free of Django (the
engine imports it): `gettext_noop` below only marks the texts for `makemessages`, which finds them by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


def gettext_noop(message: str) -> str:
    """Mark `message` for translation without translating it (Django's makemessages looks for this name)."""
    return message


TEXTS: dict[str, str] = {
    # The engine's decisions.
    "order_deleted": gettext_noop("the order was deleted; the link is closed"),
    "deal_deleted": gettext_noop("the deal was deleted; the link is closed"),
    "pipeline_unmapped": gettext_noop("pipeline {pipeline} has no mapping"),
    "first_sight_agree": gettext_noop("first sight: both sides already agree"),
    "echo": gettext_noop("the echo of bxsync's own write"),
    "echo_known": gettext_noop(
        "the echo of bxsync's own write ({value}), known from its read-back: not read"
    ),
    "nothing_changed": gettext_noop("neither side differs from the base"),
    "both_changed_agree": gettext_noop("both sides changed to matching values"),
    "paid_deal_there": gettext_noop("order paid; the deal is already at {stage}"),
    "payment_move": gettext_noop("order paid: deal {stage} → {target}"),
    "payment_held": gettext_noop(
        "order paid, but the deal is at stage {stage}, which is not in the CRM's stage list as bxsync last "
        "read it, so bxsync cannot tell whether moving it to the paid stage {target} would move it "
        "backwards; the deal was left where it is — check the deal and its pipeline's stages in the CRM"
    ),
    "mapping_stage_gone": gettext_noop(
        "{then}; but stage {target} is no longer in pipeline {pipeline} in the CRM, so nothing was written "
        "— fix the mapping"
    ),
    "status_unmapped": gettext_noop("order status {status} has no stage in pipeline {pipeline}"),
    "deal_already_there": gettext_noop("the deal is already at {stage}"),
    "order_to_deal": gettext_noop("order status {status}: deal {stage} → {target}"),
    "stage_unmapped": gettext_noop("deal stage {stage} has no order status in pipeline {pipeline}"),
    "regression": gettext_noop("deal moved to {stage}, which would put paid order back to {target}"),
    "order_already_there": gettext_noop("the order is already {status}"),
    "deal_to_order": gettext_noop("deal stage {stage}: order {status} → {target}"),
    "conflict_tie": gettext_noop(
        "both sides changed (order {status}, deal {stage}) at the same time or without change times; "
        "not guessed"
    ),
    "conflict_manual": gettext_noop("both sides changed (order {status}, deal {stage}); policy is manual"),
    "conflict_shop_wins": gettext_noop("both sides changed; {policy}: the shop wins; {then}"),
    "conflict_crm_wins": gettext_noop("both sides changed; {policy}: the CRM wins; {then}"),
    # The sync run's.
    "payment_not_found": gettext_noop("payment {payment} not found"),
    "payment_no_order": gettext_noop("payment {payment} has no order"),
    "deal_no_order_field": gettext_noop("deal {deal} has no order id in {field}"),
    "order_linked_elsewhere": gettext_noop(
        "deal {deal} names order {order}, which is linked to deal {other}"
    ),
    "no_deal_for_order": gettext_noop("no deal has order {order} in {field}"),
    "several_deals": gettext_noop("deals {deals} all name order {order}; nothing written"),
    "deal_linked_elsewhere": gettext_noop("deal {deal} is already linked to another order"),
    "nothing_to_sync": gettext_noop("nothing to sync"),
    "gone_never_linked": gettext_noop("the order or deal no longer exists and was never linked"),
    "landed": gettext_noop("{then} (the write of {value} landed, though its reply was lost)"),
    "write_no_effect": gettext_noop(
        "{then}; but the deal had moved to pipeline {pipeline} before the write, so the stage was not set; "
        "decided again with that pipeline's mapping"
    ),
    "write_no_effect_stage": gettext_noop(
        "{then}; but the CRM accepted the move to stage {target} and left the deal at {stage}, so nothing "
        "was recorded and the change will be tried again: stage {target} may have been deleted in the CRM, "
        "or the mapping may be out of date"
    ),
    "deal_names_other_order": gettext_noop(
        "deal {deal} now names order {named} in {field}, not order {order}; nothing written until the link "
        "is repaired"
    ),
    "deal_names_no_order": gettext_noop(
        "deal {deal} no longer names order {order} in {field}; nothing written until the link is repaired"
    ),
    # A manager's forced decision ("take the shop's / the CRM's value"), decided by the engine.
    "override_shop": gettext_noop("a manager chose the shop's value; {then}"),
    "override_crm": gettext_noop("a manager chose the CRM's value; {then}"),
    "override_agree": gettext_noop("a manager chose one side's value; both sides already agree"),
    # What a manager asked for in the admin, and how link problems were resolved.
    "admin_resync": gettext_noop("{user} asked for a resync"),
    "admin_take_shop": gettext_noop("{user} asked to take the shop's value"),
    "admin_take_crm": gettext_noop("{user} asked to take the CRM's value"),
    "admin_rediscover": gettext_noop("{user} closed the link so that the order's deal is found again"),
    "problem_deal_chosen": gettext_noop("{user} linked order {order} to deal {deal}"),
    "problem_link_closed": gettext_noop(
        "{user} closed the link of order {order} and deal {deal} so that the deal's new order is found"
    ),
    "problem_gone": gettext_noop("the deal names its order again"),
    "problem_linked": gettext_noop("order {order} is linked to deal {deal} now"),
    "job_discarded": gettext_noop("{user} discarded the failed work on {kind} {entity}: {error}"),
    "busy": gettext_noop("the order is busy in another worker; retried shortly"),
    "lock_lost": gettext_noop("the run outlived its lock; another worker took over"),
    "error": gettext_noop("{error}"),
}

# The reasons whose `target` is a deal stage, and those whose `target` is an order status; `status` is always
# an order status and `stage` a deal stage.
TARGET_IS_STAGE = frozenset(
    {"payment_move", "order_to_deal", "payment_held", "mapping_stage_gone", "write_no_effect_stage"}
)
TARGET_IS_STATUS = frozenset({"deal_to_order", "regression"})


@dataclass(frozen=True)
class Reason:
    """A reason code and its parameters; a parameter may itself be a Reason (a decision inside a conflict)."""

    code: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def render(self, translate: Callable[[str], str] = str) -> str:
        """The reason as text; `translate` is gettext for the reader's language (English by default)."""
        params = {k: v.render(translate) if isinstance(v, Reason) else v for k, v in self.params.items()}
        template = TEXTS.get(self.code)
        if template is None:  # a code from a newer or older version: show what we know
            return f"{self.code} {params}"
        return translate(template).format(**params)

    def __str__(self) -> str:
        return self.render()

    def named(self, *, status: Callable[[str], str], stage: Callable[[str], str]) -> Reason:
        """The reason with its order statuses passed through `status` and its deal stages through `stage`
        (the portals' names, "Новая (NEW)", for people who do not read codes), nested reasons too."""
        params: dict[str, Any] = {}
        for key, value in self.params.items():
            if isinstance(value, Reason):
                params[key] = value.named(status=status, stage=stage)
            elif key == "status" or (key == "target" and self.code in TARGET_IS_STATUS):
                params[key] = status(str(value))
            elif key == "stage" or (key == "target" and self.code in TARGET_IS_STAGE):
                params[key] = stage(str(value))
            else:
                params[key] = value
        return Reason(self.code, params)

    def as_json(self) -> dict[str, Any]:
        """The reason for a JSON column."""
        params = {k: v.as_json() if isinstance(v, Reason) else v for k, v in self.params.items()}
        return {"code": self.code, "params": params}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Reason | None:
        """A reason stored by `as_json`, or None."""
        if not data or "code" not in data:
            return None
        params = {
            k: cls.from_json(v) if isinstance(v, Mapping) and "code" in v else v
            for k, v in (data.get("params") or {}).items()
        }
        return cls(str(data["code"]), params)


def why(code: str, **params: Any) -> Reason:
    """`Reason(code, params)`, with the code checked (a typo would show raw in the admin)."""
    assert code in TEXTS, code
    return Reason(code, params)

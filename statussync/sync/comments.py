"""Explaining bxsync where the manager works: a comment on the deal's timeline when bxsync blocks or overrides
a person's change in the CRM — a stage that would unpay a paid order, a change that lost a conflict (or that a
manager overrode from bxsync's admin), a stage with no order status mapped to it.

Off unless BXSYNC_CRM_COMMENTS. Never in the way of sync: a stage not passed on rides in the run's CRM write
batch (`comments_plan`, called by `write.writes_send`); a move bxsync made is explained only after the
read-back shows the deal moved, in one batch after the writes (`comments_send`), as are the explanations of a
run that wrote nothing to the CRM. A failing comment is logged and ignored, it never fails an item, and its
answer moves nothing. Texts are rendered from the reason code in the portal's language
(BXSYNC_CRM_COMMENT_LANGUAGE), not the reader's of the admin.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from statussync import portals
from statussync.bitrix import BitrixError
from statussync.mapping import catalog

from .items import Item
from .plan import BatchPlan

if TYPE_CHECKING:
    from .run import SyncRun

logger = logging.getLogger(__name__)

# What happened to the manager's change, in the words of the person who made it.
HEADLINES = {
    "regression": _(
        "bxsync did not pass this stage on to order {order}: the order is paid, and this stage would put it "
        "back to awaiting payment."
    ),
    "held": _(
        "bxsync did not move this deal to the paid stage of order {order}: it cannot tell whether that would "
        "move the deal backwards."
    ),
    "conflict": _(
        "bxsync moved this deal to match order {order}: the order and the deal changed at the same time, "
        "and the order's change won."
    ),
    "override": _("bxsync moved this deal to match order {order}: a manager chose the shop's value."),
    "unmapped": _(
        "bxsync did not pass this stage on to order {order}: no order status is mapped to it. A rule for it "
        "can be added in bxsync's mapping."
    ),
}
WHY = _("Why: {reason}.")


def comment_kind(item: Item) -> str | None:
    """Which explanation the item's decision calls for, if any: only where a person's CRM change is blocked
    or undone, and only once for the same reason (a link already flagged for it was told before)."""
    decision = item.decision
    if decision is None or not item.live or not item.deal_id or not item.order_id:
        return None
    write = decision.write
    if decision.reason.code == "payment_held":
        kind = "held"
    elif decision.outcome == "regression_blocked":
        kind = "regression"
    elif decision.outcome == "conflict_resolved" and write is not None and write.side == "crm":
        kind = "conflict"
    elif decision.reason.code == "override_shop" and write is not None and write.side == "crm":
        kind = "override"
    elif decision.unmapped and decision.unmapped[0] == "crm" and decision.reason.code != "pipeline_unmapped":
        kind = "unmapped"
    else:
        return None
    flag = decision.flag or (decision.reason if kind == "unmapped" else None)
    if flag is not None and item.link is not None and item.link.attention == flag.as_json():
        return None  # the same stage seen again (a title edit fires the deal event too): said already
    return kind


def comment_text(item: Item, kind: str) -> str:
    """The comment, in BXSYNC_CRM_COMMENT_LANGUAGE."""
    assert item.decision is not None
    with translation.override(settings.BXSYNC_CRM_COMMENT_LANGUAGE):
        headline = str(HEADLINES[kind]).format(order=item.order_id)
        # Named as the manager sees them in the CRM and the shop ("Новая (NEW)"), from the catalog of names.
        named = item.decision.reason.named(status=catalog.status_label, stage=catalog.stage_label)
        reason = named.render(gettext)
        return f"{headline}\n{str(WHY).format(reason=reason)}"


# The explanations that say bxsync moved the deal: true only once the read-back after the write shows the deal
# there (crm.deal.update answers `true` even when it changed nothing [docs/bitrix.md "Deals"]).
MOVES = {"conflict", "override"}


def comments_plan(run: SyncRun, plan: BatchPlan) -> None:
    """Add the run's explanations that need no proof to `plan`, the run's CRM write batch (once per run):
    a stage not passed on is not passed on whatever the writes do."""
    if run.comments_planned or run.dry_run or not settings.BXSYNC_CRM_COMMENTS:
        return
    run.comments_planned = True
    _comments_add(run, plan, moves=False)


def comments_send(run: SyncRun) -> None:
    """After the writes and their read-back: the explanations of moves that landed, and those that found no
    CRM write batch to ride in, in one batch. Never raises."""
    if run.dry_run or not settings.BXSYNC_CRM_COMMENTS:
        return
    try:
        plan = BatchPlan(run.crm)
        if not run.comments_planned:
            comments_plan(run, plan)
        _comments_add(run, plan, moves=True)
        plan.run(contact=lambda portal, error: _contact(run, portal, error))
    except Exception:
        logger.exception("could not add the run's comments to the CRM; sync goes on")


def _comments_add(run: SyncRun, plan: BatchPlan, *, moves: bool) -> None:
    for item in run.items:
        kind = comment_kind(item)
        if kind is None or (kind in MOVES) != moves or (moves and not _moved(item)):
            continue
        # No items: the comment's answer, or its failure, counts for none of them.
        plan.add(
            portals.deal_comment_add(item.deal_id, comment_text(item, kind)),
            items=[],
            on_result=_ignore,
            on_error=partial(_failed, item.deal_id),
        )


def _moved(item: Item) -> bool:
    """The deal, read back right after bxsync's write, is at the stage written."""
    write = item.decision.write if item.decision else None
    written = item.written
    return write is not None and written is not None and getattr(written, "stage", None) == write.value


def _contact(run: SyncRun, portal: str, error: BitrixError | None) -> None:
    """A comment batch that fails says nothing about the portal's health for sync (a webhook may lack the
    right to comment, and sync still works): logged, not recorded."""
    if error is None:
        run.contact(portal, None)
    else:
        logger.warning("could not add the run's comments to the CRM: %s", error)


def _failed(deal_id: str, error: BitrixError) -> None:
    logger.warning("could not comment on deal %s: %s", deal_id, error)


def _ignore(result: object) -> None:
    return None

"""Writing: one `batch` per portal for every decided write, the CRM's first so payments land first."""

from __future__ import annotations

from typing import TYPE_CHECKING

from statussync import portals

from .plan import BatchPlan

if TYPE_CHECKING:
    from .run import SyncRun


def writes_send(run: SyncRun) -> None:
    """Send every live item's write; a refused write fails its item (retried or dead-lettered)."""
    crm, cms = BatchPlan(run.crm), BatchPlan(run.cms)
    for item in run.live():
        write = item.decision.write if item.decision else None
        if write is None:
            continue
        if write.side == "crm":
            crm.add(portals.deal_stage_update(item.deal_id, write.value), items=[item], on_result=_ignore)
        else:
            cms.add(portals.order_status_update(item.order_id, write.value), items=[item], on_result=_ignore)
    # Payments first: the CRM write round goes before the shop's.
    crm.run(contact=run.contact)
    cms.run(contact=run.contact)


def _ignore(result: object) -> None:
    return None

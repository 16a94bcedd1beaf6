"""The round trip, only when the user asks (`--round-trip --deal <id>`): a harmless change on a test deal,
undone, and a wait for its event to reach bxsync. On a deal linked to no order it also moves the deal to
another pipeline and back, to learn whether a pipeline move changes DATE_MODIFY.

The change is to the deal's comment field (`COMMENTS`), which no mapping reads; `crm.deal.update` fires
ONCRMDEALUPDATE for REST writes too [docs/bitrix.md "Events"]. The pipeline move is `crm.item.update` with
`categoryId`, the way the documentation gives for it [docs/bitrix.md "Deals"].
"""

from __future__ import annotations

import time
from typing import Any

from django.utils import timezone

from statussync import portals
from statussync.bitrix import BitrixClient, BitrixError
from statussync.models import InboundEvent, Side

from .checks import Visit, handler_url, said
from .findings import BLOCKING, NOTE, OK
from .quirks import MOVE_CHANGES_DATE_MODIFY

# Bitrix's times have whole seconds: a second change within the same second would look like none.
SECOND = 1.1
POLL_SECONDS = 0.2


def round_trip_check(visit: Visit, *, deal_id: str, timeout: float) -> dict[str, Any]:
    """Change the test deal's comment, wait up to `timeout` s for its event to be stored, undo the change.
    Returns the quirks learnt on the way."""
    client = visit.clients[Side.CRM]
    try:
        deal = client.result("crm.deal.get", {"id": deal_id})
        before = str(deal.get("COMMENTS") or "")
        started = timezone.now()
        client.result("crm.deal.update", _comment(deal_id, before + "\n[bxsync doctor]"))
    except BitrixError as error:
        visit.add("round_trip", Side.CRM, BLOCKING, "round_trip_failed", deal=deal_id, error=said(error))
        return {}
    arrived = _event_wait(deal_id, since=started, timeout=timeout)
    try:
        client.result("crm.deal.update", _comment(deal_id, before))
    except BitrixError as error:
        visit.add("round_trip", Side.CRM, BLOCKING, "round_trip_failed", deal=deal_id, error=said(error))
        return {}
    if arrived is None:
        handler = handler_url(Side.CRM)
        visit.add(
            "round_trip",
            Side.CRM,
            BLOCKING,
            "round_trip_lost",
            deal=deal_id,
            seconds=f"{timeout:g}",
            handler=handler,
        )
    else:
        seconds = f"{(arrived - started).total_seconds():.1f}"
        visit.add("round_trip", Side.CRM, OK, "round_trip_ok", deal=deal_id, seconds=seconds)
    return _pipeline_move_probe(visit, client, deal)


def _comment(deal_id: str, text: str) -> dict[str, Any]:
    # No Live Feed entry for a test [docs/bitrix.md "Deals"].
    return {"id": deal_id, "fields": {"COMMENTS": text}, "params": {"REGISTER_SONET_EVENT": "N"}}


def _event_wait(deal_id: str, *, since: Any, timeout: float) -> Any:
    """When the deal's update event was stored, or None when it did not come within `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        received = (
            InboundEvent.objects.filter(side=Side.CRM, entity_id=str(deal_id), received_at__gte=since)
            .order_by("received_at")
            .values_list("received_at", flat=True)
            .first()
        )
        if received is not None or time.monotonic() >= deadline:
            return received
        time.sleep(POLL_SECONDS)


def _pipeline_move_probe(visit: Visit, client: BitrixClient, deal: dict[str, Any]) -> dict[str, Any]:
    deal_id, field = str(deal["ID"]), portals.deal_order_field()
    if str(deal.get(field) or "").strip():
        visit.add(
            "quirks", Side.CRM, NOTE, "quirk_unprobed", quirk=MOVE_CHANGES_DATE_MODIFY, why="deal_linked"
        )
        return {}
    try:
        categories = client.result("crm.category.list", {"entityTypeId": 2}).get("categories", [])
        home = int(deal.get("CATEGORY_ID") or 0)
        other = next((int(c["id"]) for c in categories if int(c.get("id") or 0) != home), None)
        if other is None:
            visit.add(
                "quirks", Side.CRM, NOTE, "quirk_unprobed", quirk=MOVE_CHANGES_DATE_MODIFY, why="one_pipeline"
            )
            return {}
        before = client.result("crm.deal.get", {"id": deal_id})["DATE_MODIFY"]
        time.sleep(SECOND)
        client.result("crm.item.update", {"entityTypeId": 2, "id": deal_id, "fields": {"categoryId": other}})
        after = client.result("crm.deal.get", {"id": deal_id})["DATE_MODIFY"]
        back = {"categoryId": home, "stageId": deal.get("STAGE_ID")}
        client.result("crm.item.update", {"entityTypeId": 2, "id": deal_id, "fields": back})
    except (BitrixError, KeyError, TypeError, ValueError, AttributeError):
        visit.add("quirks", Side.CRM, NOTE, "quirk_unprobed", quirk=MOVE_CHANGES_DATE_MODIFY, why="failed")
        return {}
    changed = after != before
    visit.add(
        "quirks",
        Side.CRM,
        OK if changed else NOTE,
        "move_date_modify_yes" if changed else "move_date_modify_no",
    )
    return {MOVE_CHANGES_DATE_MODIFY: changed}

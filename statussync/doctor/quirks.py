"""The undocumented points doctor probes on each portal, and where it remembers the answers.

Each probe is a read (the pipeline move, a write, is in `roundtrip`) whose answer the documentation leaves
open; docs/bitrix.md "Undocumented behaviours" lists them with what bxsync does in each case. The answers are
stored per portal (`PortalQuirks`) and read back with `portal_quirks_get`, so the sync can adapt.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from statussync.bitrix import BitrixError, NotFoundError, PermanentError
from statussync.bitrix.behaviour import (
    DATETIME_OFFSET_FILTER,
    MOVE_CHANGES_DATE_MODIFY,
    ORDER_NOT_FOUND_CODE,
    PAYMENT_ARRAY_FILTER,
    START_MINUS_ONE,
    PortalBehaviour,
)
from statussync.models import PortalQuirks, Side

from . import interpret
from .checks import Visit, said
from .findings import NOTE, OK, WARNING

__all__ = [
    "DATETIME_OFFSET_FILTER",
    "MOVE_CHANGES_DATE_MODIFY",
    "ORDER_NOT_FOUND_CODE",
    "PAYMENT_ARRAY_FILTER",
    "START_MINUS_ONE",
    "behaviour_cache_clear",
    "portal_behaviour_cached",
    "portal_quirks_get",
    "portal_quirks_store",
]

# An order id no shop reaches: the highest a signed 32-bit id column holds.
MISSING_ORDER_ID = 2147483647
# How long a process keeps a portal's behaviour before reading it again: every client_for would otherwise
# read the table, and a doctor run elsewhere (the check-again task) shows here within this time.
BEHAVIOUR_CACHE_SECONDS = 60.0
_behaviours: dict[str, tuple[float, PortalBehaviour]] = {}


def portal_quirks_get(*, portal: str) -> dict[str, Any]:
    """What doctor last found out about `portal` ('cms' or 'crm'): {name: answer}; a name is absent until
    probed."""
    row = PortalQuirks.objects.filter(portal=portal).values_list("values", flat=True).first()
    return dict(row or {})


@transaction.atomic
def portal_quirks_store(*, portal: str, found: dict[str, Any]) -> dict[str, Any]:
    """Add what a run found to what was known (a point not probed this time keeps its last answer)."""
    row, _ = PortalQuirks.objects.select_for_update().get_or_create(portal=portal)
    row.values = {**row.values, **found}
    row.save()
    _behaviours.pop(portal, None)
    return dict(row.values)


def portal_behaviour_cached(*, portal: str) -> PortalBehaviour:
    """What the client adapts to on `portal`, from doctor's stored answers; read from the database at most
    once every `BEHAVIOUR_CACHE_SECONDS` per process."""
    now = time.monotonic()
    cached = _behaviours.get(portal)
    if cached is not None and cached[0] > now:
        return cached[1]
    behaviour = PortalBehaviour.from_probed(portal_quirks_get(portal=portal))
    _behaviours[portal] = (now + BEHAVIOUR_CACHE_SECONDS, behaviour)
    return behaviour


def behaviour_cache_clear() -> None:
    """Forget the cached behaviours (tests: a rolled-back row must not outlive its test)."""
    _behaviours.clear()


def offset_time(moment: datetime) -> str:
    """The documented filter form, whole seconds with an offset: 2026-12-07T15:04:05+03:00
    [docs/bitrix.md "Parameter encoding"]."""
    return timezone.localtime(moment).replace(microsecond=0).isoformat()


def shop_quirks_probe(visit: Visit) -> dict[str, Any]:
    """The shop's points: `start=-1`, the array filter of payments, the not-found code, the datetime form."""
    client = visit.clients[Side.CMS]
    found: dict[str, Any] = {}
    try:
        client.call("sale.order.list", {"select": ["id"], "order": {"id": "asc"}, "start": -1})
    except BitrixError as error:
        found[START_MINUS_ONE] = False
        visit.add("quirks", Side.CMS, NOTE, "start_minus_one_refused", error=said(error))
    else:
        found[START_MINUS_ONE] = True
        visit.add("quirks", Side.CMS, OK, "start_minus_one_ok")
    _payment_filter_probe(visit, found)
    try:
        client.call("sale.order.get", {"id": MISSING_ORDER_ID})
    except BitrixError as error:
        if isinstance(error, PermanentError) and error.code:
            # Only a refusal of this request names "missing"; a busy or refusing portal says nothing of it.
            found[ORDER_NOT_FOUND_CODE] = error.code
        known = isinstance(error, NotFoundError) or interpret.not_found_code_known(error)
        level, code = (OK, "not_found_code_known") if known else (NOTE, "not_found_code_unknown")
        visit.add("quirks", Side.CMS, level, code, error_code=error.code or str(error.http_status))
    found[DATETIME_OFFSET_FILTER] = _datetime_probe(
        visit, Side.CMS, "sale.order.list", "dateUpdate", "orders"
    )
    return found


def crm_quirks_probe(visit: Visit) -> dict[str, Any]:
    """The CRM's point that a read can settle: the datetime form."""
    return {DATETIME_OFFSET_FILTER: _datetime_probe(visit, Side.CRM, "crm.deal.list", "DATE_MODIFY", None)}


def _payment_filter_probe(visit: Visit, found: dict[str, Any]) -> None:
    """The newest two payments read back by `{"=id": [ids]}`, the form the sync reads payments with
    (`portals.payments_read`): a row of another payment means the filter was ignored."""
    client = visit.clients[Side.CMS]
    try:
        newest = interpret.rows_of(
            client.result("sale.payment.list", {"select": ["id"], "order": {"id": "desc"}, "start": 0}),
            "payments",
        )[:2]
    except BitrixError:
        newest = []
    ids = [str(row.get("id")) for row in newest if row.get("id")]
    if not ids:
        visit.add("quirks", Side.CMS, NOTE, "quirk_unprobed", quirk=PAYMENT_ARRAY_FILTER, why="no_payments")
        return
    try:
        rows = interpret.rows_of(
            client.result("sale.payment.list", {"filter": {"=id": ids}, "select": ["id", "orderId"]}),
            "payments",
        )
    except BitrixError as error:
        found[PAYMENT_ARRAY_FILTER] = "refused"
        visit.add("quirks", Side.CMS, NOTE, "payment_filter_refused", error=said(error))
        return
    if interpret.payment_filter_honoured(rows, payment_ids=ids):
        found[PAYMENT_ARRAY_FILTER] = "ok"
        visit.add("quirks", Side.CMS, OK, "payment_filter_ok")
    else:
        found[PAYMENT_ARRAY_FILTER] = "ignored"
        visit.add("quirks", Side.CMS, NOTE, "payment_filter_ignored")


def _datetime_probe(visit: Visit, side: str, method: str, field: str, items_key: str | None) -> str:
    """A filter "changed after tomorrow" must answer no row: rows mean the filter was ignored (or misread).
    Reconciliation's change feeds use it [docs/bitrix.md "Reconciliation"]; without it they read newest first,
    slower, so a portal that does not honour it is a warning."""
    example = offset_time(timezone.now() + timedelta(days=1))
    params = {"filter": {f">{field}": example}, "select": ["ID" if side == Side.CRM else "id"], "start": 0}
    try:
        rows = interpret.rows_of(visit.clients[side].result(method, params), items_key)
    except BitrixError as error:
        visit.add(
            "quirks",
            side,
            WARNING,
            "datetime_filter_refused",
            method=method,
            example=example,
            error=said(error),
        )
        return "refused"
    if rows:
        visit.add("quirks", side, WARNING, "datetime_filter_ignored", method=method, example=example)
        return "ignored"
    visit.add("quirks", side, OK, "datetime_filter_ok", method=method, example=example)
    return "ok"

"""Pure readings of the portals' answers: what a documented response shape means for bxsync. No I/O.

Each function takes what a method answered (its `result`, or the error bxsync's client raised) and returns
plain values or findings; tests/doctor/test_interpret.py holds a table of documented shapes for each,
quoting the page of the REST documentation it comes from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from django.utils.dateparse import parse_datetime

from statussync.bitrix import BitrixError, NotFoundError, classify_error

# What bxsync's webhooks need [docs/bitrix.md "Calling the REST API"].
SCOPE_NEEDED = {"cms": "sale", "crm": "crm"}
# The events bxsync asks for (README "Connect real portals"); applications also get ONCRMDEALMOVETOCATEGORY.
EVENTS_NEEDED = {
    "cms": ("ONSALEORDERSAVED", "ONPAYMENTENTITYSAVED", "ONORDERDELETED"),
    "crm": ("ONCRMDEALUPDATE", "ONCRMDEALADD", "ONCRMDEALDELETE"),
}
# Field types that hold an order id as it is (api-reference/crm/deals/crm-deal-fields.md: "string",
# "integer", "double", ...).
FIELD_TYPES_OK = ("string",)
FIELD_TYPES_WORKABLE = ("integer", "double")


def scopes_missing(result: Any, *, needed: str) -> tuple[bool, list[str]]:
    """Whether `needed` is absent from a `scope` answer, and the scopes it lists.

    `scope` answers a list of scope names (api-reference/common/system/scope.md)."""
    scopes = [str(s) for s in result] if isinstance(result, list) else []
    return needed not in scopes, scopes


def is_admin(result: Any) -> bool:
    """`user.admin` answers true or false (api-reference/common/users/user-admin.md)."""
    return result is True or str(result).lower() in ("true", "1", "y")


@dataclass(frozen=True)
class Plan:
    """A plan's REST limits: the leaky bucket's drain per second and size [docs/bitrix.md "Limits"]."""

    license: str
    rate: float
    burst: int


def plan_of(result: Any) -> Plan | None:
    """The plan `app.info` names (`LICENSE` "ru_pro100", `LICENSE_FAMILY` "ent" for Enterprise,
    api-reference/common/system/app-info.md), with its limits: Enterprise 5 a second and 250 at once,
    every other plan 2 and 50 (settings/performance/limits.md). None when the answer names no plan."""
    if not isinstance(result, Mapping) or not result.get("LICENSE"):
        return None
    license_ = str(result["LICENSE"])
    family = str(result.get("LICENSE_FAMILY") or license_.split("_", 1)[-1])
    if family.startswith("ent"):
        return Plan(license_, 5.0, 250)
    return Plan(license_, 2.0, 50)


def feature_available(result: Any) -> bool:
    """`feature.get` answers {"value": "Y"|"N"} (api-reference/common/system/feature-get.md)."""
    return isinstance(result, Mapping) and str(result.get("value", "")).upper() == "Y"


@dataclass(frozen=True)
class FieldVerdict:
    """What `crm.deal.fields` says about the deal order field: 'ok', 'missing', 'multiple' or 'type'."""

    state: str
    type: str = ""


def order_field_verdict(result: Any, *, field: str) -> FieldVerdict:
    """The deal order field in a `crm.deal.fields` answer: {name: {type, isMultiple, ...}}
    (api-reference/crm/deals/crm-deal-fields.md). A single-value string is what bxsync writes and filters by;
    an integer or double holds numeric ids, so it is only a warning."""
    described = result.get(field) if isinstance(result, Mapping) else None
    if not isinstance(described, Mapping):
        return FieldVerdict("missing")
    kind = str(described.get("type") or "")
    if described.get("isMultiple") in (True, "Y", "true", 1):
        return FieldVerdict("multiple", kind)
    if kind in FIELD_TYPES_OK:
        return FieldVerdict("ok", kind)
    return FieldVerdict("type", kind)


def server_clock_offset(result: Any, *, sent: datetime, received: datetime) -> float | None:
    """Seconds the portal's clock is ahead of ours (negative: behind), from a `server.time` answer
    ("2024-08-05T09:02:13+00:00", api-reference/common/system/server-time.md) and when we sent the call and
    got its answer: the answer's time is compared with the middle of the two. None when it is no such time."""
    when = parse_datetime(result) if isinstance(result, str) else None
    if when is None or when.tzinfo is None:
        return None
    middle = sent + (received - sent) / 2
    return (when - middle).total_seconds()


def clock_outside(offset: float, *, tolerance: float) -> bool:
    """Whether an offset counts as skew: Bitrix gives times to the second, so one second is noise."""
    return abs(offset) > max(tolerance, 1.0)


def events_bound(result: Any, *, needed: Iterable[str]) -> list[str]:
    """The needed events an `event.get` answer lacks: [{"event", "handler", "auth_type", "offline"}]
    (api-reference/events/event-get.md; event names are upper case)."""
    bound = {str(row.get("event", "")).upper() for row in result} if isinstance(result, list) else set()
    return [name for name in needed if name.upper() not in bound]


def is_wrong_auth_type(error: BitrixError) -> bool:
    """A method only applications may call, called through a webhook (WRONG_AUTH_TYPE)."""
    return error.code.upper() == "WRONG_AUTH_TYPE"


def not_found_code_known(error: BitrixError) -> bool:
    """Whether bxsync's client reads this `sale.order.get` error as "the order does not exist": the page shows
    200540400001 in its example and lists 201240400001 (api-reference/sale/order/sale-order-get.md)."""
    again = classify_error(
        portal=error.portal,
        method=error.method,
        http_status=error.http_status,
        code=error.code,
        description=error.description,
    )
    return isinstance(again, NotFoundError)


def rows_of(result: Any, key: str | None) -> list[dict[str, Any]]:
    """A list answer's rows: a bare list (crm.*), or under `key` (sale.*: {"orders": [...]})."""
    if key is not None and isinstance(result, Mapping):
        result = result.get(key)
    # The rows are JSON objects: Mapping is what the test narrows to, dicts are what they are.
    return (
        cast(list[dict[str, Any]], [r for r in result if isinstance(r, Mapping)])
        if isinstance(result, list)
        else []
    )


def payment_filter_honoured(rows: list[dict[str, Any]], *, payment_ids: list[str]) -> bool:
    """Whether a `sale.payment.list` answer to `{"=id": [ids]}` kept to those payments, which exist (rows
    carry `id`; `=` "works with arrays too", api-reference/sale/payment/sale-payment-list.md): no row, or a
    row of another payment, means the filter was not honoured."""
    return bool(rows) and all(str(row.get("id")) in payment_ids for row in rows)


def paid_stage_reachable(
    *, stage_order: list[str], paid_stage: str, awaiting_stages: Mapping[str, str]
) -> tuple[str, str] | None:
    """The first (status, stage) whose stage is not before the paid stage in the pipeline's SORT order, or
    None when a payment can move a deal from every awaiting-payment status's stage: the engine moves a paid
    order's deal only from a stage before the paid one (`engine.PipelineMap.reached`)."""
    if paid_stage not in stage_order:
        return None
    for status, stage in sorted(awaiting_stages.items()):
        if stage in stage_order and stage_order.index(stage) >= stage_order.index(paid_stage):
            return status, stage
    return None

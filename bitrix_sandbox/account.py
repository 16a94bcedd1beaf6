"""Who the inbound webhook is and how the portal is set up: what ``bitrix doctor`` checks and probes.

The system methods every portal answers (``scope``, ``server.time``, ``feature.get``, ``app.info``,
``user.admin``, ``event.get``) and the switches that make each doctor finding happen:

- ``scopes``: the scopes ticked for the webhook; a ``crm.*``/``sale.*`` method outside them answers
  ``403 insufficient_scope`` [docs/bitrix.md "Errors"] (``api-reference/common/system/scope.md``);
- ``admin``: whether the webhook's user is an administrator; the ``sale.*`` methods need one and answer
  ``400 200040300010`` otherwise (``api-reference/sale/order/sale-order-list.md``);
- ``license``: the plan ``app.info`` names (``api-reference/common/system/app-info.md``), ``""`` when the
  portal does not answer ``app.info`` through a webhook;
- ``order_field_listed``/``order_field_type``: the deal order field in ``crm.deal.fields``
  (``api-reference/crm/deals/crm-deal-fields.md``);
- ``deleted_stages``: stages ``crm.status.list`` no longer lists;
- ``clock_skew``: seconds the portal's clock is off (``server.time`` and every date it writes);
- the undocumented points, each with the answer a portal might give: ``start_minus_one`` (``ok``/``error``),
  ``payment_array_filter`` (``ok``/``ignored``/``error``), ``order_not_found_code``,
  ``datetime_offset_filter`` (``ok``/``ignored``/``error``), ``move_changes_date_modify`` (bool).

``event.get`` answers ``WRONG_AUTH_TYPE`` to a webhook: it works only for applications
(``api-reference/events/event-get.md``; the code is the one other application-only methods document).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .rest import CallContext, MethodResult, RestError, lower_keys, truthy

if TYPE_CHECKING:
    from .rest import Portal

QUIRK_ANSWERS = {
    "start_minus_one": ("ok", "error"),
    "payment_array_filter": ("ok", "ignored", "error"),
    "datetime_offset_filter": ("ok", "ignored", "error"),
}
# A filter value in the documented datetime form with an offset, e.g. 2026-12-07T15:04:05+03:00.
_DATETIME_WITH_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")


@dataclass
class AccountSettings:
    """The switches above; ``None`` scopes: the portal's own (``sale`` on the shop, ``crm`` on the CRM)."""

    scopes: tuple[str, ...] | None = None
    admin: bool = True
    license: str = "ru_pro100"
    offline_events: bool = True
    order_field_listed: bool = True
    order_field_type: str = "string"
    order_field_multiple: bool = False
    deleted_stages: tuple[str, ...] = ()
    clock_skew: float = 0.0
    start_minus_one: str = "ok"
    payment_array_filter: str = "ok"
    order_not_found_code: int = 201240400001  # sale.order.get's table; its example says 200540400001
    datetime_offset_filter: str = "ok"
    move_changes_date_modify: bool = True


ACCOUNT_NAMES = frozenset(f.name for f in fields(AccountSettings))
_OWN_SCOPES = {"shop": ("sale",), "crm": ("crm",)}


def _converted(name: str, value: Any) -> Any:
    if name in ("scopes", "deleted_stages"):
        if value is None:
            return None if name == "scopes" else ()
        return tuple(str(v) for v in ([value] if isinstance(value, str) else value))
    if name in ("admin", "offline_events", "order_field_listed", "order_field_multiple"):
        return truthy(value)
    if name == "move_changes_date_modify":
        return truthy(value)
    if name in QUIRK_ANSWERS:
        if value not in QUIRK_ANSWERS[name]:
            raise ValueError(f"{name} must be one of {', '.join(QUIRK_ANSWERS[name])}")
        return value
    if name == "order_not_found_code":
        return int(value)
    if name == "clock_skew":
        return float(value)
    return str(value)


class Account:
    """One portal's ``AccountSettings``, the system methods, and the refusals they cause."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self.settings = AccountSettings()

    def set(self, **changes: Any) -> dict[str, Any]:
        """Change switches; unknown names raise ValueError. Returns them all."""
        unknown = set(changes) - ACCOUNT_NAMES
        if unknown:
            raise ValueError(f"unknown account switch(es): {', '.join(sorted(unknown))}")
        self.settings = replace(self.settings, **{k: _converted(k, v) for k, v in changes.items()})
        if "clock_skew" in changes:
            self.portal.clock.offset = timedelta(seconds=self.settings.clock_skew)
        return self.snapshot()

    def reset(self) -> None:
        """Back to a healthy portal."""
        self.settings = AccountSettings()

    def snapshot(self) -> dict[str, Any]:
        """The switches as JSON."""
        data = asdict(self.settings)
        data["scopes"] = list(self.scopes)
        data["deleted_stages"] = list(self.settings.deleted_stages)
        return data

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes the webhook has."""
        if self.settings.scopes is not None:
            return self.settings.scopes
        return _OWN_SCOPES.get(self.portal.kind, ())

    # -- what a call meets before its method runs ------------------------------------------------------------

    def admit(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Refuse a call the webhook may not make (raise ``RestError``), or return the params the portal
        acts on (a portal that ignores a filter drops it)."""
        scope = method.split(".", 1)[0]
        if scope in ("crm", "sale") and scope not in self.scopes:
            raise RestError(
                403, "insufficient_scope", "The request requires higher privileges than provided."
            )
        if scope == "sale" and not self.settings.admin:
            raise RestError(400, 200040300010, "Insufficient permissions to read orders")
        s = self.settings
        if (
            method == "sale.order.list"
            and s.start_minus_one == "error"
            and str(_param(params, "start")) == "-1"
        ):
            raise RestError(400, 0, "start: wrong value")
        if method == "sale.payment.list" and _has_array(params):
            # `=id` as bxsync reads payments, or `orderId`: an array in any field of the filter.
            if s.payment_array_filter == "error":
                raise RestError(400, 0, "filter: wrong value")
            if s.payment_array_filter == "ignored":
                params = _without_filter(params, lambda key, value: isinstance(value, list | tuple))
        if method in ("crm.deal.list", "sale.order.list") and _has_offset_datetime(params):
            if s.datetime_offset_filter == "error":
                raise RestError(400, "", "Invalid date format in filter")
            if s.datetime_offset_filter == "ignored":
                params = _without_filter(params, lambda key, value: _is_offset_datetime(value))
        return params

    # -- system methods --------------------------------------------------------------------------------------

    def register(self) -> None:
        """Expose the system methods on the portal."""
        p = self.portal
        p.register("scope", self._scope)
        p.register("server.time", self._server_time)
        p.register("feature.get", self._feature_get)
        p.register("app.info", self._app_info)
        p.register("user.admin", self._user_admin)
        p.register("event.get", self._event_get)

    def _scope(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        return MethodResult(list(self.scopes))

    def _server_time(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        return MethodResult(self.portal.clock.now_iso())

    def _feature_get(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        code = lower_keys(params).get("code")
        if not code:
            raise RestError(400, "CODE_EMPTY", "CODE can't be empty")
        value = self.settings.offline_events if code == "rest_offline_extended" else False
        return MethodResult({"value": "Y" if value else "N"})

    def _app_info(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        license_ = self.settings.license
        if not license_:
            # Sandbox choice: what app.info tells a webhook is not documented; here, nothing.
            raise RestError(401, "NO_AUTH_FOUND", "Application not found")
        family = re.sub(r"\d+$", "", license_.split("_", 1)[-1])
        return MethodResult(
            {
                "ID": 0,
                "CODE": "",
                "VERSION": 1,
                "STATUS": "L",
                "INSTALLED": True,
                "PAYMENT_EXPIRED": "N",
                "DAYS": None,
                "LANGUAGE_ID": "ru",
                "LICENSE": license_,
                "LICENSE_TYPE": license_.split("_", 1)[-1],
                "LICENSE_FAMILY": family,
            }
        )

    def _user_admin(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        return MethodResult(self.settings.admin)

    def _event_get(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        raise RestError(400, "WRONG_AUTH_TYPE", "Current authorization type is denied for this method")


def _param(params: dict[str, Any], name: str) -> Any:
    return lower_keys(params).get(name)


def _filter(params: dict[str, Any]) -> dict[str, Any]:
    value = _param(params, "filter")
    return value if isinstance(value, dict) else {}


def _has_array(params: dict[str, Any]) -> bool:
    return any(isinstance(value, list | tuple) for value in _filter(params).values())


def _is_offset_datetime(value: Any) -> bool:
    return isinstance(value, str) and bool(_DATETIME_WITH_OFFSET.match(value))


def _has_offset_datetime(params: dict[str, Any]) -> bool:
    return any(_is_offset_datetime(v) for v in _filter(params).values())


def _without_filter(params: dict[str, Any], drop: Any) -> dict[str, Any]:
    kept = {k: v for k, v in _filter(params).items() if not drop(k.lstrip("@=!<>%"), v)}
    out = {k: v for k, v in params.items() if k.lower() != "filter"}
    out["filter"] = kept
    return out

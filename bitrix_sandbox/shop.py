"""Emulated Bitrix online shop (module ``sale``): orders with payments (camelCase fields), statuses, events.

Facts emulated, each with the path of its page in the Bitrix REST docs:
- ``sale.order.get`` → ``result.order`` with ``payments[]``; ``sale.order.list`` → ``result.orders`` +
  ``total`` [docs/bitrix.md "The shop"];
- ``sale.order.update`` → ``result.order``; a status change sets ``dateStatus`` and ``empStatusId`` = the
  acting user, i.e. the webhook user for REST writes [docs/bitrix.md "The shop"];
- numeric error codes: 200540400001 "order does not exist" (update, delete), 201240400001 "Order not found"
  (``sale.order.get``'s table; its example shows the former: api-reference/sale/order/sale-order-get.md),
  200640400001 "payment does not exist", 100 missing parameter [docs/bitrix.md "Errors"];
- events: ONSALEORDERSAVED carries ID, XML_ID, ACTION=save; ONPAYMENTENTITYSAVED carries the *payment* id;
  ONORDERDELETED the order id [docs/bitrix.md "Events"];
- paying an order saves the order too (``payed`` changes), so a payment gives ONPAYMENTENTITYSAVED and
  ONSALEORDERSAVED; with ``status_on_paid`` the status changes in the same save [docs/bitrix.md "The shop"].

Statuses: a portal's statuses are its own; read them with ``sale.status.list``. The documented defaults
are N (accepted, awaiting payment), S (shipped), P (paid), D (cancelled), F (completed) and the delivery
statuses DN, DD, DF [docs/bitrix.md "The shop"]. The sandbox keeps N, P and F as
documented but uses D for "handed to delivery" and C for "cancelled", the letters of the mapping examples in
README and docs/; F is the kernel's final status, where ``status_on_paid`` does not apply. Names come in
Russian and English (``sale.statuslang.list``, ``lid`` ``ru``/``en``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .filters import FieldTypes, FilterDateError, filter_rows, order_rows, paginate
from .rest import CallContext, MethodResult, Portal, PortalConfig, RestError, lower_keys

# (id, type, sort, name, color, notify)
STATUSES: tuple[tuple[str, str, int, str, str, str], ...] = (
    ("N", "O", 10, "Принят, ожидается оплата", "#BEEDF1", "Y"),
    ("P", "O", 20, "Оплачен, формируется к отправке", "#2FC6F6", "Y"),
    ("D", "O", 30, "Передан в службу доставки", "#FFA900", "Y"),
    ("F", "O", 200, "Выполнен", "#7BD500", "Y"),
    ("C", "O", 210, "Отменён", "#FF5752", "Y"),
    ("DN", "D", 10, "Ожидает обработки", "#BEEDF1", "N"),
    ("DF", "D", 20, "Отгружен", "#7BD500", "N"),
)
FINAL_STATUS = "F"
# English names, the ``en`` rows of sale.statuslang.list (the Russian ones are in STATUSES).
STATUS_NAMES_EN = {
    "N": "Accepted, awaiting payment",
    "P": "Paid, preparing for shipment",
    "D": "Handed to delivery",
    "F": "Completed",
    "C": "Cancelled",
    "DN": "Awaiting processing",
    "DF": "Shipped",
}
STATUS_LANGS = ("ru", "en")

ORDER_TYPES: FieldTypes = {
    "id": "int",
    "accountNumber": "str",
    "lid": "str",
    "personTypeId": "int",
    "statusId": "str",
    "dateStatus": "datetime",
    "empStatusId": "int",
    "payed": "str",
    "canceled": "str",
    "dateCanceled": "datetime",
    "empCanceledId": "int",
    "reasonCanceled": "str",
    "dateInsert": "datetime",
    "dateUpdate": "datetime",
    "xmlId": "str",
    "price": "float",
    "currency": "str",
    "userId": "int",
    "responsibleId": "int",
    "comments": "str",
    "marked": "str",
    "deducted": "str",
    "version": "int",
}
PAYMENT_TYPES: FieldTypes = {
    "id": "int",
    "orderId": "int",
    "accountNumber": "str",
    "paid": "str",
    "datePaid": "datetime",
    "empPaidId": "int",
    "paySystemId": "int",
    "paySystemName": "str",
    "sum": "float",
    "currency": "str",
    "isReturn": "str",
    "xmlId": "str",
    "dateBill": "datetime",
}
STATUS_TYPES: FieldTypes = {
    "id": "str",
    "type": "str",
    "notify": "str",
    "sort": "int",
    "color": "str",
    "xmlId": "str",
}

ORDER_NOT_FOUND = RestError(400, 200540400001, "order does not exist")
# api-reference/sale/order/sale-order-get.md "Possible Error Codes": get's own code for a missing order.
ORDER_GET_NOT_FOUND = RestError(400, 201240400001, "Order not found")
PAYMENT_NOT_FOUND = RestError(400, 200640400001, "payment does not exist")

SHOP_EVENTS = frozenset(
    {"ONSALEORDERSAVED", "ONORDERENTITYSAVED", "ONPAYMENTENTITYSAVED", "ONORDERDELETED", "ONPAYMENTDELETED"}
)
# What bxsync subscribes to (README); the others are emitted but count as "unsubscribed".
SHOP_DEFAULT_SUBSCRIBED = frozenset({"ONSALEORDERSAVED", "ONPAYMENTENTITYSAVED", "ONORDERDELETED"})
SHOP_WRITE_METHODS = frozenset(
    {"sale.order.update", "sale.order.add", "sale.order.delete", "sale.payment.update"}
)


@dataclass
class ShopConfig(PortalConfig):
    """Shop settings: ``status_on_paid`` is the kernel option applied when an order gets paid (None = off)."""

    status_on_paid: str | None = "P"
    # Separate id ranges so a client mixing up payment and order ids fails loudly.
    first_order_id: int = 1
    first_payment_id: int = 1001
    pay_system_id: int = 6
    pay_system_name: str = "Банковская карта"


class ShopPortal(Portal):
    """Orders, payments and statuses, with REST methods and human actions."""

    kind = "shop"
    EVENT_NAMES = SHOP_EVENTS
    DEFAULT_SUBSCRIBED = SHOP_DEFAULT_SUBSCRIBED
    WRITE_METHODS = SHOP_WRITE_METHODS

    def __init__(self, config: ShopConfig | None = None, seed: int | str = 0) -> None:
        self.shop_config = config or ShopConfig()
        self.orders: dict[int, dict[str, Any]] = {}
        self.payments: dict[int, dict[str, Any]] = {}
        self._order_payments: dict[int, list[int]] = {}  # order id -> payment ids
        self._next_order_id = self.shop_config.first_order_id
        self._next_payment_id = self.shop_config.first_payment_id
        self.statuses = {s[0]: s for s in STATUSES}
        super().__init__(self.shop_config, seed)

    # -- state readers ---------------------------------------------------------------------------------------

    def _full_order(self, order_id: int) -> dict[str, Any] | None:
        order = self.orders.get(order_id)
        if order is None:
            return None
        full = dict(order)  # rows are flat: a shallow copy is a full copy
        full["payments"] = [dict(p) for p in self._payments_of(order_id)]
        full.update(
            {"basketItems": [], "clients": [], "propertyValues": [], "shipments": [], "tradeBindings": []}
        )
        return full

    def _payments_of(self, order_id: int) -> list[dict[str, Any]]:
        return [self.payments[pid] for pid in self._order_payments.get(order_id, [])]

    def get_order(self, order_id: int) -> dict[str, Any] | None:
        """A copy of the order as ``sale.order.get`` returns it (with ``payments``), or None."""
        with self.lock:
            return self._full_order(int(order_id))

    def get_payment(self, payment_id: int) -> dict[str, Any] | None:
        """A copy of the payment, or None."""
        with self.lock:
            payment = self.payments.get(int(payment_id))
            return copy.deepcopy(payment) if payment is not None else None

    def list_orders(self, predicate: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        """Copies of all orders with payments (optionally filtered), by id."""
        with self.lock:
            rows = [self._full_order(order_id) for order_id in sorted(self.orders)]
        return [o for o in rows if o is not None and (predicate is None or predicate(o))]

    def order_statuses(self) -> list[str]:
        """Order status ids (type O) in sort order."""
        return [s[0] for s in sorted(STATUSES, key=lambda s: s[2]) if s[1] == "O"]

    # -- domain operations -----------------------------------------------------------------------------------

    def _emit_order_saved(self, order: dict[str, Any]) -> None:
        # [docs/bitrix.md "Events"] FIELDS: ID, XML_ID, ACTION=save
        self.events.emit("ONORDERENTITYSAVED", {"ID": order["id"]})
        self.events.emit("ONSALEORDERSAVED", {"ID": order["id"], "XML_ID": order["xmlId"], "ACTION": "save"})

    def _check_status(self, status_id: Any) -> str:
        status = self.statuses.get(str(status_id))
        if status is None or status[1] != "O":
            raise ValueError(f"status is not exists: {status_id!r}")
        return status[0]

    def add_order(self, fields: dict[str, Any], *, actor: int | None, source: str, emit: bool = True) -> int:
        """Create an order with one unpaid payment of the full price (the sandbox's checkout)."""
        with self.lock:
            status_id = self._check_status(fields.get("statusId") or "N")
            order_id = self._next_order_id
            self._next_order_id += 1
            now = self.clock.now_iso()
            price = round(float(fields.get("price") or 1000), 2)
            currency = str(fields.get("currency") or "RUB")
            order: dict[str, Any] = {
                "id": order_id,
                "accountNumber": str(order_id),
                "lid": str(fields.get("lid") or "s1"),
                "personTypeId": int(fields.get("personTypeId") or 1),
                "statusId": status_id,
                "statusXmlId": "",
                "dateStatus": now,
                "empStatusId": actor,
                "payed": "N",
                "canceled": "N",
                "dateCanceled": None,
                "empCanceledId": None,
                "reasonCanceled": "",
                "dateInsert": now,
                "dateUpdate": now,
                "xmlId": str(fields.get("xmlId") or f"bx_{order_id:013x}"),
                "price": price,
                "discountValue": 0,
                "taxValue": 0,
                "currency": currency,
                "userId": int(fields.get("userId") or 1),
                "responsibleId": int(fields.get("responsibleId") or 1),
                "companyId": 0,
                "comments": str(fields.get("comments") or ""),
                "userDescription": "",
                "marked": "N",
                "deducted": "N",
                "externalOrder": "N",
                "id1c": "",
                "version1c": "",
                "updated1c": "N",
                "version": 1,
            }
            self.orders[order_id] = order
            payment_id = self._next_payment_id
            self._next_payment_id += 1
            self._order_payments[order_id] = [payment_id]
            self.payments[payment_id] = {
                "id": payment_id,
                "orderId": order_id,
                "accountNumber": f"{order_id}/1",
                "paid": "N",
                "datePaid": None,
                "empPaidId": None,
                "paySystemId": self.shop_config.pay_system_id,
                "paySystemName": self.shop_config.pay_system_name,
                "paySystemIsCash": "N",
                "paySystemXmlId": "",
                "sum": price,
                "currency": currency,
                "isReturn": "N",
                "psStatus": "",
                "psStatusCode": "",
                "psSum": None,
                "xmlId": f"bx_{payment_id:013x}",
                "dateBill": now,
                "comments": "",
                "marked": "N",
                "externalPayment": "N",
            }
            self.count_write(source, "sale.order.add")
            if emit:
                self.events.emit("ONPAYMENTENTITYSAVED", {"ID": payment_id})
                self._emit_order_saved(order)
            return order_id

    def update_order(
        self, order_id: int, fields: dict[str, Any], *, actor: int | None, source: str
    ) -> dict[str, Any]:
        """Apply ``sale.order.update`` semantics; returns the changed fields. Unknown status → ValueError."""
        with self.lock:
            order = self.orders.get(int(order_id))
            if order is None:
                raise KeyError(order_id)
            now = self.clock.now_iso()
            changed: dict[str, Any] = {}
            if "statusId" in fields:
                status_id = self._check_status(fields["statusId"])
                if status_id != order["statusId"]:
                    changed["statusId"] = status_id
                    changed["dateStatus"] = now
                    # [docs/bitrix.md "The shop"] EMP_STATUS_ID = the current user (webhook user over REST).
                    explicit = fields.get("empStatusId")
                    changed["empStatusId"] = int(explicit) if explicit not in (None, "") else actor
            if "canceled" in fields:
                canceled = "Y" if str(fields["canceled"]).upper() == "Y" else "N"
                if canceled != order["canceled"]:
                    changed.update(
                        canceled=canceled,
                        dateCanceled=now if canceled == "Y" else None,
                        empCanceledId=actor if canceled == "Y" else None,
                    )
            for name in ("reasonCanceled", "comments", "userDescription", "xmlId", "marked"):
                if name in fields and str(fields[name]) != order.get(name):
                    changed[name] = str(fields[name])
            if "responsibleId" in fields and int(fields["responsibleId"]) != order["responsibleId"]:
                changed["responsibleId"] = int(fields["responsibleId"])
            if changed:
                order.update(changed)
                order["dateUpdate"] = now
                order["version"] += 1
            if source == "rest" or changed:
                self.count_write(source, "sale.order.update", applied=bool(changed))
            if changed or self.config.event_on_noop_update:
                self._emit_order_saved(order)
            return changed

    def set_payment_paid(
        self, payment_id: int, paid: bool, *, actor: int | None, source: str
    ) -> dict[str, Any]:
        """Mark a payment (un)paid, recompute ``payed``, apply ``status_on_paid``, fire events.

        Returns a copy of the order.
        """
        with self.lock:
            payment = self.payments.get(int(payment_id))
            if payment is None:
                raise KeyError(payment_id)
            order = self.orders[payment["orderId"]]
            flag = "Y" if paid else "N"
            if payment["paid"] == flag:
                if source == "rest":
                    self.count_write(source, "sale.payment.update", applied=False)
                return copy.deepcopy(order)
            now = self.clock.now_iso()
            payment["paid"] = flag
            payment["datePaid"] = now if paid else None
            payment["empPaidId"] = actor if paid else None
            order_payments = [p for p in self._payments_of(order["id"]) if p["isReturn"] != "Y"]
            was_payed = order["payed"]
            order["payed"] = "Y" if order_payments and all(p["paid"] == "Y" for p in order_payments) else "N"
            order["dateUpdate"] = now
            order["version"] += 1
            self.count_write(source, "sale.payment.update")
            target = self.shop_config.status_on_paid
            # [docs/bitrix.md "The shop"] on becoming paid: STATUS_ID := status_on_paid unless already final.
            if (
                was_payed == "N"
                and order["payed"] == "Y"
                and target
                and order["statusId"] not in (FINAL_STATUS, target)
            ):
                order["statusId"] = target
                order["dateStatus"] = now
                order["empStatusId"] = actor
                self.count_write(source, "sale.order.update")
            self.events.emit("ONPAYMENTENTITYSAVED", {"ID": int(payment_id)})
            self._emit_order_saved(order)
            return copy.deepcopy(order)

    def delete_order_record(self, order_id: int, *, source: str) -> None:
        """Delete an order and its payments; fires ONORDERDELETED (and ONPAYMENTDELETED per payment)."""
        with self.lock:
            if self.orders.pop(int(order_id), None) is None:
                raise KeyError(order_id)
            for pid in self._order_payments.pop(int(order_id), []):
                del self.payments[pid]
                self.events.emit("ONPAYMENTDELETED", {"ID": pid})
            self.count_write(source, "sale.order.delete")
            self.events.emit("ONORDERDELETED", {"ID": int(order_id)})

    # -- human actions ---------------------------------------------------------------------------------------

    def _actor(self, user_id: int | None) -> int:
        return int(user_id) if user_id is not None else int(self.config.human_user_id)

    def set_order_status(self, order_id: int, status_id: str, user_id: int | None = None) -> dict[str, Any]:
        """Staff changes the status in the admin as user ``user_id``; fires ONSALEORDERSAVED."""
        self.update_order(int(order_id), {"statusId": status_id}, actor=self._actor(user_id), source="human")
        return self.get_order(int(order_id)) or {}

    def cancel_order(self, order_id: int, reason: str = "", user_id: int | None = None) -> dict[str, Any]:
        """Staff sets the order's ``canceled`` flag (the status stays as it is)."""
        self.update_order(
            int(order_id),
            {"canceled": "Y", "reasonCanceled": reason},
            actor=self._actor(user_id),
            source="human",
        )
        return self.get_order(int(order_id)) or {}

    def pay_order(
        self, order_id: int, payment_id: int | None = None, user_id: int | None = None
    ) -> dict[str, Any]:
        """The customer pays online: no staff user, so ``empPaidId``/``empStatusId`` are None or ``user_id``.

        Fires ONPAYMENTENTITYSAVED with the **payment** id, then ONSALEORDERSAVED; applies ``status_on_paid``.
        """
        with self.lock:
            order = self.orders.get(int(order_id))
            if order is None:
                raise KeyError(order_id)
            if payment_id is None:
                payments = self._payments_of(int(order_id))
                unpaid = [p["id"] for p in payments if p["paid"] == "N" and p["isReturn"] != "Y"]
                if not unpaid:
                    raise ValueError(f"order {order_id} has no unpaid payment")
                payment_id = unpaid[0]
            self.set_payment_paid(int(payment_id), True, actor=user_id, source="human")
            return self._full_order(int(order_id)) or {}

    def create_order(
        self,
        price: float | None = None,
        customer_id: int = 1,
        status_id: str = "N",
        emit: bool = True,
    ) -> dict[str, Any]:
        """A customer checks out: a new order (status N by default) with one unpaid payment."""
        fields = {"price": price, "userId": customer_id, "statusId": status_id}
        order_id = self.add_order(fields, actor=None, source="human", emit=emit)
        return self.get_order(order_id) or {}

    def delete_order(self, order_id: int) -> None:
        """Staff deletes the order; fires ONORDERDELETED."""
        self.delete_order_record(int(order_id), source="human")

    def human_actions(self) -> dict[str, Callable[..., Any]]:
        """Actions the control API exposes under ``/_sandbox/human/<name>``."""
        return {
            "set_order_status": self.set_order_status,
            "cancel_order": self.cancel_order,
            "pay_order": self.pay_order,
            "create_order": self.create_order,
            "delete_order": self.delete_order,
        }

    def state(self) -> dict[str, Any]:
        """All orders with their payments, plus the order status ids."""
        return {"orders": self.list_orders(), "statuses": self.order_statuses()}

    def entity(self, kind: str, entity_id: int) -> dict[str, Any] | None:
        """``order`` or ``payment`` by id."""
        if kind == "order":
            return self.get_order(entity_id)
        if kind == "payment":
            return self.get_payment(entity_id)
        return None

    def options(self) -> dict[str, Any]:
        """Behaviour switches: ``event_on_noop_update`` and ``status_on_paid``."""
        return {**super().options(), "status_on_paid": self.shop_config.status_on_paid}

    def set_options(self, **options: Any) -> dict[str, Any]:
        """Also accepts ``status_on_paid`` (a status id, or None to switch the kernel option off)."""
        if "status_on_paid" in options:
            value = options.pop("status_on_paid")
            if value not in (None, ""):
                self._check_status(value)
            self.shop_config.status_on_paid = value or None
        super().set_options(**options)
        return self.options()

    def reset_state(self) -> None:
        """Delete every order and payment silently (ids are not reused)."""
        with self.lock:
            self.orders.clear()
            self.payments.clear()
            self._order_payments.clear()

    # -- REST methods ----------------------------------------------------------------------------------------

    def _register(self) -> None:
        self.register("sale.order.get", self._rest_order_get)
        self.register("sale.order.list", self._rest_order_list)
        self.register("sale.order.update", self._rest_order_update)
        self.register("sale.order.add", self._rest_order_add)
        self.register("sale.order.delete", self._rest_order_delete)
        self.register("sale.payment.get", self._rest_payment_get)
        self.register("sale.payment.list", self._rest_payment_list)
        self.register("sale.payment.update", self._rest_payment_update)
        self.register("sale.status.list", self._rest_status_list)
        self.register("sale.statuslang.list", self._rest_statuslang_list)

    @staticmethod
    def _id(params: dict[str, Any]) -> int:
        try:
            value = int(str(params.get("id")))
        except (TypeError, ValueError):
            value = 0
        if value <= 0:
            # [docs/bitrix.md "Errors"] 100: parameter id is not specified
            raise RestError(400, 100, 'Required parameter "id" is not specified')
        return value

    @staticmethod
    def _select(row: dict[str, Any], select: Any) -> dict[str, Any]:
        if not select:
            return row
        wanted = set(select if isinstance(select, list) else [select])
        return {k: v for k, v in row.items() if k in wanted}

    def _list(
        self,
        rows: Iterable[dict[str, Any]],
        params: dict[str, Any],
        types: FieldTypes,
        default_key: str = "id",
    ) -> tuple[list[dict[str, Any]], int | None, int | None]:
        with self.lock:
            try:
                matched = filter_rows(rows, params.get("filter"), types, self.clock)
            except FilterDateError as exc:
                # api-reference/sale/order/sale-order-list.md "Possible Error Codes": 0, other errors.
                raise RestError(400, 0, str(exc)) from None
            matched = order_rows(matched, params.get("order"), types, self.clock, default_key=default_key)
            page, total, nxt = paginate(matched, params.get("start"))
            # Rows are flat, so a shallow copy is a full copy.
            return [dict(self._select(r, params.get("select"))) for r in page], total, nxt

    def _rest_order_get(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        order = self.get_order(self._id(lower_keys(params)))
        if order is None:
            # Which code a portal gives here is one of the points `bitrix doctor` probes: the page shows
            # 200540400001 in its example and lists 201240400001 (api-reference/sale/order/sale-order-get.md);
            # the table's code by default.
            code = self.account.settings.order_not_found_code
            raise RestError(ORDER_GET_NOT_FOUND.status, code, ORDER_GET_NOT_FOUND.description)
        return MethodResult({"order": order})

    def _rest_order_list(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        params = lower_keys(params)
        page, total, nxt = self._list(self.orders.values(), params, ORDER_TYPES)
        return MethodResult({"orders": page}, total, nxt)

    def _fields(self, params: dict[str, Any]) -> dict[str, Any]:
        fields = params.get("fields")
        if not isinstance(fields, dict) or not fields:
            raise RestError(400, 100, 'Required parameter "fields" is not specified')
        return fields

    def _rest_order_update(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        params = lower_keys(params)
        order_id = self._id(params)
        fields = self._fields(params)
        try:
            self.update_order(order_id, fields, actor=ctx.user_id, source="rest")
        except KeyError:
            raise ORDER_NOT_FOUND from None
        except ValueError as exc:
            raise RestError(400, 0, str(exc)) from None
        with self.lock:
            return MethodResult({"order": copy.deepcopy(self.orders[order_id])})

    def _rest_order_add(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        fields = self._fields(lower_keys(params))
        try:
            order_id = self.add_order(fields, actor=ctx.user_id, source="rest")
        except ValueError as exc:
            raise RestError(400, 0, str(exc)) from None
        with self.lock:
            return MethodResult({"order": copy.deepcopy(self.orders[order_id])})

    def _rest_order_delete(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        try:
            self.delete_order_record(self._id(lower_keys(params)), source="rest")
        except KeyError:
            raise ORDER_NOT_FOUND from None
        return MethodResult(True)

    def _rest_payment_get(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        payment = self.get_payment(self._id(lower_keys(params)))
        if payment is None:
            raise PAYMENT_NOT_FOUND
        return MethodResult({"payment": payment})

    def _rest_payment_list(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        params = lower_keys(params)
        page, total, nxt = self._list(self.payments.values(), params, PAYMENT_TYPES)
        return MethodResult({"payments": page}, total, nxt)

    def _rest_payment_update(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        params = lower_keys(params)
        payment_id = self._id(params)
        fields = self._fields(params)
        try:
            if "paid" in fields:
                paid = str(fields["paid"]).upper() == "Y"
                self.set_payment_paid(payment_id, paid, actor=ctx.user_id, source="rest")
        except KeyError:
            raise PAYMENT_NOT_FOUND from None
        payment = self.get_payment(payment_id)
        if payment is None:
            raise PAYMENT_NOT_FOUND
        return MethodResult({"payment": payment})

    def _status_rows(self) -> list[dict[str, Any]]:
        return [
            {"id": sid, "type": stype, "notify": notify, "sort": sort, "color": color, "xmlId": None}
            for sid, stype, sort, _name, color, notify in STATUSES
        ]

    def _rest_status_list(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        params = lower_keys(params)
        rows = filter_rows(self._status_rows(), params.get("filter"), STATUS_TYPES, self.clock)
        rows = order_rows(
            rows, params.get("order") or {"sort": "asc"}, STATUS_TYPES, self.clock, default_key="id"
        )
        page, total, nxt = paginate(rows, params.get("start"))
        return MethodResult({"statuses": [self._select(r, params.get("select")) for r in page]}, total, nxt)

    def _rest_statuslang_list(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        # [docs/bitrix.md "The shop"] rows {statusId, lid, name,
        # description} in result.statusLangs, filter/order/select/start like the other sale lists.
        params = lower_keys(params)
        rows = [
            {
                "statusId": sid,
                "lid": lid,
                "name": name if lid == "ru" else STATUS_NAMES_EN[sid],
                "description": "",
            }
            for sid, _t, _s, name, _c, _n in STATUSES
            for lid in STATUS_LANGS
        ]
        types: FieldTypes = {"statusId": "str", "lid": "str", "name": "str", "description": "str"}
        page, total, nxt = self._list(rows, params, types, default_key="statusId")
        return MethodResult({"statusLangs": page}, total, nxt)

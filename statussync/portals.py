"""What bxsync reads from and writes to the two portals: REST commands and the parsing of their results
into the engine's states. The HTTP itself is `statussync.bitrix`'s job; this module only knows field names.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils.dateparse import parse_datetime

from statussync.engine import DealState, OrderState
from statussync.models import StageSemantics

Command = tuple[str, dict[str, Any]]

# Bitrix list methods answer 50 rows a page [docs/bitrix.md "Lists"], so a command that
# names entities by id names at most 50.
LIST_PAGE = 50


def deal_order_field() -> str:
    """The deal field that holds the shop order id (BXSYNC_DEAL_ORDER_FIELD)."""
    return settings.BXSYNC_DEAL_ORDER_FIELD


def deal_select() -> list[str]:
    return [
        "ID",
        "STAGE_ID",
        "CATEGORY_ID",
        "STAGE_SEMANTIC_ID",
        "MOVED_TIME",
        "DATE_MODIFY",
        deal_order_field(),
    ]


def deal_get(deal_id: str) -> Command:
    return "crm.deal.get", {"id": deal_id}


@dataclass(frozen=True)
class ListRead:
    """A list command that reads entities named by id (up to LIST_PAGE of them), and how to read its answer:
    where its rows are, and the command for the page after a given row.

    Pages move on by id (`>ID` after the last row seen, ordered by id), not by offset: a row deleted between
    two pages would shift every offset and hide a row of the next page [docs/bitrix.md "Lists"]."""

    method: str
    params: dict[str, Any]
    id_field: str
    items_key: str | None = None  # the sale lists answer {"orders": [...]}; crm.deal.list a bare list

    def command(self) -> Command:
        return self.method, self.params

    def rows(self, result: Any) -> list[dict[str, Any]]:
        """The rows of an answer; an empty PHP array arrives as [] even where an object is documented."""
        if isinstance(result, dict) and self.items_key is not None:
            result = result.get(self.items_key)
        return [row for row in result or [] if isinstance(row, dict)] if isinstance(result, list) else []

    def first(self, result: Any) -> dict[str, Any] | None:
        """The answer's first row, if any."""
        return next(iter(self.rows(result)), None)

    def after(self, row: dict[str, Any]) -> ListRead:
        """The same read for the rows past `row` (in id order)."""
        filters = {**self.params["filter"], f">{self.id_field}": row[self.id_field]}
        return replace(self, params={**self.params, "filter": filters})


def _chunk_check(ids: list[str]) -> list[str]:
    if not 0 < len(ids) <= LIST_PAGE:
        raise ValueError(f"a list command names 1 to {LIST_PAGE} ids, not {len(ids)}")
    return list(ids)


def deals_read(deal_ids: list[str]) -> ListRead:
    """Deals by id: `crm.deal.list` with `filter {"@ID": [...]}` (IN) [docs/bitrix.md "Lists"]. A deal absent
    from the answer does not exist (or the webhook's user may not see it)."""
    return ListRead(
        "crm.deal.list",
        {"filter": {"@ID": _chunk_check(deal_ids)}, "select": deal_select(), "order": {"ID": "ASC"}},
        id_field="ID",
    )


def deals_naming_orders(order_ids: list[str]) -> ListRead:
    """Link discovery: the deals whose order field holds one of these order ids. Several deals may name one
    order, so the answer may run past one page. One order alone is asked as the contract words it
    (docs/contract.md), `{"<field>": order_id}`; several with `@` (IN) [docs/bitrix.md "Lists"]."""
    ids = _chunk_check(order_ids)
    field = deal_order_field()
    condition: dict[str, str | list[str]] = {field: ids[0]} if len(ids) == 1 else {f"@{field}": ids}
    return ListRead(
        "crm.deal.list", {"filter": condition, "select": deal_select(), "order": {"ID": "ASC"}}, id_field="ID"
    )


# What the engine reads of an order [docs/bitrix.md "The shop"].
ORDER_SELECT = ["id", "statusId", "payed", "dateStatus", "dateUpdate"]


def orders_read(order_ids: list[str]) -> ListRead:
    """Orders by id: `sale.order.list` with `filter {"@id": [...]}` (IN), rows in `result.orders`
    [docs/bitrix.md "Lists"]."""
    return ListRead(
        "sale.order.list",
        {"filter": {"@id": _chunk_check(order_ids)}, "select": ORDER_SELECT, "order": {"id": "asc"}},
        id_field="id",
        items_key="orders",
    )


def payments_read(payment_ids: list[str]) -> ListRead:
    """Payments by id, for their order: `sale.payment.list` with `filter {"=id": [...]}`, rows in
    `result.payments`. Its page documents `=` as working with arrays and lists no `@`
    (api-reference/sale/payment/sale-payment-list.md) [docs/bitrix.md "Lists"]."""
    return ListRead(
        "sale.payment.list",
        {"filter": {"=id": _chunk_check(payment_ids)}, "select": ["id", "orderId"], "order": {"id": "asc"}},
        id_field="id",
        items_key="payments",
    )


def row_id(row: dict[str, Any]) -> str:
    """A list row's id as bxsync keeps ids (crm rows say "ID": "37", sale rows "id": 37)."""
    return str(row.get("ID", row.get("id", "")))


def deals_by_ids(deal_ids: list[str]) -> Command:
    """Many deals in one command: `crm.deal.list` with `@ID`, 50 rows a page [docs/bitrix.md "Lists"]."""
    return deals_read(deal_ids).command()


def order_get(order_id: str) -> Command:
    return "sale.order.get", {"id": order_id}


def payment_get(payment_id: str) -> Command:
    return "sale.payment.get", {"id": payment_id}


def order_of_payment(payment_key: str) -> Command:
    """The order of the payment that the command `payment_key` of the same `batch` call read with
    `payment_get`: `sale.order.get` with the id taken from that answer, `$result[key][payment][orderId]`
    (settings/how-to-call-rest-api/batch.md "Linked Calls"; api-reference/sale/payment/sale-payment-get.md
    wraps the payment in "payment") [docs/bitrix.md "Batch"]."""
    return "sale.order.get", {"id": f"$result[{payment_key}][payment][orderId]"}


def deal_at(*, deal_id: str, stage: str, pipeline: int, semantics: str, order_id: str) -> ListRead:
    """The deal, if it still stands where the link's base says: `crm.deal.list` filtered by its id, stage,
    pipeline, stage semantics and order field (exact match, the filter's default; any field crm.deal.fields
    lists may be filtered: api-reference/crm/deals/crm-deal-list.md). No row when it moved on."""
    condition = {
        "ID": deal_id,
        "STAGE_ID": stage,
        "CATEGORY_ID": pipeline,
        "STAGE_SEMANTIC_ID": semantics,
        deal_order_field(): order_id,
    }
    return ListRead("crm.deal.list", {"filter": condition, "select": deal_select()}, id_field="ID")


def first_row_id(key: str) -> str:
    """The id of the first row that the list command `key` of the same `batch` call answered:
    `$result[key][0][ID]` (settings/how-to-call-rest-api/batch.md "Linked Calls", for a list method)."""
    return f"$result[{key}][0][ID]"


def deal_stage_update(deal_id: str, stage: str) -> Command:
    # crm.deal.update only moves a deal within its current pipeline; the engine always maps within the
    # deal's own pipeline [docs/bitrix.md "Deals"]. No Live Feed/history noise.
    return "crm.deal.update", {
        "id": deal_id,
        "fields": {"STAGE_ID": stage},
        "params": {"REGISTER_SONET_EVENT": "N"},
    }


def deal_comment_add(deal_id: str, text: str) -> Command:
    """A comment on the deal's timeline: `fields` in lower case (the only key crm 23.100.0+ accepts), with
    ENTITY_ID, ENTITY_TYPE "deal" and COMMENT
    [https://dev.1c-bitrix.ru/rest_help/crm/timeline/comment/crm_timeline_comment_add.php]."""
    fields = {"ENTITY_ID": deal_id, "ENTITY_TYPE": "deal", "COMMENT": text}
    return "crm.timeline.comment.add", {"fields": fields}


def order_status_update(order_id: str, status: str) -> Command:
    return "sale.order.update", {"id": order_id, "fields": {"statusId": status}}


def stage_list(pipeline: int) -> Command:
    # One dictionary per call: DEAL_STAGE for the default pipeline, DEAL_STAGE_<n> for others
    # [docs/bitrix.md "Stages and pipelines"].
    entity = "DEAL_STAGE" if pipeline == 0 else f"DEAL_STAGE_{pipeline}"
    return "crm.status.list", {"filter": {"ENTITY_ID": entity}, "order": {"SORT": "ASC"}}


def deal_from_rest(row: dict[str, Any]) -> DealState:
    """A crm.deal.get/list row (UPPER_CASE fields) as the engine's DealState."""
    return DealState(
        deal_id=str(row["ID"]),
        stage=str(row.get("STAGE_ID") or ""),
        pipeline=int(row.get("CATEGORY_ID") or 0),
        stage_changed_at=parse_time(row.get("MOVED_TIME")),
        order_id=str(row.get(deal_order_field()) or "").strip(),
        successful=row.get("STAGE_SEMANTIC_ID") == "S",
    )


def order_from_rest(result: dict[str, Any]) -> OrderState:
    """A sale.order.get result ({"order": {...}}, camelCase fields) as the engine's OrderState."""
    order = result.get("order", result)
    return OrderState(
        order_id=str(order["id"]),
        status=str(order.get("statusId") or ""),
        paid=str(order.get("payed", "N")).upper() == "Y",
        status_changed_at=parse_time(order.get("dateStatus")),
    )


def payment_order_id(result: dict[str, Any]) -> str:
    """The order id of a sale.payment.get result ({"payment": {...}})."""
    payment = result.get("payment", result)
    return str(payment.get("orderId") or "")


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 with an offset, e.g. 2024-08-30T14:29:00+02:00 [docs/bitrix.md "Parameter encoding"]."""
    if not value or not isinstance(value, str):
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class PipelineStages:
    """A pipeline's in-progress and success stage ids in the CRM's SORT order, its success stage and its
    failure stages."""

    order: tuple[str, ...] = ()
    success: frozenset[str] = frozenset()
    failure: frozenset[str] = frozenset()

    def knows(self, stage: str) -> bool:
        """Whether the pipeline has `stage` (in progress, success or failure)."""
        return stage in self.order or stage in self.failure


def stage_semantics(row: dict[str, Any]) -> str:
    """What a `crm.status.list` row means, as a StageSemantics letter: "S" success, "F" failure, "P" in
    progress. SEMANTICS is null, "S" or "F"; EXTRA.SEMANTICS says process/success/failure/apology
    [docs/bitrix.md "Stages and pipelines"]. Success is read first, so a row that says both is a success."""
    extra = row["EXTRA"].get("SEMANTICS") if isinstance(row.get("EXTRA"), dict) else None
    if row.get("SEMANTICS") == "S" or extra == "success":
        return StageSemantics.SUCCESS
    if row.get("SEMANTICS") == "F" or extra in ("failure", "apology"):
        return StageSemantics.FAILURE
    return StageSemantics.IN_PROGRESS


def stage_semantics_in(stage: str, *, success: Collection[str], failure: Collection[str]) -> str:
    """`stage`'s StageSemantics letter by a pipeline's success and failure stages as `stage_semantics`
    classified them (success first, as there)."""
    if stage in success:
        return StageSemantics.SUCCESS
    if stage in failure:
        return StageSemantics.FAILURE
    return StageSemantics.IN_PROGRESS


def pipeline_stages_from_rows(rows: list[dict[str, Any]]) -> PipelineStages:
    """A pipeline's stages from its `crm.status.list` rows: in-progress and success stages ordered by SORT
    (failure stages left out, see `engine.PipelineMap.stage_order`), and its success stages. Stage ids are
    read, never derived [docs/bitrix.md "Stages and pipelines"]."""
    ordered = sorted(rows, key=lambda r: int(r.get("SORT") or 0))
    kept = [(str(r["STATUS_ID"]), stage_semantics(r)) for r in ordered]
    return PipelineStages(
        order=tuple(code for code, meaning in kept if meaning != StageSemantics.FAILURE),
        success=frozenset(code for code, meaning in kept if meaning == StageSemantics.SUCCESS),
        failure=frozenset(code for code, meaning in kept if meaning == StageSemantics.FAILURE),
    )

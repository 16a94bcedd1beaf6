"""What bxsync reads from and writes to the two portals: REST commands and the parsing of their results
into the engine's states. The HTTP itself is `statussync.bitrix`'s job; this module only knows field names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils.dateparse import parse_datetime

from statussync.bitrix import BitrixClient, PermanentError, TransientError
from statussync.engine import DealState, OrderState

Command = tuple[str, dict[str, Any]]

# Bitrix list methods answer 50 rows a page [docs/bitrix.md "Lists"], so a command that
# names entities by id names at most 50.
LIST_PAGE = 50

logger = logging.getLogger(__name__)

STAGES_CACHE_SECONDS = 600


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


def deals_by_order(order_id: str) -> Command:
    """Link discovery: the deals whose order field holds this order id (docs/contract.md)."""
    return "crm.deal.list", {"filter": {deal_order_field(): order_id}, "select": deal_select()}


def deals_by_ids(deal_ids: list[str]) -> Command:
    """Many deals in one command: `crm.deal.list` with `@ID`, 50 rows a page [docs/bitrix.md "Lists"]."""
    return "crm.deal.list", {"filter": {"@ID": deal_ids}, "select": deal_select()}


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


def order_get(order_id: str) -> Command:
    return "sale.order.get", {"id": order_id}


def order_status_update(order_id: str, status: str) -> Command:
    return "sale.order.update", {"id": order_id, "fields": {"statusId": status}}


def payment_get(payment_id: str) -> Command:
    return "sale.payment.get", {"id": payment_id}


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
    """A pipeline's in-progress and success stage ids in the CRM's SORT order, and its success stage."""

    order: tuple[str, ...] = ()
    success: frozenset[str] = frozenset()


def pipeline_stages(*, crm: BitrixClient, pipelines: list[int]) -> dict[int, PipelineStages]:
    """Each pipeline's in-progress and success stages in SORT order and its success ("S") stage, read from
    the CRM and cached; stage ids are read, never derived
    [docs/bitrix.md "Stages and pipelines"]."""
    found: dict[int, PipelineStages] = {}
    missing = []
    for pipeline in pipelines:
        cached = cache.get(f"bxsync:pipeline-stages:{pipeline}")
        if cached is None:
            missing.append(pipeline)
        else:
            found[pipeline] = PipelineStages(order=tuple(cached[0]), success=frozenset(cached[1]))
    if missing:
        try:
            batch = crm.batch({f"p{p}": stage_list(p) for p in missing})
        except (PermanentError, TransientError) as exc:
            # The stage list only sharpens payment handling (a deal's own STAGE_SEMANTIC_ID tells the rest);
            # a portal failing it must not stop every sync. Not cached: the next run asks again. Auth errors
            # still stop the run, since every other call would fail the same way.
            logger.warning("could not read deal stages: %s", exc)
            return {**found, **{p: PipelineStages() for p in missing}}
        for pipeline in missing:
            rows = sorted(batch.results.get(f"p{pipeline}") or [], key=lambda r: int(r.get("SORT") or 0))
            order = [str(r["STATUS_ID"]) for r in rows if not _is_failure(r)]
            success = [
                str(r["STATUS_ID"])
                for r in rows
                if r.get("SEMANTICS") == "S" or (r.get("EXTRA") or {}).get("SEMANTICS") == "success"
            ]
            if f"p{pipeline}" not in batch.errors:
                cache.set(f"bxsync:pipeline-stages:{pipeline}", (order, success), STAGES_CACHE_SECONDS)
            found[pipeline] = PipelineStages(order=tuple(order), success=frozenset(success))
    return found


def _is_failure(row: dict[str, Any]) -> bool:
    """A failure stage: SEMANTICS "F" or EXTRA failure/apology [docs/bitrix.md "Stages and pipelines"]."""
    return row.get("SEMANTICS") == "F" or (row.get("EXTRA") or {}).get("SEMANTICS") in ("failure", "apology")

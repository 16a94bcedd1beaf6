"""Doctor's mapping check: every status and stage of the mapping exists on the portals now, every stage of a
mapped pipeline has a rule or bxsync's stated policy for it, and each pipeline's paid stage is reachable.

`statusmap check` judges the mapping against the catalog bxsync stored; this reads the portals themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from statussync import portals
from statussync.bitrix import BitrixError
from statussync.models import Direction, Side

from . import interpret
from .checks import Visit, crm_stages, mapping_document, shop_statuses
from .findings import BLOCKING, NOTE, OK

_TO_CRM = (Direction.BOTH, Direction.TO_CRM)
_TO_CMS = (Direction.BOTH, Direction.TO_CMS)


def mapping_check(visit: Visit) -> None:
    """Compare the stored mapping with what both portals list now."""
    document = mapping_document()
    if not document["pipelines"]:
        visit.add("mapping", "", BLOCKING, "mapping_empty")
        return
    statuses: set[str] | None = None
    stages: dict[int, list[dict[str, Any]]] | None = None
    if Side.CMS in visit.clients:
        try:
            statuses = shop_statuses(visit.clients[Side.CMS])
        except BitrixError:
            statuses = None
        if statuses is not None:
            _statuses_check(visit, document, statuses)
    if Side.CRM in visit.clients:
        try:
            stages = crm_stages(visit.clients[Side.CRM])
        except BitrixError:
            stages = None
        if stages is not None:
            for pipeline in document["pipelines"]:
                _pipeline_check(visit, pipeline, stages, awaiting=set(document["awaiting_payment_statuses"]))
    both_read = statuses is not None and stages is not None
    if both_read and not any(f.check == "mapping" and f.level == BLOCKING for f in visit.findings):
        used_stages = {r["deal_stage"] for p in document["pipelines"] for r in p["rules"]}
        used_statuses = {r["order_status"] for p in document["pipelines"] for r in p["rules"]}
        visit.add("mapping", "", OK, "mapping_ok", statuses=len(used_statuses), stages=len(used_stages))


def _statuses_check(visit: Visit, document: Mapping[str, Any], statuses: set[str]) -> None:
    used = {r["order_status"] for p in document["pipelines"] for r in p["rules"]}
    used |= set(document["awaiting_payment_statuses"])
    for status in sorted(used - statuses):
        visit.add("mapping", Side.CMS, BLOCKING, "status_missing", status=status)


def _pipeline_check(
    visit: Visit, pipeline: dict[str, Any], stages: dict[int, list[dict[str, Any]]], *, awaiting: set[str]
) -> None:
    n = int(pipeline["pipeline"])
    rows = stages.get(n)
    if not rows:
        visit.add("mapping", Side.CRM, BLOCKING, "pipeline_missing", pipeline=n)
        return
    listed = {str(r["STATUS_ID"]) for r in rows}
    rules = pipeline["rules"]
    for stage in sorted({r["deal_stage"] for r in rules} - listed):
        visit.add("mapping", Side.CRM, BLOCKING, "stage_missing", stage=stage, pipeline=n)
    # A stage with no rule towards the shop: a deal moved there is recorded as unmapped, nothing written
    # [docs/contract.md "Behaviour" 6]. The stated policy, said once per pipeline.
    ruled = {r["deal_stage"] for r in rules if r["direction"] in _TO_CMS}
    unruled = [str(r["STATUS_ID"]) for r in sorted(rows, key=lambda r: int(r.get("SORT") or 0))]
    unruled = [code for code in unruled if code not in ruled]
    if unruled:
        visit.add("mapping", Side.CRM, NOTE, "stage_no_rule", pipeline=n, stages=", ".join(unruled))
    _paid_stage_check(visit, pipeline, rows, awaiting=awaiting)


def _paid_stage_check(
    visit: Visit, pipeline: dict[str, Any], rows: list[dict[str, Any]], *, awaiting: set[str]
) -> None:
    n, paid = int(pipeline["pipeline"]), str(pipeline.get("paid_stage") or "")
    by_code = {str(r["STATUS_ID"]): r for r in rows}
    if paid not in by_code:
        visit.add("mapping", Side.CRM, BLOCKING, "paid_stage_missing", pipeline=n, stage=paid or "—")
        return
    if portals.stage_semantics(by_code[paid]) == "F":
        visit.add("mapping", Side.CRM, BLOCKING, "paid_stage_failure", pipeline=n, stage=paid)
        return
    order = list(portals.pipeline_stages_from_rows(rows).order)
    to_crm = {r["order_status"]: r["deal_stage"] for r in pipeline["rules"] if r["direction"] in _TO_CRM}
    stuck = interpret.paid_stage_reachable(
        stage_order=order,
        paid_stage=paid,
        awaiting_stages={s: stage for s, stage in to_crm.items() if s in awaiting},
    )
    if stuck is not None:
        visit.add(
            "mapping",
            Side.CRM,
            BLOCKING,
            "paid_stage_unreachable",
            pipeline=n,
            status=stuck[0],
            from_stage=stuck[1],
            stage=paid,
        )

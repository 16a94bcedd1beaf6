"""Reading the catalog of names from the portals: the shop's order statuses (`sale.status.list`, with their
names from `sale.statusLang.list`) and the CRM's pipelines and stages (`crm.category.list`, then one
`crm.status.list` per pipeline in one `batch`), stored in the database.

This is the catalog's I/O: the admin's button and the hourly schedule call `catalog_refresh`. What the rest
of the code asks of the names (labels, dropdown choices, the validator's snapshot, the sync's stage order)
is in `statussync.mapping.catalog`, which reads only the database.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from statussync import portals
from statussync.bitrix import BitrixError, client_for
from statussync.mapping.catalog import catalog_cache_clear
from statussync.models import CatalogPipeline, CatalogStage, CatalogStatus, Side

logger = logging.getLogger(__name__)

# Deals are CRM entity type 2 [docs/bitrix.md "Stages and pipelines"].
DEAL_ENTITY_TYPE_ID = 2


@dataclass
class CatalogRefreshReport:
    """What a refresh found on each portal, and the portals that failed (their error, never a URL)."""

    statuses: int = 0
    pipelines: int = 0
    stages: int = 0
    gone: int = 0
    errors: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """One sentence for the admin's message."""
        text = _(
            "%(statuses)d shop statuses, %(pipelines)d pipelines with %(stages)d stages read from the portals"
        ) % {"statuses": self.statuses, "pipelines": self.pipelines, "stages": self.stages}
        if self.gone:
            text += "; " + _("%(gone)d no longer there") % {"gone": self.gone}
        return text


def catalog_refresh() -> CatalogRefreshReport:
    """Read the shop's order statuses and the CRM's pipelines and stages, and store their names.

    Each portal is read and stored on its own: a shop that fails leaves the CRM's names refreshed, and the
    failing portal's rows as they were. A code the portal no longer lists keeps its row, marked not present.
    """
    from statussync.health import portal_contact_record

    report = CatalogRefreshReport()
    contacts: dict[str, BitrixError | None] = {}
    try:
        statuses = _shop_statuses_read()
    except BitrixError as exc:
        contacts[Side.CMS] = exc
        report.errors[Side.CMS] = str(exc)  # BitrixError's text never holds the webhook URL
        logger.warning("catalog: could not read the shop's statuses: %s", exc)
    else:
        contacts[Side.CMS] = None
        report.statuses, gone = _statuses_store(statuses)
        report.gone += gone
    try:
        pipelines, stages = _crm_stages_read()
    except BitrixError as exc:
        contacts[Side.CRM] = exc
        report.errors[Side.CRM] = str(exc)
        logger.warning("catalog: could not read the CRM's pipelines: %s", exc)
    else:
        contacts[Side.CRM] = None
        report.pipelines, report.stages, gone = _stages_store(pipelines, stages)
        report.gone += gone
    # A refresh is a contact like any other: the health page shows how it went.
    for portal, error in contacts.items():
        portal_contact_record(portal=portal, error=error)
    catalog_cache_clear()
    return report


def _shop_statuses_read() -> list[dict[str, Any]]:
    shop = client_for(Side.CMS)
    # Type O: order statuses; D are delivery statuses, which orders never take [docs/bitrix.md "The shop"].
    rows = list(shop.paging.list_all("sale.status.list", {"filter": {"type": "O"}}, items_key="statuses"))
    names: dict[str, dict[str, str]] = {}
    for lang in shop.paging.list_all("sale.statusLang.list", {}, items_key="statusLangs"):
        code, lid, name = str(lang.get("statusId") or ""), str(lang.get("lid") or ""), lang.get("name")
        if code and lid and name:
            names.setdefault(code, {})[lid] = str(name)
    return [
        {
            "code": str(row["id"]),
            "sort": _int(row.get("sort")),
            "color": str(row.get("color") or "")[:16],
            "names": names.get(str(row["id"]), {}),
        }
        for row in rows
        if row.get("id") and str(row.get("type") or "O") == "O"
    ]


def _crm_stages_read() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    crm = client_for(Side.CRM)
    categories = list(
        crm.paging.list_all(
            "crm.category.list", {"entityTypeId": DEAL_ENTITY_TYPE_ID}, items_key="categories"
        )
    )
    pipelines: list[dict[str, Any]] = [
        {"pipeline_id": _int(c.get("id")), "name": str(c.get("name") or ""), "sort": _int(c.get("sort"))}
        for c in categories
    ]
    if not any(p["pipeline_id"] == 0 for p in pipelines):
        # Some portals leave the default pipeline out of crm.category.list; its stages exist all the same.
        pipelines.insert(0, {"pipeline_id": 0, "name": "", "sort": 0})
    answer = crm.batch({f"p{p['pipeline_id']}": portals.stage_list(p["pipeline_id"]) for p in pipelines})
    if answer.errors:
        raise next(iter(answer.errors.values()))
    stages = []
    for p in pipelines:
        for row in answer.results.get(f"p{p['pipeline_id']}") or []:
            stages.append(
                {
                    "pipeline_id": p["pipeline_id"],
                    "code": str(row["STATUS_ID"]),
                    "name": str(row.get("NAME") or row["STATUS_ID"]),
                    "sort": _int(row.get("SORT")),
                    "semantics": portals.stage_semantics(row),
                    "color": str(row.get("COLOR") or "")[:16],
                }
            )
    return pipelines, stages


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


@transaction.atomic
def _statuses_store(rows: list[dict[str, Any]]) -> tuple[int, int]:
    now = timezone.now()
    for row in rows:
        CatalogStatus.objects.update_or_create(
            code=row["code"],
            defaults={
                "names": row["names"],
                "sort": row["sort"],
                "color": row["color"],
                "present": True,
                "refreshed_at": now,
            },
        )
    gone = (
        CatalogStatus.objects.filter(present=True)
        .exclude(code__in=[r["code"] for r in rows])
        .update(present=False)
    )
    return len(rows), gone


@transaction.atomic
def _stages_store(pipelines: list[dict[str, Any]], stages: list[dict[str, Any]]) -> tuple[int, int, int]:
    now = timezone.now()
    known = {p.pipeline_id: p for p in CatalogPipeline.objects.all()}
    for p in pipelines:
        name = p["name"] or (known[p["pipeline_id"]].name if p["pipeline_id"] in known else "")
        CatalogPipeline.objects.update_or_create(
            pipeline_id=p["pipeline_id"],
            defaults={"name": name, "sort": p["sort"], "present": True, "refreshed_at": now},
        )
    for s in stages:
        CatalogStage.objects.update_or_create(
            pipeline_id=s["pipeline_id"],
            code=s["code"],
            defaults={
                "name": s["name"],
                "sort": s["sort"],
                "semantics": s["semantics"],
                "color": s["color"],
                "present": True,
                "refreshed_at": now,
            },
        )
    gone = (
        CatalogPipeline.objects.filter(present=True)
        .exclude(pipeline_id__in=[p["pipeline_id"] for p in pipelines])
        .update(present=False)
    )
    seen = {(s["pipeline_id"], s["code"]) for s in stages}
    stale = [
        row_id
        for row_id, pipeline_id, code in CatalogStage.objects.filter(present=True).values_list(
            "id", "pipeline_id", "code"
        )
        if (pipeline_id, code) not in seen
    ]
    gone += CatalogStage.objects.filter(id__in=stale).update(present=False)
    return len(pipelines), len(stages), gone

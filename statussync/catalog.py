"""The catalog of names: the shop's order statuses and the CRM's pipelines and stages, as the portals name
them, kept in the database so every admin page can say "Paid, preparing for shipment (P)" instead of "P".

`catalog_refresh` reads both portals (the admin's button and an hourly schedule). The label helpers are what
other pages use; they read the whole catalog at most once per request (three small queries), whatever the
number of labels on the page:

- `status_label(code)` → "Принят, ожидается оплата (N)", or "N (not in the shop any more)";
- `stage_label(code)` → "Подготовка документов (PREPARATION)", or "… (not in the CRM any more)";
- `pipeline_label(pipeline_id)` → "Общая (0)";
- `status_choices()`, `stage_choices(pipeline_id)`, `pipeline_choices()` for dropdowns.

A code the catalog never saw is shown as missing only once the catalog has been read from that portal:
before the first refresh a label is just the code, not an accusation.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.signals import request_started
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from statussync import portals
from statussync.bitrix import BitrixError, client_for
from statussync.models import CatalogPipeline, CatalogStage, CatalogStatus, Side, StageSemantics

logger = logging.getLogger(__name__)

# Deals are CRM entity type 2 [docs/bitrix.md "Stages and pipelines"].
DEAL_ENTITY_TYPE_ID = 2
# Outside a request (workers, commands) the names are re-read after this long; inside one, once per request.
_CACHE_SECONDS = 30.0


# --- reading the portals ------------------------------------------------------------------------------------


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
    rows = list(shop.list_all("sale.status.list", {"filter": {"type": "O"}}, items_key="statuses"))
    names: dict[str, dict[str, str]] = {}
    for lang in shop.list_all("sale.statuslang.list", {}, items_key="statusLangs"):
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
        crm.list_all("crm.category.list", {"entityTypeId": DEAL_ENTITY_TYPE_ID}, items_key="categories")
    )
    pipelines = [
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
                    "semantics": _semantics(row),
                    "color": str(row.get("COLOR") or "")[:16],
                }
            )
    return pipelines, stages


def _semantics(row: dict[str, Any]) -> str:
    # SEMANTICS is null (in progress), "S" or "F"; EXTRA.SEMANTICS says process/success/failure/apology
    # [docs/bitrix.md "Stages and pipelines"].
    extra = (row.get("EXTRA") or {}).get("SEMANTICS") if isinstance(row.get("EXTRA"), dict) else None
    if row.get("SEMANTICS") == "S" or extra == "success":
        return StageSemantics.SUCCESS
    if row.get("SEMANTICS") == "F" or extra in ("failure", "apology"):
        return StageSemantics.FAILURE
    return StageSemantics.IN_PROGRESS


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


# --- what the sync takes from it ------------------------------------------------------------------------


def catalog_pipeline_stages(*, pipelines: Iterable[int]) -> dict[int, portals.PipelineStages]:
    """For each of `pipelines` the catalog knows: its in-progress and success stages in SORT order (failure
    stages left out, see `engine.PipelineMap.stage_order`) and its success stage. One query."""
    wanted = set(pipelines)
    if not wanted:
        return {}
    rows = CatalogStage.objects.filter(pipeline_id__in=wanted, present=True).order_by(
        "pipeline_id", "sort", "id"
    )
    order: dict[int, list[str]] = {}
    success: dict[int, set[str]] = {}
    for row in rows.only("pipeline_id", "code", "semantics"):
        success.setdefault(row.pipeline_id, set())
        order.setdefault(row.pipeline_id, [])
        if row.semantics == StageSemantics.FAILURE:
            continue
        order[row.pipeline_id].append(row.code)
        if row.semantics == StageSemantics.SUCCESS:
            success[row.pipeline_id].add(row.code)
    return {
        pid: portals.PipelineStages(order=tuple(codes), success=frozenset(success[pid]))
        for pid, codes in order.items()
    }


# --- labels (cached) -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    name: str
    present: bool


@dataclass
class _Names:
    """The whole catalog in memory: a few hundred rows at most."""

    statuses: dict[str, CatalogStatus]
    stages: dict[str, CatalogStage]  # by code: stage codes are unique across pipelines (C<n>: prefixes)
    stages_by_pipeline: dict[int, list[CatalogStage]]
    pipelines: dict[int, CatalogPipeline]
    loaded_at: float


_local = threading.local()


def _names() -> _Names:
    names: _Names | None = getattr(_local, "names", None)
    if names is None or time.monotonic() - names.loaded_at > _CACHE_SECONDS:
        stages = list(CatalogStage.objects.order_by("pipeline_id", "sort", "id"))
        by_pipeline: dict[int, list[CatalogStage]] = {}
        for stage in stages:
            by_pipeline.setdefault(stage.pipeline_id, []).append(stage)
        names = _Names(
            statuses={s.code: s for s in CatalogStatus.objects.order_by("sort", "code")},
            # A present stage wins over a gone one with the same code (a pipeline deleted and re-created).
            stages={s.code: s for s in sorted(stages, key=lambda s: s.present)},
            stages_by_pipeline=by_pipeline,
            pipelines={p.pipeline_id: p for p in CatalogPipeline.objects.all()},
            loaded_at=time.monotonic(),
        )
        _local.names = names
    return names


def catalog_cache_clear(**_: Any) -> None:
    """Forget the names held in memory (each request starts afresh; a refresh or an edit clears them)."""
    _local.names = None


# Once per request: labels on one page read the catalog once, and a refresh made by another process (a
# worker's schedule) shows on the next page.
request_started.connect(catalog_cache_clear, dispatch_uid="statussync.catalog.request")
for _model in (CatalogStatus, CatalogStage, CatalogPipeline):
    post_save.connect(catalog_cache_clear, sender=_model, dispatch_uid=f"statussync.catalog.save.{_model}")
    post_delete.connect(catalog_cache_clear, sender=_model, dispatch_uid=f"statussync.catalog.del.{_model}")


def status_name(code: str) -> str | None:
    """The shop's name of an order status in the reader's language (any language it has otherwise)."""
    row = _names().statuses.get(code)
    if row is None or not row.names:
        return None
    lang = (get_language() or "en").split("-")[0]
    return row.names.get(lang) or row.names.get("en") or next(iter(row.names.values()))


def status_label(code: str) -> str:
    """ "Name (CODE)" for an order status; "CODE (not in the shop any more)" when the shop dropped it."""
    if not code:
        return "—"
    names = _names()
    row = names.statuses.get(code)
    if row is not None and row.present:
        name = status_name(code)
        return f"{name} ({code})" if name else code
    if row is not None:
        return _("%(code)s (not in the shop any more)") % {"code": code}
    if names.statuses:
        return _("%(code)s (not in the shop)") % {"code": code}
    return code


def stage_label(code: str) -> str:
    """ "Name (CODE)" for a deal stage; "CODE (not in the CRM any more)" when the CRM dropped it."""
    if not code:
        return "—"
    names = _names()
    row = names.stages.get(code)
    if row is not None and row.present:
        return f"{row.name} ({code})"
    if row is not None:
        return _("%(code)s (not in the CRM any more)") % {"code": code}
    if names.stages:
        return _("%(code)s (not in the CRM)") % {"code": code}
    return code


def pipeline_label(pipeline_id: int | None) -> str:
    """ "Name (id)" for a deal pipeline; "id (not in the CRM any more)" when the CRM dropped it."""
    if pipeline_id is None:
        return "—"
    names = _names()
    row = names.pipelines.get(pipeline_id)
    if row is not None and row.present and row.name:
        return f"{row.name} ({pipeline_id})"
    if row is not None and not row.present:
        return _("pipeline %(id)s (not in the CRM any more)") % {"id": pipeline_id}
    if names.pipelines and row is None:
        return _("pipeline %(id)s (not in the CRM)") % {"id": pipeline_id}
    return _("pipeline %(id)s") % {"id": pipeline_id}


def stage_is_known(code: str) -> bool:
    """Whether the CRM lists this stage now."""
    row = _names().stages.get(code)
    return row is not None and row.present


def stage_pipeline(code: str) -> int | None:
    """The pipeline the catalog says a stage belongs to, or None when it does not know the stage."""
    row = _names().stages.get(code)
    return row.pipeline_id if row is not None else None


def stage_semantics(code: str) -> str | None:
    """P, S or F for a stage the catalog knows."""
    row = _names().stages.get(code)
    return row.semantics if row is not None else None


def catalog_knows_pipeline(pipeline_id: int) -> bool:
    """Whether the catalog has the stages of this pipeline (it was read from the CRM)."""
    return bool(_names().stages_by_pipeline.get(pipeline_id))


def catalog_has_pipelines() -> bool:
    """Whether the CRM's pipelines were ever read."""
    return bool(_names().pipelines)


def pipeline_is_known(pipeline_id: int) -> bool:
    """Whether the CRM lists this pipeline now."""
    row = _names().pipelines.get(pipeline_id)
    return row is not None and row.present


def catalog_has_statuses() -> bool:
    """Whether the shop's statuses were ever read."""
    return bool(_names().statuses)


def status_is_known(code: str) -> bool:
    """Whether the shop lists this order status now."""
    row = _names().statuses.get(code)
    return row is not None and row.present


def status_choices(*, keep: Iterable[str] = ()) -> list[tuple[str, str]]:
    """The shop's order statuses as (code, label) in the shop's order, plus `keep` (values already stored)
    that the shop does not list, labelled as missing, so editing a form never drops them silently."""
    names = _names()
    choices = [(code, status_label(code)) for code, row in names.statuses.items() if row.present]
    listed = {code for code, _label in choices}
    choices += [(code, status_label(code)) for code in dict.fromkeys(keep) if code and code not in listed]
    return choices


def stage_choices(pipeline_id: int, *, keep: Iterable[str] = ()) -> list[tuple[str, str]]:
    """The stages of *this* pipeline as (code, label) in the CRM's order, plus `keep` values it does not
    list (missing, or a stage of another pipeline), labelled as such. Never another pipeline's stages."""
    rows = _names().stages_by_pipeline.get(pipeline_id, [])
    choices = [(row.code, stage_label(row.code)) for row in rows if row.present]
    listed = {code for code, _label in choices}
    for code in dict.fromkeys(keep):
        if code and code not in listed:
            other = stage_pipeline(code)
            if other is not None and other != pipeline_id:
                label = _("%(code)s (a stage of pipeline %(pipeline)s)") % {"code": code, "pipeline": other}
            else:
                label = stage_label(code)
            choices.append((code, label))
    return choices


def pipeline_choices(*, keep: Iterable[int] = ()) -> list[tuple[int, str]]:
    """The CRM's pipelines as (id, label), plus `keep` ids it does not list."""
    names = _names()
    choices = [(pid, pipeline_label(pid)) for pid, row in names.pipelines.items() if row.present]
    listed = {pid for pid, _label in choices}
    choices += [(pid, pipeline_label(pid)) for pid in keep if pid not in listed]
    return choices

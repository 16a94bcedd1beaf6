"""The catalog of names, as stored: the shop's order statuses and the CRM's pipelines and stages, as the
portals name them, so every admin page can say "Paid, preparing for shipment (P)" instead of "P".

This module only reads the database; reading the portals is `statussync.mapping.catalog_refresh` (the admin's
button and an hourly schedule). The label helpers read the whole catalog at most once per request (three
small queries), whatever the number of labels on the page:

- `status_label(code)` → "Принят, ожидается оплата (N)", or "N (not in the shop any more)";
- `stage_label(code)` → "Подготовка документов (PREPARATION)", or "… (not in the CRM any more)";
- `pipeline_label(pipeline_id)` → "Общая (0)";
- `status_choices()`, `stage_choices(pipeline_id)`, `pipeline_choices()` for dropdowns;
- `catalog_snapshot()`: what the portals list, as plain values, for the mapping validator (a pure function);
- `catalog_pipeline_stages(pipelines=…)`: each pipeline's stage order, for the sync.

A code the catalog never saw is shown as missing only once the catalog has been read from that portal:
before the first refresh a label is just the code, not an accusation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.signals import request_started
from django.db.models.signals import post_delete, post_save
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from statussync import portals
from statussync.models import CatalogPipeline, CatalogStage, CatalogStatus, StageSemantics

# Outside a request (workers, commands) the names are re-read after this long; inside one, once per request.
_CACHE_SECONDS = 30.0


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
    failure: dict[int, set[str]] = {}
    for row in rows.only("pipeline_id", "code", "semantics"):
        success.setdefault(row.pipeline_id, set())
        failure.setdefault(row.pipeline_id, set())
        order.setdefault(row.pipeline_id, [])
        if row.semantics == StageSemantics.FAILURE:
            failure[row.pipeline_id].add(row.code)
            continue
        order[row.pipeline_id].append(row.code)
        if row.semantics == StageSemantics.SUCCESS:
            success[row.pipeline_id].add(row.code)
    return {
        pid: portals.PipelineStages(
            order=tuple(codes), success=frozenset(success[pid]), failure=frozenset(failure[pid])
        )
        for pid, codes in order.items()
    }


# --- what the mapping validator takes from it ------------------------------------------------------------


@dataclass(frozen=True)
class KnownStage:
    """A deal stage as the catalog last saw it."""

    pipeline_id: int
    semantics: str  # StageSemantics: P, S or F
    present: bool  # the CRM lists it now


@dataclass(frozen=True)
class CatalogSnapshot:
    """What the portals list, as plain values: all `mapping.mapping_validate` knows of them.

    The default, empty snapshot is a catalog never read: the validator then judges stages by their `C<n>:`
    prefixes only and calls no code unknown. `catalog_snapshot()` takes one from the database; tests build
    their own.
    """

    statuses: Mapping[str, bool] = field(default_factory=dict)  # order status → the shop lists it now
    pipelines: Mapping[int, bool] = field(default_factory=dict)  # pipeline id → the CRM lists it now
    stages: Mapping[str, KnownStage] = field(default_factory=dict)  # by code, unique across pipelines
    staged_pipelines: frozenset[int] = frozenset()  # pipelines whose stages were read

    @property
    def has_statuses(self) -> bool:
        """Whether the shop's statuses were ever read."""
        return bool(self.statuses)

    @property
    def has_pipelines(self) -> bool:
        """Whether the CRM's pipelines were ever read."""
        return bool(self.pipelines)

    def status_is_known(self, code: str) -> bool:
        """Whether the shop lists this order status now."""
        return self.statuses.get(code, False)

    def pipeline_is_known(self, pipeline_id: int) -> bool:
        """Whether the CRM lists this pipeline now."""
        return self.pipelines.get(pipeline_id, False)

    def knows_pipeline(self, pipeline_id: int) -> bool:
        """Whether the stages of this pipeline were read from the CRM."""
        return pipeline_id in self.staged_pipelines

    def stage_is_known(self, code: str) -> bool:
        """Whether the CRM lists this stage now."""
        stage = self.stages.get(code)
        return stage is not None and stage.present

    def stage_pipeline(self, code: str) -> int | None:
        """The pipeline a stage belongs to, or None when the catalog does not know the stage."""
        stage = self.stages.get(code)
        return stage.pipeline_id if stage is not None else None

    def stage_semantics(self, code: str) -> str | None:
        """P, S or F for a stage the catalog knows."""
        stage = self.stages.get(code)
        return stage.semantics if stage is not None else None


def catalog_snapshot() -> CatalogSnapshot:
    """The stored catalog as a CatalogSnapshot (from the per-request copy: no query when a label was read)."""
    names = _names()
    return CatalogSnapshot(
        statuses={code: row.present for code, row in names.statuses.items()},
        pipelines={pid: row.present for pid, row in names.pipelines.items()},
        stages={
            code: KnownStage(pipeline_id=row.pipeline_id, semantics=row.semantics, present=row.present)
            for code, row in names.stages.items()
        },
        staged_pipelines=frozenset(pid for pid, rows in names.stages_by_pipeline.items() if rows),
    )


# --- labels (cached) -------------------------------------------------------------------------------------


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
request_started.connect(catalog_cache_clear, dispatch_uid="statussync.mapping.catalog.request")
for _model in (CatalogStatus, CatalogStage, CatalogPipeline):
    post_save.connect(
        catalog_cache_clear, sender=_model, dispatch_uid=f"statussync.mapping.catalog.save.{_model}"
    )
    post_delete.connect(
        catalog_cache_clear, sender=_model, dispatch_uid=f"statussync.mapping.catalog.del.{_model}"
    )


def status_name(code: str) -> str | None:
    """The shop's name of an order status in the reader's language (any language it has otherwise)."""
    row = _names().statuses.get(code)
    if row is None or not row.names:
        return None
    lang = (get_language() or "en").split("-")[0]
    names: dict[str, str] = row.names
    return names.get(lang) or names.get("en") or next(iter(names.values()))


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


def stage_pipeline(code: str) -> int | None:
    """The pipeline the catalog says a stage belongs to, or None when it does not know the stage."""
    row = _names().stages.get(code)
    return row.pipeline_id if row is not None else None


def catalog_knows_pipeline(pipeline_id: int) -> bool:
    """Whether the catalog has the stages of this pipeline (it was read from the CRM)."""
    return bool(_names().stages_by_pipeline.get(pipeline_id))


def catalog_has_statuses() -> bool:
    """Whether the shop's statuses were ever read."""
    return bool(_names().statuses)


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

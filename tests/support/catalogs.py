"""The sandbox portals' catalog of names without reading the portals: stored (for tests that need names in
the database) or as the snapshot the mapping validator takes (for tests that need no database)."""

from __future__ import annotations

from django.utils import timezone

from bitrix_sandbox.crm import DEFAULT_STAGES, EXTRA_PIPELINE_STAGES
from bitrix_sandbox.shop import STATUS_NAMES_EN, STATUSES
from statussync.mapping.catalog import CatalogSnapshot, KnownStage, catalog_cache_clear
from statussync.models import CatalogPipeline, CatalogStage, CatalogStatus

# The CRM's pipelines 0 "Общая" and 1 "Опт": (id, name, sort).
PIPELINES = [(0, "Общая", 100), (1, "Опт", 200)]


def _stages() -> list[tuple[int, str, str, int, str, str]]:
    """(pipeline, code, name, sort, semantics, color) of both pipelines' stages."""
    stages = []
    for code, name, sort, semantics, _extra, color in DEFAULT_STAGES:
        stages.append((0, code, name, sort, semantics or "P", color))
        if code in EXTRA_PIPELINE_STAGES:
            stages.append((1, f"C1:{code}", name, sort, semantics or "P", color))
    return stages


def _order_statuses() -> list[tuple[str, int, str, str]]:
    """(code, sort, Russian name, color) of the shop's order statuses (delivery statuses left out)."""
    return [(code, sort, name, color) for code, kind, sort, name, color, _notify in STATUSES if kind == "O"]


def catalog_make() -> None:
    """The shop's statuses (ru + en) and the CRM's pipelines 0 "Общая" and 1 "Опт" with their stages."""
    now = timezone.now()
    CatalogStatus.objects.bulk_create(
        CatalogStatus(
            code=code,
            names={"ru": name, "en": STATUS_NAMES_EN[code]},
            sort=sort,
            color=color,
            refreshed_at=now,
        )
        for code, sort, name, color in _order_statuses()
    )
    CatalogPipeline.objects.bulk_create(
        CatalogPipeline(pipeline_id=p, name=name, sort=sort, refreshed_at=now) for p, name, sort in PIPELINES
    )
    CatalogStage.objects.bulk_create(
        CatalogStage(pipeline_id=p, code=c, name=n, sort=s, semantics=sem, color=col, refreshed_at=now)
        for p, c, n, s, sem, col in _stages()
    )
    catalog_cache_clear()


def catalog_snapshot_make() -> CatalogSnapshot:
    """What `catalog_make` stores, as the validator's snapshot: every status, pipeline and stage listed."""
    stages = _stages()
    return CatalogSnapshot(
        statuses={code: True for code, _sort, _name, _color in _order_statuses()},
        pipelines={p: True for p, _name, _sort in PIPELINES},
        stages={
            c: KnownStage(pipeline_id=p, semantics=sem, present=True) for p, c, _n, _s, sem, _c in stages
        },
        staged_pipelines=frozenset(p for p, *_rest in stages),
    )

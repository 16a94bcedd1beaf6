"""The sandbox portals' catalog of names, stored without reading the portals (for tests that need names)."""

from __future__ import annotations

from django.utils import timezone

from bitrix_sandbox.crm import DEFAULT_STAGES, EXTRA_PIPELINE_STAGES
from bitrix_sandbox.shop import STATUS_NAMES_EN, STATUSES
from statussync.catalog import catalog_cache_clear
from statussync.models import CatalogPipeline, CatalogStage, CatalogStatus


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
        for code, kind, sort, name, color, _notify in STATUSES
        if kind == "O"
    )
    CatalogPipeline.objects.bulk_create(
        [
            CatalogPipeline(pipeline_id=0, name="Общая", sort=100, refreshed_at=now),
            CatalogPipeline(pipeline_id=1, name="Опт", sort=200, refreshed_at=now),
        ]
    )
    stages = []
    for code, name, sort, semantics, _extra, color in DEFAULT_STAGES:
        stages.append((0, code, name, sort, semantics or "P", color))
        if code in EXTRA_PIPELINE_STAGES:
            stages.append((1, f"C1:{code}", name, sort, semantics or "P", color))
    CatalogStage.objects.bulk_create(
        CatalogStage(pipeline_id=p, code=c, name=n, sort=s, semantics=sem, color=col, refreshed_at=now)
        for p, c, n, s, sem, col in stages
    )
    catalog_cache_clear()

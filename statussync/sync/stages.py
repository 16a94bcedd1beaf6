"""Each pipeline's stages for the decide step: the stored mapping, with the stage order and success stage of
every pipeline the run's deals are in, from the catalog of names or, for a pipeline it lacks, from the CRM.

The I/O lives here (the database, the cache, one `batch`); what the rows mean is `portals.stage_semantics`
and `portals.pipeline_stages_from_rows`, pure functions."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from django.core.cache import cache

from statussync import portals
from statussync.bitrix import BitrixClient, PermanentError, TransientError
from statussync.engine import Mapping
from statussync.mapping.catalog import catalog_pipeline_stages
from statussync.mapping.store import mapping_load
from statussync.models import Side

if TYPE_CHECKING:
    from .run import SyncRun

logger = logging.getLogger(__name__)

STAGES_CACHE_SECONDS = 600


def mapping_with_stages(run: SyncRun, *, pipelines: set[int]) -> Mapping:
    """The stored mapping, with each pipeline's stage order and success stage as the CRM lists them: from
    the catalog of names when it has the pipeline (no REST call), from the CRM itself (cached) otherwise."""
    mapping = mapping_load()
    wanted = sorted(pipelines & set(mapping.pipelines))
    stages = catalog_pipeline_stages(pipelines=wanted)
    unknown = [p for p in wanted if p not in stages]
    if unknown:
        stages.update(pipeline_stages_read(crm=run.crm, pipelines=unknown))
        run.contact(Side.CRM, None)
    return replace(
        mapping,
        pipelines={
            pid: replace(
                pm,
                success_stages=stages.get(pid, portals.PipelineStages()).success,
                stage_order=stages.get(pid, portals.PipelineStages()).order,
            )
            for pid, pm in mapping.pipelines.items()
        },
    )


def pipeline_stages_read(*, crm: BitrixClient, pipelines: list[int]) -> dict[int, portals.PipelineStages]:
    """Each pipeline's stages (`portals.pipeline_stages_from_rows`), from the cache or one `batch` of
    `crm.status.list` calls; a pipeline whose read failed has none [docs/bitrix.md "Stages and pipelines"]."""
    found: dict[int, portals.PipelineStages] = {}
    missing = []
    for pipeline in pipelines:
        cached = cache.get(f"bxsync:pipeline-stages:{pipeline}")
        if cached is None:
            missing.append(pipeline)
        else:
            found[pipeline] = portals.PipelineStages(order=tuple(cached[0]), success=frozenset(cached[1]))
    if not missing:
        return found
    try:
        batch = crm.batch({f"p{p}": portals.stage_list(p) for p in missing})
    except (PermanentError, TransientError) as exc:
        # The stage list only sharpens payment handling (a deal's own STAGE_SEMANTIC_ID tells the rest);
        # a portal failing it must not stop every sync. Not cached: the next run asks again. Auth errors
        # still stop the run, since every other call would fail the same way.
        logger.warning("could not read deal stages: %s", exc)
        return {**found, **{p: portals.PipelineStages() for p in missing}}
    for pipeline in missing:
        stages = portals.pipeline_stages_from_rows(batch.results.get(f"p{pipeline}") or [])
        if f"p{pipeline}" not in batch.errors:
            # Cached as plain lists, as before the split: entries written by a running worker stay readable.
            cached = (list(stages.order), list(stages.success))
            cache.set(f"bxsync:pipeline-stages:{pipeline}", cached, STAGES_CACHE_SECONDS)
        found[pipeline] = stages
    return found

"""Each pipeline's stages for the decide step: the stored mapping, with the stage order, success and failure
stages of every pipeline the run's deals are in, from the catalog of names or, for a pipeline it lacks or a
stage it does not have, from the CRM.

The I/O lives here (the database, the cache, one `batch`); what the rows mean is `portals.stage_semantics`
and `portals.pipeline_stages_from_rows`, pure functions."""

from __future__ import annotations

import logging
from collections.abc import Mapping as MappingABC
from dataclasses import replace
from typing import TYPE_CHECKING

from django.core.cache import cache
from django.db import transaction

from statussync import portals
from statussync.bitrix import BitrixClient, BitrixError, PermanentError, TransientError
from statussync.engine import Mapping
from statussync.mapping.catalog import catalog_pipeline_stages
from statussync.mapping.store import mapping_load
from statussync.models import Side

if TYPE_CHECKING:
    from .run import SyncRun

logger = logging.getLogger(__name__)

STAGES_CACHE_SECONDS = 600
# A deal at a stage the stage list lacks (added in the CRM since the catalog's hourly refresh) has its
# pipeline's stages read again at most this often, so a deal left at such a stage cannot turn every run into
# a stage read; meanwhile its payment is held (`engine.PipelineMap.reached`).
STAGES_REREAD_SECONDS = 60


def mapping_with_stages(
    run: SyncRun, *, pipelines: set[int], stages_seen: MappingABC[int, set[str]] | None = None
) -> tuple[Mapping, dict[int, BitrixError]]:
    """The stored mapping, with each pipeline's stages as the CRM lists them: from the catalog of names when
    it has the pipeline and every stage in `stages_seen` (the run's deals' stages), no REST call; from the
    CRM (cached) otherwise. Also the pipelines whose stages could not be read, with the error: their stage
    order stays empty, which holds payments rather than guessing (never "no stages, so not reached")."""
    mapping = mapping_load()
    seen = stages_seen or {}
    wanted = sorted(pipelines & set(mapping.pipelines))
    stages = catalog_pipeline_stages(pipelines=wanted)
    stale = [p for p in stages if not all(stages[p].knows(s) for s in seen.get(p, ()))]
    to_read = [p for p in wanted if p not in stages] + stale
    errors: dict[int, BitrixError] = {}
    if to_read:
        read, errors = pipeline_stages_read(crm=run.crm, pipelines=to_read, stages_seen=seen)
        stages.update(read)
        run.contact(Side.CRM, next(iter(errors.values()), None))
        if stale and not run.dry_run:
            catalog_refresh_soon()
    return (
        replace(
            mapping,
            pipelines={
                pid: replace(
                    pm,
                    success_stages=stages.get(pid, portals.PipelineStages()).success,
                    stage_order=stages.get(pid, portals.PipelineStages()).order,
                    failure_stages=stages.get(pid, portals.PipelineStages()).failure,
                )
                for pid, pm in mapping.pipelines.items()
            },
        ),
        errors,
    )


def pipeline_stages_read(
    *, crm: BitrixClient, pipelines: list[int], stages_seen: MappingABC[int, set[str]] | None = None
) -> tuple[dict[int, portals.PipelineStages], dict[int, BitrixError]]:
    """Each pipeline's stages (`portals.pipeline_stages_from_rows`), from the cache or one `batch` of
    `crm.status.list` calls [docs/bitrix.md "Stages and pipelines"], and the pipelines whose read failed.

    A cached list that lacks a stage in `stages_seen` is read again, at most once per
    `STAGES_REREAD_SECONDS` per pipeline. A failed read is returned as an error, never as "no stages": the
    caller holds what depends on the order of stages. Auth errors still stop the run, since every other call
    would fail the same way."""
    seen = stages_seen or {}
    found: dict[int, portals.PipelineStages] = {}
    missing = []
    for pipeline in pipelines:
        cached = _cached(pipeline)
        if cached is not None and all(cached.knows(s) for s in seen.get(pipeline, ())):
            found[pipeline] = cached
        elif cached is None or cache.add(
            f"bxsync:pipeline-stages-reread:{pipeline}", 1, STAGES_REREAD_SECONDS
        ):
            missing.append(pipeline)
        else:
            found[pipeline] = cached  # read again a moment ago and still without the stage
    if not missing:
        return found, {}
    try:
        batch = crm.batch({f"p{p}": portals.stage_list(p) for p in missing})
    except (PermanentError, TransientError) as exc:
        logger.warning("could not read deal stages: %s", exc)
        return found, dict.fromkeys(missing, exc)
    errors: dict[int, BitrixError] = {}
    for pipeline in missing:
        error = batch.errors.get(f"p{pipeline}")
        if error is not None:
            logger.warning("could not read the stages of pipeline %s: %s", pipeline, error)
            errors[pipeline] = error
            continue
        stages = portals.pipeline_stages_from_rows(batch.results.get(f"p{pipeline}") or [])
        cached_rows = (list(stages.order), list(stages.success), list(stages.failure))
        cache.set(f"bxsync:pipeline-stages:{pipeline}", cached_rows, STAGES_CACHE_SECONDS)
        found[pipeline] = stages
    return found, errors


def _cached(pipeline: int) -> portals.PipelineStages | None:
    cached = cache.get(f"bxsync:pipeline-stages:{pipeline}")
    if not isinstance(cached, (list, tuple)) or len(cached) != 3:
        return None  # none, or written by a version that did not keep failure stages: read again
    return portals.PipelineStages(
        order=tuple(cached[0]), success=frozenset(cached[1]), failure=frozenset(cached[2])
    )


def catalog_refresh_soon() -> None:
    """The CRM's stages differ from the catalog's (a stage it lacks, or a write to a stage that changed
    nothing): refresh the catalog (once a minute at most) instead of waiting for the hourly schedule, so the
    sync and the admin see the CRM's stages as they are."""
    if not cache.add("bxsync:catalog-refresh-soon", 1, STAGES_REREAD_SECONDS):
        return
    transaction.on_commit(_catalog_refresh_queue)


def _catalog_refresh_queue() -> None:
    from django_q.tasks import async_task

    try:
        async_task("statussync.tasks.catalog_refresh", task_name="catalog-refresh-stages")
    except Exception:
        # A broker that is down must not fail the run: the hourly schedule refreshes the catalog anyway.
        logger.warning("could not queue a catalog refresh", exc_info=True)

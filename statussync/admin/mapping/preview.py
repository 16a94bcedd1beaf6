"""The confirmation page of a mapping change (from the pipeline form or a file): what changes, the links it
would move, and the choice to save only or to save and resync them (`statussync.mapping.impact`)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from statussync import roles
from statussync.mapping.catalog import pipeline_label, stage_label, status_label
from statussync.mapping.document import mapping_diff
from statussync.mapping.impact import LinkRemap, MappingImpact, mapping_change_resync_start
from statussync.models import MappingChange

from .changes import diff_text

DECISION = "_mapping_decision"  # "save" or "resync", from the confirmation page
PREVIEWED = "_mapping_previewed"  # the hash of the mapping the confirmation page showed


def document_hash(document: dict[str, Any]) -> str:
    """A short fingerprint of a mapping document: the confirmation carries the one it showed."""
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


def confirmed(request: HttpRequest, after: dict[str, Any]) -> str | None:
    """The manager's choice ("save" or "resync") if it was made on a preview of exactly `after`."""
    decision = request.POST.get(DECISION)
    if decision in ("save", "resync") and request.POST.get(PREVIEWED) == document_hash(after):
        return decision
    return None


def confirmation_response(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    *,
    before: dict[str, Any],
    after: dict[str, Any],
    impact: MappingImpact,
    warnings: list[str],
    hidden: list[tuple[str, str]],
    title: str,
    original: Any = None,
    importing: bool = False,
) -> TemplateResponse:
    """The page that shows a change before it is saved; its buttons post `hidden` back with the choice."""
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": model_admin.opts,
        "original": original,
        "hidden": hidden,
        "previewed": document_hash(after),
        "diff": [diff_text(line) for line in mapping_diff(before=before, after=after)],
        "impact": impact,
        "sample": [_sample_row(row) for row in impact.sample],
        "warnings": warnings,
        "can_resync": roles.user_can(request.user, roles.RESYNC_LINK),
        "action_url": request.get_full_path(),
        "importing": importing,
    }
    return TemplateResponse(request, "admin/statussync/pipeline/confirm.html", context)


def impact_record(
    request: HttpRequest, change: MappingChange | None, impact: MappingImpact, *, resync: bool
) -> None:
    if change is None:
        return
    MappingChange.objects.filter(id=change.id).update(
        links_affected=impact.affected, links_moving=impact.moving
    )
    if resync and impact.moving:
        if not roles.user_can(request.user, roles.RESYNC_LINK):
            raise PermissionDenied
        mapping_change_resync_start(change=change)
        messages.success(
            request,
            ngettext(
                "%(n)d link moves under the new mapping: its resync is being queued.",
                "%(n)d links move under the new mapping: their resync is being queued.",
                impact.moving,
            )
            % {"n": impact.moving},
        )
    elif impact.affected:
        messages.info(
            request,
            ngettext(
                "%(n)d link maps differently now; it keeps its values until its order or deal changes.",
                "%(n)d links map differently now; they keep their values until their order or deal changes.",
                impact.affected,
            )
            % {"n": impact.affected},
        )


def _sample_row(row: LinkRemap) -> dict[str, Any]:
    link_url = reverse("admin:statussync_link_change", args=[row.link_id])
    if row.move == "deal":
        what = _("deal → %(stage)s") % {"stage": stage_label(row.target)}
    elif row.move == "order":
        what = _("order → %(status)s") % {"status": status_label(row.target)}
    elif row.move == "unmapped":
        what = _("no longer mapped: stays as it is")
    else:
        what = _("already agrees: nothing moves")
    return {
        "url": link_url,
        "order_id": row.order_id,
        "deal_id": row.deal_id,
        "pipeline": pipeline_label(row.pipeline_id),
        "status": status_label(row.order_status),
        "stage": stage_label(row.deal_stage),
        "what": what,
        "moves": row.move in ("deal", "order"),
    }

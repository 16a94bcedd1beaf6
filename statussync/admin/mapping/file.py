"""The mapping file from the admin: download it, or upload one — checked by the same validator as
`statusmap import`, previewed like a form change, then stored whole (nothing changes on error)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _

from statussync.mapping.catalog import catalog_snapshot
from statussync.mapping.impact import mapping_impact
from statussync.mapping.store import mapping_export, mapping_import
from statussync.mapping.validate import MappingError, mapping_decode, mapping_parse, mapping_validate
from statussync.models import MappingChangeSource

from ..labels import problem_text
from .preview import confirmation_response, confirmed, impact_record

# The largest mapping file the import page reads (a real one is a few kilobytes).
MAX_UPLOAD_BYTES = 1024 * 1024


def mapping_export_view(model_admin: admin.ModelAdmin, request: HttpRequest) -> HttpResponse:
    """The stored mapping as the file `statusmap import` and the import page read."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    text = json.dumps(mapping_export(), indent=2, ensure_ascii=False) + "\n"
    response = HttpResponse(text, content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="bxsync-mapping.json"'
    return response


def mapping_import_view(model_admin: admin.ModelAdmin, request: HttpRequest) -> HttpResponse:
    """Upload a mapping file: validated like `statusmap import`, previewed, then stored whole."""
    can_import = model_admin.has_change_permission(request) and model_admin.has_add_permission(request)
    if request.method == "POST" and not can_import:
        raise PermissionDenied
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    context: dict[str, Any] = {
        **model_admin.admin_site.each_context(request),
        "title": _("Import a mapping file"),
        "opts": model_admin.opts,
        "can_import": can_import,
        "errors": [],
    }
    if request.method != "POST":
        return TemplateResponse(request, "admin/statussync/pipeline/import.html", context)
    text, read_error = _upload_text(request)
    if read_error:
        context["errors"] = [read_error]
        return TemplateResponse(request, "admin/statussync/pipeline/import.html", context)
    try:
        data = mapping_decode(text=text)
        parsed = mapping_parse(data=data)
    except MappingError as exc:
        context["errors"] = [str(p) for p in exc.items]
        return TemplateResponse(request, "admin/statussync/pipeline/import.html", context)
    problems = mapping_validate(parsed=parsed, known=catalog_snapshot())
    errors = [str(p) for p in problems if p.level == "error"]
    if errors:
        context["errors"] = errors
        return TemplateResponse(request, "admin/statussync/pipeline/import.html", context)
    before, after = mapping_export(), parsed.as_document()
    decision = confirmed(request, after)
    if decision is not None:
        return _import_store(
            model_admin, request, data=data, before=before, after=after, resync=decision == "resync"
        )
    return confirmation_response(
        model_admin,
        request,
        before=before,
        after=after,
        impact=mapping_impact(before=before, after=after),
        warnings=[f"{p.path}: {problem_text(p)}" for p in problems],
        hidden=[("mapping_text", text)],
        title=_("Check the file before it is imported"),
        importing=True,
    )


def _import_store(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    *,
    data: Any,
    before: dict[str, Any],
    after: dict[str, Any],
    resync: bool,
) -> HttpResponse:
    try:
        summary = mapping_import(data=data, source=MappingChangeSource.ADMIN_IMPORT, user=request.user)
    except MappingError as exc:
        for problem in exc.items:
            model_admin.message_user(request, str(problem), messages.ERROR)
        return HttpResponseRedirect(reverse("admin:statussync_pipeline_import"))
    if summary.change is not None:
        # Counted once the import is committed: a count of every link inside its transaction would hold
        # intake's writes to the links for as long.
        impact_record(request, summary.change, mapping_impact(before=before, after=after), resync=resync)
    model_admin.message_user(request, summary.describe(), messages.SUCCESS)
    return HttpResponseRedirect(reverse("admin:statussync_pipeline_changelist"))


def _upload_text(request: HttpRequest) -> tuple[str, str]:
    """The mapping file's text from the upload (or the confirmation page's hidden copy), or an error."""
    if "mapping_text" in request.POST:
        return request.POST["mapping_text"], ""
    upload = request.FILES.get("mapping_file")
    if upload is None:
        return "", _("Choose a mapping file (JSON, as `statusmap export` writes it).")
    if (upload.size or 0) > MAX_UPLOAD_BYTES:
        return "", _("The file is larger than %(size)s KB: not a mapping file.") % {
            "size": MAX_UPLOAD_BYTES // 1024
        }
    raw = upload.read()
    try:
        # utf-8-sig: editors on Windows save JSON with a byte-order mark.
        return raw.decode("utf-8-sig"), ""
    except UnicodeDecodeError as exc:
        return "", _("The file is not UTF-8 text (byte %(byte)s).") % {"byte": exc.start}

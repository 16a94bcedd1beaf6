"""The portal check on the dashboard: the newest `bitrix doctor` report in the reader's language, and
"check again" for those who may (Sync managers: `statussync.run_doctor`; Support see the report only)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from statussync import roles
from statussync.doctor import doctor_report_latest, doctor_run
from statussync.doctor.findings import BLOCKING, NOTE, OK, WARNING

from .timeline import SIDE_WORDS

# The report's findings, most urgent first.
_ORDER = {BLOCKING: 0, WARNING: 1, NOTE: 2, OK: 3}


def doctor_panel(*, user: Any) -> dict[str, Any]:
    """What the dashboard's portal check shows: the newest report (None: never run), its findings grouped
    into those to act on and those passed, and whether this reader may run it again."""
    result = doctor_report_latest()
    panel: dict[str, Any] = {"result": result, "can_run": roles.user_can(user, roles.RUN_DOCTOR)}
    if result is None:
        return panel
    rows = [
        {"finding": f, "portal": str(SIDE_WORDS.get(f.portal, "")) if f.portal else ""}
        for f in sorted(result.findings, key=lambda f: _ORDER[f.level])
    ]
    panel["to_read"] = [r for r in rows if r["finding"].level != OK]
    panel["passed"] = [r for r in rows if r["finding"].level == OK]
    return panel


def doctor_again_view(request: HttpRequest) -> HttpResponse:
    """POST: run the portal check now (read-only, no round trip), store it, back to the dashboard."""
    back = HttpResponseRedirect(reverse("bxsync-dashboard") + "#bx-doctor")
    if request.method != "POST":
        return back
    if not roles.user_can(request.user, roles.RUN_DOCTOR):
        raise PermissionDenied
    result = doctor_run(base_url=request.build_absolute_uri("/"))
    level = {"healthy": messages.SUCCESS, "warnings": messages.WARNING}.get(result.verdict, messages.ERROR)
    messages.add_message(request, level, result.summary())
    return back

"""The portal check on the dashboard: the newest `bitrix doctor` report in the reader's language, and
"check again" for those who may (Sync managers: `statussync.run_doctor`; Support see the report only), run
by a worker (`statussync.doctor.background`) while the panel says "checking…"."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext

from statussync import roles
from statussync.doctor import doctor_report_latest
from statussync.doctor.background import (
    FAILED,
    doctor_check_is_running,
    doctor_check_latest,
    doctor_check_start,
)
from statussync.doctor.findings import ANSWERS, BLOCKING, NOTE, OK, POINTS, WARNING

from .timeline import SIDE_WORDS

# The report's findings, most urgent first.
_ORDER = {BLOCKING: 0, WARNING: 1, NOTE: 2, OK: 3}


def doctor_panel(*, user: Any) -> dict[str, Any]:
    """What the dashboard's portal check shows: the newest report (None: never run), its findings grouped
    into those to act on and those passed, and whether this reader may run it again."""
    result = doctor_report_latest()
    check = doctor_check_latest()
    panel: dict[str, Any] = {
        "result": result,
        "can_run": roles.user_can(user, roles.RUN_DOCTOR),
        "checking_since": None,
        "failed": None,
    }
    newer = check is not None and (result is None or check.created_at > result.checked_at)
    if check is not None and doctor_check_is_running(check):
        panel["checking_since"] = check.created_at
    elif check is not None and check.verdict == FAILED and newer:
        panel["failed"] = check  # the report shown stays the last one that finished
    if result is None:
        return panel
    rows = [
        {"finding": f, "portal": str(SIDE_WORDS.get(f.portal, "")) if f.portal else ""}
        for f in sorted(result.findings, key=lambda f: _ORDER[f.level])
    ]
    panel["to_read"] = [r for r in rows if r["finding"].level != OK]
    panel["passed"] = [r for r in rows if r["finding"].level == OK]
    panel["behaviours"] = behaviours_in_words(result.quirks)
    return panel


def behaviours_in_words(quirks: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """What each portal was found to do, as sentences in the reader's language ("A pipeline move changes the
    deal's modification date: yes"); a stored name this version does not know is left out, never shown."""
    out = []
    for portal, answers in sorted(quirks.items()):
        points = []
        for name, answer in answers.items():
            if name not in POINTS:
                continue
            said = ANSWERS.get(answer) if isinstance(answer, bool | str) else None
            points.append({"point": gettext(POINTS[name]), "answer": gettext(said) if said else str(answer)})
        if points:
            out.append({"portal": str(SIDE_WORDS.get(portal, "")), "points": points})
    return out


def doctor_again_view(request: HttpRequest) -> HttpResponse:
    """POST: start the portal check in the background (read-only, no round trip), back to the dashboard,
    which says "checking…" until the new report is in."""
    back = HttpResponseRedirect(reverse("bxsync-dashboard") + "#bx-doctor")
    if request.method != "POST":
        return back
    if not roles.user_can(request.user, roles.RUN_DOCTOR):
        raise PermissionDenied
    _, started = doctor_check_start(
        base_url=request.build_absolute_uri("/"), started_by=request.user.get_username()
    )
    if started:
        messages.info(request, gettext("Checking the portals in the background; the report follows here."))
    else:
        messages.info(request, gettext("A check of the portals is already running."))
    return back

"""Admin actions that ask before they act, and refuse (403) what the user may not do.

The stock admin's intermediate-page pattern (Django docs, "Admin actions"): the first POST of an action
renders a confirmation page; it posts the same action again, with the same selection and `confirm=yes`, and
only then does the action act. The page says what will happen in the user's words, how many links it
touches and whether it runs in the background.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse

CONFIRMED = "confirm"
# Rows shown on a confirmation page; the rest is a count.
SAMPLE_SIZE = 10


def action_confirmed(request: HttpRequest) -> bool:
    """Whether this POST is the confirmation page's "yes"."""
    return request.POST.get(CONFIRMED) == "yes"


def confirmation_page(
    modeladmin,
    request: HttpRequest,
    *,
    action: str,
    title: str,
    question: str,
    consequences: Sequence[str],
    button: str,
    sample: Sequence[Any],
    count: int,
    danger: bool = False,
) -> TemplateResponse:
    """The intermediate page of `action`: what it will do to `count` objects (`sample` of them listed).
    `danger` (closing links, giving up work) shows the confirming button in the admin's delete colour."""
    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "opts": opts,
        "title": title,
        "question": question,
        "consequences": consequences,
        "button": button,
        "sample": sample,
        "count": count,
        "more": max(count - len(sample), 0),
        "action": action,
        # The selection as the changelist posted it: the ticked rows of its page (at most a page) and
        # whether "select all N" was chosen; the filters travel in the URL, which the form posts back to.
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "confirm_field": CONFIRMED,
        "danger": danger,
    }
    return TemplateResponse(request, "admin/statussync/confirm_action.html", context)


class ActionPermissionMixin:
    """A POST of an action the user may not run is refused with 403 — not the stock admin's quiet "no action
    selected" — so read-only staff (Support) change nothing, and a test can say so."""

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None):
        if request.method == "POST":
            allowed = self.get_actions(request)
            names = request.POST.getlist("action")
            try:
                index = int(request.POST.get("index", 0))
            except ValueError:
                index = 0
            name = names[index] if 0 <= index < len(names) else (names[0] if names else "")
            if (name and name not in allowed) or (not name and not allowed):
                raise PermissionDenied
        return super().changelist_view(request, extra_context)

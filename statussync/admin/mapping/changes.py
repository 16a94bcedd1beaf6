"""The mapping's history in the admin: every change, who made it and how, before → after (read-only), and
how a change reads for people (the impact preview shows the same lines)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from statussync.mapping.catalog import pipeline_label, stage_label, status_label
from statussync.mapping.document import DiffLine, mapping_diff
from statussync.models import ConflictPolicy, MappingChange

from ..base import ReadOnlyAdmin


def diff_text(line: DiffLine) -> str:
    """One difference for people, with the portals' names."""
    where = pipeline_label(line.pipeline) if line.pipeline is not None else ""
    if line.rule is not None:
        status, stage, direction = line.rule
        arrow = {"both": "↔", "to_crm": "→", "to_cms": "←"}.get(direction, "↔")
        if line.kind == "rule_stage_changed":
            rule = f"{status_label(status)} {arrow} {stage_label(line.old)} ⇒ {stage_label(stage)}"
            return _("%(pipeline)s: rule changed: %(rule)s") % {"pipeline": where, "rule": rule}
        if line.kind == "rule_status_changed":
            rule = f"{status_label(line.old)} ⇒ {status_label(status)} {arrow} {stage_label(stage)}"
            return _("%(pipeline)s: rule changed: %(rule)s") % {"pipeline": where, "rule": rule}
        rule = f"{status_label(status)} {arrow} {stage_label(stage)}"
        if line.kind == "rule_added":
            return _("%(pipeline)s: rule added: %(rule)s") % {"pipeline": where, "rule": rule}
        return _("%(pipeline)s: rule removed: %(rule)s") % {"pipeline": where, "rule": rule}
    if line.kind == "pipeline_added":
        n = int(line.new or 0)
        text = ngettext("%(pipeline)s: mapped, with %(n)s rule", "%(pipeline)s: mapped, with %(n)s rules", n)
        return text % {"pipeline": where, "n": n}
    if line.kind == "pipeline_removed":
        n = int(line.old or 0)
        text = ngettext(
            "%(pipeline)s: no longer mapped (it had %(n)s rule)",
            "%(pipeline)s: no longer mapped (it had %(n)s rules)",
            n,
        )
        return text % {"pipeline": where, "n": n}
    texts = {
        "paid_stage": _("%(pipeline)s: paid stage %(old)s → %(new)s"),
        "conflict_policy": _("%(pipeline)s: when both sides changed: %(old)s → %(new)s"),
        "awaiting_added": _("awaiting payment: %(new)s added"),
        "awaiting_removed": _("awaiting payment: %(new)s removed"),
    }
    old, new = line.old, line.new
    if line.kind == "paid_stage":
        old, new = stage_label(old), stage_label(new)
    elif line.kind == "conflict_policy":
        old, new = str(ConflictPolicy(old).label), str(ConflictPolicy(new).label)
    elif line.kind.startswith("awaiting"):
        new = status_label(new)
    return texts[line.kind] % {"pipeline": where, "old": old, "new": new}


@admin.register(MappingChange)
class MappingChangeAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "username", "source", "summary", "links_affected", "resync"]
    list_filter = ["source"]
    search_fields = ["username"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = [
        "created_at",
        "username",
        "source",
        "changes",
        "links_affected",
        "links_moving",
        "resync",
        "documents",
    ]
    readonly_fields = fields
    actions = None

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None):
        if request.method == "POST":
            raise PermissionDenied  # the history is written by the changes themselves, never by hand
        return super().changelist_view(request, extra_context)

    @admin.display(description=gettext_lazy("what changed"))
    def summary(self, obj: MappingChange) -> str:
        lines = mapping_diff(before=obj.before, after=obj.after)
        if not lines:
            return "—"
        first = diff_text(lines[0])
        more = len(lines) - 1
        return first + (
            " " + ngettext("(and %(n)d more)", "(and %(n)d more)", more) % {"n": more} if more else ""
        )

    @admin.display(description=gettext_lazy("what changed"))
    def changes(self, obj: MappingChange) -> str:
        lines = [diff_text(line) for line in mapping_diff(before=obj.before, after=obj.after)]
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((line,) for line in lines)))

    @admin.display(description=gettext_lazy("resync"))
    def resync(self, obj: MappingChange) -> str:
        if not obj.resync_requested:
            return "—"
        total = obj.links_moving or 0
        if obj.resync_finished_at:
            return _("%(done)s of %(total)s links queued") % {"done": obj.resync_queued, "total": total}
        return _("queuing: %(done)s of %(total)s links") % {"done": obj.resync_queued, "total": total}

    @admin.display(description=gettext_lazy("documents (before → after)"))
    def documents(self, obj: MappingChange) -> str:
        return format_html(
            '<div style="display:flex;gap:1em"><pre>{}</pre><pre>{}</pre></div>',
            json.dumps(obj.before, indent=2, ensure_ascii=False),
            json.dumps(obj.after, indent=2, ensure_ascii=False),
        )

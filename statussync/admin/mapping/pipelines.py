"""The mapping editor: one page per pipeline, rules picked from the portals' own names, checked by the shared
validator, previewed against the existing links before it is saved, and every change kept in a history.

- Dropdowns offer *this* pipeline's stages and the shop's statuses from the catalog of names
  (`statussync.mapping.catalog`); a stored code the portal no longer lists stays selectable, labelled as
  missing.
  Without a catalog (never refreshed), the fields are plain text.
- The rules are checked as part of the whole mapping by `statussync.mapping.validate`: errors go
  on the field they are about (two conflicting new rows included, which Django's own formset check misses: the
  unique constraints are conditional), warnings on the confirmation page.
- Saving a change that makes existing links map differently shows the impact first (how many, a sample)
  and offers: save only, or save and resync the links that would move (`statussync.mapping.impact`).
- `?add_rule_status=<code>` / `?add_rule_stage=<code>` on a pipeline's page prefill a new rule (the
  "unmapped values" page links here).
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db.models import Count
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from statussync import roles
from statussync.mapping import catalog
from statussync.mapping.catalog import pipeline_label, stage_label, status_label
from statussync.mapping.impact import MappingImpact, mapping_affects_links, mapping_impact
from statussync.mapping.store import mapping_change_record, mapping_check, mapping_export
from statussync.mapping.validate import MappingError, Problem, mapping_parse, mapping_validate
from statussync.models import (
    AwaitingPaymentStatus,
    Direction,
    MappingChangeSource,
    Pipeline,
    StatusRule,
)

from ..base import NamedListAdmin
from ..catalog import catalog_refresh_view, catalog_refreshed_at
from ..labels import problem_text
from .file import mapping_export_view, mapping_import_view
from .preview import DECISION, PREVIEWED, confirmation_response, confirmed, impact_record


class _ConfirmationNeeded(Exception):
    """Raised inside the admin's save transaction to roll it back and show the impact first (counted once
    the transaction is rolled back)."""

    def __init__(
        self, *, before: dict[str, Any], after: dict[str, Any], impact: MappingImpact | None, warnings
    ):
        super().__init__("confirmation needed")
        self.before, self.after, self.impact, self.warnings = before, after, impact, warnings


# The pipeline list's problems, computed once per page (the admin object is shared by every thread).
_page = threading.local()


# --- the forms --------------------------------------------------------------------------------------------


def _code_field(choices: list[tuple[str, str]], *, label: str, required: bool = True) -> forms.Field:
    """A dropdown of the catalog's codes, or a text field when the catalog has none (never refreshed)."""
    if not choices:
        return forms.CharField(label=label, max_length=50, required=required)
    blank = [("", "—")] if not required else [("", "---------")]
    return forms.ChoiceField(label=label, choices=blank + choices, required=required)


class StatusRuleForm(forms.ModelForm):
    """One rule: the shop's status and one of *this* pipeline's stages, from dropdowns."""

    class Meta:
        model = StatusRule
        fields = ["order_status", "deal_stage", "direction"]

    def __init__(self, *args: Any, pipeline_id: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        keep_status = [self.instance.order_status, self.initial.get("order_status", "")]
        keep_stage = [self.instance.deal_stage, self.initial.get("deal_stage", "")]
        if self.is_bound:  # what was posted stays selectable (and is then checked by the validator)
            keep_status.append(self.data.get(self.add_prefix("order_status"), ""))
            keep_stage.append(self.data.get(self.add_prefix("deal_stage"), ""))
        statuses = catalog.status_choices(keep=keep_status) if catalog.catalog_has_statuses() else []
        stages = []
        if pipeline_id is not None and catalog.catalog_knows_pipeline(pipeline_id):
            stages = catalog.stage_choices(pipeline_id, keep=keep_stage)
        self.fields["order_status"] = _code_field(statuses, label=capfirst(_("order status")))
        self.fields["deal_stage"] = _code_field(stages, label=capfirst(_("deal stage")))


class RuleFormSet(BaseInlineFormSet):
    """The pipeline's rules, checked as part of the whole mapping by the shared validator."""

    def save(self, commit: bool = True):
        if commit:
            # Rows are saved one by one, and the database checks its unique constraints after each: swapping
            # two rows' stages would fail half way. The edited and deleted rows step aside first (the whole
            # new set was validated, so the final values never collide).
            moving = [
                form.instance.pk
                for form in self.initial_forms
                if form.instance.pk is not None
                and (form.has_changed() or (self.can_delete and self._should_delete_form(form)))
            ]
            for pk in moving:
                StatusRule.objects.filter(pk=pk).update(order_status=f"~{pk}", deal_stage=f"~{pk}")
        return super().save(commit)

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        pipeline: Pipeline = self.instance
        parent_form = getattr(pipeline, "_admin_form", None)
        rule_forms = [
            form
            for form in self.forms
            if form.cleaned_data
            and not form.cleaned_data.get("DELETE")
            and form.cleaned_data.get("order_status")
            and form.cleaned_data.get("deal_stage")
        ]
        this = {
            "pipeline": pipeline.pipeline_id,
            "paid_stage": pipeline.paid_stage,
            "conflict_policy": pipeline.conflict_policy,
            "rules": [
                {
                    "order_status": f.cleaned_data["order_status"],
                    "deal_stage": f.cleaned_data["deal_stage"],
                    "direction": f.cleaned_data.get("direction") or Direction.BOTH,
                }
                for f in rule_forms
            ],
        }
        document = mapping_export()
        others = [p for p in document["pipelines"] if p["pipeline"] != pipeline.pipeline_id]
        document["pipelines"] = sorted([*others, this], key=lambda p: p["pipeline"])
        if parent_form is not None and "awaiting_payment_statuses" in parent_form.cleaned_data:
            document["awaiting_payment_statuses"] = parent_form.cleaned_data["awaiting_payment_statuses"]
        index = document["pipelines"].index(this)
        try:
            problems = mapping_validate(parsed=mapping_parse(data=document), known=catalog.catalog_snapshot())
        except MappingError as exc:
            problems = exc.items
        prefix = f"pipelines[{index}]"
        mine = [p for p in problems if p.path.startswith(prefix) or not p.path.startswith("pipelines[")]
        errors = 0

        def row_name(i: int) -> str:
            # Counted among all the rows on the page (blank and deleted ones too), as the table numbers them.
            return _("the rule on row %(n)s") % {"n": self.forms.index(rule_forms[i]) + 1}

        warnings: list[str] = []
        unplaced: list[str] = []
        known = {_problem_key(p) for p in _stored_problems(pipeline.pipeline_id)}
        pipeline._mapping_new_warnings = False
        for problem in mine:
            text = problem_text(problem, rule_name=row_name)
            if problem.level != "error":
                warnings.append(text)
                # A warning the change brings asks for a second look; one that was there before does not,
                # and a note never does.
                if problem.level == "warning" and _problem_key(problem) not in known:
                    pipeline._mapping_new_warnings = True
                continue
            errors += 1
            if not _error_place(problem, text, rule_forms, parent_form, prefix):
                unplaced.append(text)
        pipeline._mapping_warnings = warnings
        if errors:
            summary = ngettext(
                "The mapping has %(n)d problem; it is marked below. Nothing was saved.",
                "The mapping has %(n)d problems; they are marked below. Nothing was saved.",
                errors,
            ) % {"n": errors}
            raise forms.ValidationError([summary, *unplaced])


def _problem_key(problem: Problem) -> tuple[Any, ...]:
    """A problem without its place: the same problem on a renumbered row is the same problem."""

    def plain(value: Any) -> Any:
        return getattr(value, "code", None) if hasattr(value, "code") else value

    params = tuple(sorted((k, str(plain(v))) for k, v in problem.params.items() if not hasattr(v, "index")))
    return (problem.code, params)


def _stored_problems(pipeline_id: int) -> list[Problem]:
    """The stored mapping's problems about one pipeline and about the whole document."""
    document = mapping_export()
    ids = [p["pipeline"] for p in document["pipelines"]]
    problems = mapping_check()
    if pipeline_id not in ids:
        return [p for p in problems if not p.path.startswith("pipelines[")]
    prefix = f"pipelines[{ids.index(pipeline_id)}]"
    return [p for p in problems if p.path.startswith(prefix) or not p.path.startswith("pipelines[")]


def _error_place(
    problem: Problem, text: str, rule_forms: list[forms.Form], parent: forms.Form | None, prefix: str
) -> bool:
    """Put an error on the field its path names (a rule's field or the pipeline's); False if none fits."""
    rest = problem.path[len(prefix) :].lstrip(".")
    if problem.path.startswith(prefix) and rest.startswith("rules[") and "]" in rest:
        i = int(rest[len("rules[") : rest.index("]")])
        field = rest[rest.index("]") + 1 :].lstrip(".")
        form = rule_forms[i]
        form.add_error(field if field in form.fields else None, text)
        return True
    if parent is None:
        return False
    if (
        problem.path.startswith(prefix)
        and rest in ("paid_stage", "conflict_policy")
        and rest in parent.fields
    ):
        parent.add_error(rest, text)
        return True
    if problem.path.startswith("awaiting_payment_statuses") and "awaiting_payment_statuses" in parent.fields:
        parent.add_error("awaiting_payment_statuses", text)
        return True
    return False


class PipelineForm(forms.ModelForm):
    """A pipeline's settings, with its paid stage from its own stages and the shared awaiting statuses."""

    awaiting_payment_statuses = forms.MultipleChoiceField(
        label=gettext_lazy("Awaiting-payment statuses (shared by all pipelines)"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=gettext_lazy(
            "A paid order is never sent back to one of these: a deal moved back to a stage that maps to one "
            "is recorded as a blocked regression."
        ),
    )

    class Meta:
        model = Pipeline
        fields = ["pipeline_id", "paid_stage", "conflict_policy"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        stored = list(AwaitingPaymentStatus.objects.order_by("id").values_list("order_status", flat=True))
        if catalog.catalog_has_statuses():
            posted = self.data.getlist(self.add_prefix("awaiting_payment_statuses")) if self.is_bound else []
            field = self.fields["awaiting_payment_statuses"]
            field.choices = catalog.status_choices(keep=[*stored, *posted])
            field.initial = stored
        else:  # no names read yet: the codes, comma-separated
            self.fields["awaiting_payment_statuses"] = _CodeListField(
                label=self.fields["awaiting_payment_statuses"].label,
                help_text=self.fields["awaiting_payment_statuses"].help_text,
                required=False,
                initial=", ".join(stored),
            )
        if "pipeline_id" in self.fields:  # adding: one of the CRM's pipelines not mapped yet
            mapped = set(Pipeline.objects.values_list("pipeline_id", flat=True))
            offered = [(pid, label) for pid, label in catalog.pipeline_choices() if pid not in mapped]
            if offered:
                self.fields["pipeline_id"] = forms.TypedChoiceField(
                    label=capfirst(_("pipeline")),
                    choices=offered,
                    coerce=int,
                    help_text=Pipeline._meta.get_field("pipeline_id").help_text,
                )
        if "paid_stage" in self.fields:
            pid = self.instance.pipeline_id if self.instance.pk else None
            if pid is not None and catalog.catalog_knows_pipeline(pid):
                keep = [self.instance.paid_stage]
                if self.is_bound:
                    keep.append(self.data.get(self.add_prefix("paid_stage"), ""))
                self.fields["paid_stage"] = _code_field(
                    catalog.stage_choices(pid, keep=keep), label=capfirst(_("paid stage")), required=False
                )
                self.fields["paid_stage"].help_text = Pipeline._meta.get_field("paid_stage").help_text


class _CodeListField(forms.CharField):
    """Codes separated by commas or spaces, as a list."""

    def to_python(self, value: Any) -> list[str]:
        text = super().to_python(value) or ""
        return list(dict.fromkeys(code for code in text.replace(",", " ").split() if code))


class StatusRuleInline(admin.TabularInline):
    model = StatusRule
    form = StatusRuleForm
    formset = RuleFormSet
    extra = 1
    verbose_name = gettext_lazy("rule")
    verbose_name_plural = gettext_lazy("rules: order status ↔ deal stage")

    # Read-only (Support): the names, not bare codes.
    def get_fields(self, request: HttpRequest, obj: Pipeline | None = None):
        if not self.has_change_permission(request, obj):
            return ["order_status_name", "deal_stage_name", "direction"]
        return super().get_fields(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Pipeline | None = None):
        if not self.has_change_permission(request, obj):
            return ["order_status_name", "deal_stage_name", "direction"]
        return super().get_readonly_fields(request, obj)

    @admin.display(description=gettext_lazy("order status"))
    def order_status_name(self, rule: StatusRule) -> str:
        return status_label(rule.order_status)

    @admin.display(description=gettext_lazy("deal stage"))
    def deal_stage_name(self, rule: StatusRule) -> str:
        return stage_label(rule.deal_stage)


# --- the pipeline pages -----------------------------------------------------------------------------------


# PipelineAdmin is three parts, one per job: the list with each pipeline's problems, the form's layout, and
# a save that shows its impact before it lands and records it after.


class PipelineList:
    """The pipelines list: names, paid stage, policy, rule count and the problems the mapping check finds."""

    list_display = ["pipeline_name", "paid_stage_name", "conflict_policy", "rule_count", "problems"]
    list_display_links = ["pipeline_name"]
    change_list_template = "admin/statussync/pipeline/change_list.html"

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).annotate(rule_total=Count("rules"))

    @admin.display(description=gettext_lazy("pipeline"), ordering="pipeline_id")
    def pipeline_name(self, obj: Pipeline) -> str:
        return pipeline_label(obj.pipeline_id)

    @admin.display(description=gettext_lazy("paid stage"))
    def paid_stage_name(self, obj: Pipeline) -> str:
        return stage_label(obj.paid_stage) if obj.paid_stage else "—"

    @admin.display(description=gettext_lazy("rules"), ordering="rule_total")
    def rule_count(self, obj: Pipeline) -> int:
        return obj.rule_total

    @admin.display(description=gettext_lazy("problems"))
    def problems(self, obj: Pipeline) -> str:
        found = self._problems_by_pipeline().get(obj.pipeline_id, [])
        errors = sum(1 for p in found if p.level == "error")
        warnings = sum(1 for p in found if p.level == "warning")
        parts = []
        if errors:
            parts.append(ngettext("%(n)d error", "%(n)d errors", errors) % {"n": errors})
        if warnings:
            parts.append(ngettext("%(n)d warning", "%(n)d warnings", warnings) % {"n": warnings})
        return ", ".join(parts) or "—"

    def _problems_by_pipeline(self) -> dict[int, list[Problem]]:
        return getattr(_page, "problems", {})

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None):
        # Once per page: the whole stored mapping is checked in a few queries, not once per row. The admin
        # object is shared by every thread, so the page's result lives in a thread-local.
        document = mapping_export()
        found = mapping_check()
        by_pipeline: dict[int, list[Problem]] = {}
        for problem in found:
            if problem.path.startswith("pipelines["):
                index = int(problem.path[len("pipelines[") : problem.path.index("]")])
                by_pipeline.setdefault(document["pipelines"][index]["pipeline"], []).append(problem)
        _page.problems = by_pipeline
        document_problems = [p for p in found if not p.path.startswith("pipelines[")]
        context = {
            **(extra_context or {}),
            "mapping_notes": [problem_text(p) for p in document_problems],
            "can_refresh_catalog": roles.user_can(request.user, roles.REFRESH_CATALOG),
            "can_import": self.has_change_permission(request) and self.has_add_permission(request),
            "catalog_refreshed_at": catalog_refreshed_at(),
        }
        return super().changelist_view(request, extra_context=context)


class PipelineFormLayout:
    """The pipeline's form: which fields, read-only for Support, the rules inline once the pipeline exists."""

    _VIEW_FIELDS = ["pipeline_name", "paid_stage_name", "conflict_policy", "awaiting_names"]

    def get_fields(self, request: HttpRequest, obj: Pipeline | None = None):
        if obj is not None and not self.has_change_permission(request, obj):
            return self._VIEW_FIELDS  # read-only (Support): the names, not bare codes
        if obj is not None:
            return ["pipeline_name", "paid_stage", "conflict_policy", "awaiting_payment_statuses"]
        return super().get_fields(request, obj)

    def get_exclude(self, request: HttpRequest, obj: Pipeline | None = None):
        # Adding, the pipeline is picked first: its stages (for the paid stage) are offered once it is saved.
        return ["pipeline_id"] if obj is not None else ["paid_stage"]

    def get_readonly_fields(self, request: HttpRequest, obj: Pipeline | None = None):
        if obj is not None and not self.has_change_permission(request, obj):
            return self._VIEW_FIELDS
        # A pipeline's stages are its own: moving its rules to another pipeline would make them foreign.
        return ["pipeline_name"] if obj is not None else []

    @admin.display(description=gettext_lazy("awaiting-payment statuses (shared by all pipelines)"))
    def awaiting_names(self, obj: Pipeline) -> str:
        codes = AwaitingPaymentStatus.objects.order_by("id").values_list("order_status", flat=True)
        return ", ".join(status_label(code) for code in codes) or "—"

    def get_inline_instances(self, request: HttpRequest, obj: Pipeline | None = None):
        # The rules' stages are the pipeline's, so the pipeline is picked (and saved) first.
        return super().get_inline_instances(request, obj) if obj is not None else []

    def get_formset_kwargs(self, request: HttpRequest, obj: Pipeline, inline, prefix: str) -> dict[str, Any]:
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        kwargs["form_kwargs"] = {"pipeline_id": obj.pipeline_id if obj is not None else None}
        # Offered on the page only: the browser posts the row back as typed data, like any other row.
        if request.method == "GET":
            status = request.GET.get("add_rule_status", "")[:50]
            stage = request.GET.get("add_rule_stage", "")[:50]
            if status or stage:
                kwargs["initial"] = [{"order_status": status, "deal_stage": stage}]
        return kwargs


class PipelineSaving:
    """Saving a pipeline: its impact on existing links is shown first (the save rolls back until confirmed),
    then the change is recorded in the mapping's history with the resync the manager chose."""

    def save_form(self, request: HttpRequest, form: forms.ModelForm, change: bool):
        obj = super().save_form(request, form, change)
        obj._admin_form = form  # the rules' check puts pipeline-level errors on this form
        return obj

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ):
        if request.method == "POST":
            request._mapping_before = mapping_export()
        # A form posted back with errors is the same page: it says when the names were read, as its dropdowns
        # show them (the stored mapping's warnings are a GET's only: a POST shows the posted rules' own).
        extra_context = {
            **(extra_context or {}),
            **self._form_context(request, object_id, stored_warnings=request.method != "POST"),
        }
        try:
            response = super().changeform_view(request, object_id, form_url, extra_context)
        except _ConfirmationNeeded as needed:
            # The save was rolled back; nothing changed. Show what it would do, counted outside it.
            needed.impact = mapping_impact(before=needed.before, after=needed.after)
            obj = self.get_object(request, unquote(object_id)) if object_id else None
            return self._confirmation(request, needed, obj=obj)
        _impact_after_save(request)
        return response

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None):
        response = super().delete_view(request, object_id, extra_context)
        _impact_after_save(request)
        return response

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None):
        response = super().changelist_view(request, extra_context)
        _impact_after_save(request)  # the "delete selected" action
        return response

    def _form_context(
        self, request: HttpRequest, object_id: str | None, *, stored_warnings: bool = True
    ) -> dict[str, Any]:
        # The add page offers the names too (the statuses, the CRM's pipelines): it says when they were read.
        context: dict[str, Any] = {
            "can_refresh_catalog": roles.user_can(request.user, roles.REFRESH_CATALOG),
            "catalog_refreshed_at": catalog_refreshed_at(),
        }
        obj = self.get_object(request, unquote(object_id)) if object_id is not None else None
        if obj is None:
            return context
        context["catalog_known"] = catalog.catalog_knows_pipeline(obj.pipeline_id)
        if stored_warnings:
            context["mapping_warnings"] = [problem_text(p) for p in self._problems_for(obj.pipeline_id)]
        return context

    def _problems_for(self, pipeline_id: int) -> list[Problem]:
        return _stored_problems(pipeline_id)

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if "awaiting_payment_statuses" in form.cleaned_data:
            _awaiting_store(form.cleaned_data["awaiting_payment_statuses"])
        self._mapping_changed(
            request,
            source=MappingChangeSource.ADMIN_FORM,
            warnings=list(getattr(form.instance, "_mapping_warnings", [])),
            doubtful=bool(getattr(form.instance, "_mapping_new_warnings", False)),
        )

    def _mapping_changed(
        self, request: HttpRequest, *, source: str, warnings: list[str], doubtful: bool
    ) -> None:
        """Inside the save's transaction: show the impact first (rolling back), or record the change and
        queue the resync the manager chose."""
        before = request._mapping_before
        after = mapping_export()
        if before == after:
            return
        decision = confirmed(request, after)
        if decision is None and (doubtful or mapping_affects_links(before=before, after=after)):
            raise _ConfirmationNeeded(before=before, after=after, impact=None, warnings=warnings)
        change = mapping_change_record(before=before, after=after, source=source, user=request.user)
        request._mapping_saved = (change, before, after, decision == "resync")

    def delete_model(self, request: HttpRequest, obj: Pipeline) -> None:
        before = mapping_export()
        super().delete_model(request, obj)
        self._deleted(request, before)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        before = mapping_export()
        super().delete_queryset(request, queryset)
        self._deleted(request, before)

    def _deleted(self, request: HttpRequest, before: dict[str, Any]) -> None:
        after = mapping_export()
        change = mapping_change_record(
            before=before, after=after, source=MappingChangeSource.ADMIN_DELETE, user=request.user
        )
        request._mapping_saved = (change, before, after, False)

    def response_add(self, request: HttpRequest, obj: Pipeline, post_url_continue: str | None = None):
        # The rules come next: they need the pipeline's stages, which the add page could not offer. A rule
        # asked for from "add a rule for this value" is still waiting there.
        if "_addanother" not in request.POST and "_popup" not in request.POST:
            request.POST = request.POST.copy()
            request.POST["_continue"] = "1"
            prefill = {k: request.GET[k] for k in ("add_rule_status", "add_rule_stage") if request.GET.get(k)}
            if prefill:
                post_url_continue = (
                    reverse("admin:statussync_pipeline_change", args=[obj.pk]) + "?" + urlencode(prefill)
                )
        return super().response_add(request, obj, post_url_continue)

    def _confirmation(self, request: HttpRequest, needed: _ConfirmationNeeded, *, obj: Pipeline | None):
        return confirmation_response(
            self,
            request,
            before=needed.before,
            after=needed.after,
            impact=needed.impact,
            warnings=needed.warnings,
            hidden=[
                (name, value)
                for name, values in request.POST.lists()
                if name not in ("csrfmiddlewaretoken", DECISION, PREVIEWED)
                for value in values
            ],
            title=_("Check the change before it is saved"),
            original=obj,
        )


@admin.register(Pipeline)
class PipelineAdmin(PipelineList, PipelineFormLayout, PipelineSaving, NamedListAdmin):
    """Pipeline mappings: the list, the form and its save above, and the mapping file's import and export
    and the catalog's refresh as pages of their own."""

    form = PipelineForm
    inlines = [StatusRuleInline]
    change_form_template = "admin/statussync/pipeline/change_form.html"

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("import/", wrap(self.import_view), name="statussync_pipeline_import"),
            path("export/", wrap(self.export_view), name="statussync_pipeline_export"),
            path("refresh-names/", wrap(self.refresh_view), name="statussync_pipeline_refresh"),
            *super().get_urls(),
        ]

    def import_view(self, request: HttpRequest) -> HttpResponse:
        return mapping_import_view(self, request)

    def export_view(self, request: HttpRequest) -> HttpResponse:
        return mapping_export_view(self, request)

    def refresh_view(self, request: HttpRequest) -> HttpResponse:
        return catalog_refresh_view(self, request)


def _impact_after_save(request: HttpRequest) -> None:
    """Count and record the impact of the mapping change this request saved, once its transaction is over:
    counting every link inside it would hold intake's writes to the links for as long [review finding 13]."""
    saved = getattr(request, "_mapping_saved", None)
    if saved is None:
        return
    request._mapping_saved = None
    change, before, after, resync = saved
    impact_record(request, change, mapping_impact(before=before, after=after), resync=resync)


def _awaiting_store(statuses: list[str]) -> None:
    """Replace the awaiting-payment statuses, keeping the rows (and export order) of those that stay."""
    AwaitingPaymentStatus.objects.exclude(order_status__in=statuses).delete()
    present = set(AwaitingPaymentStatus.objects.values_list("order_status", flat=True))
    AwaitingPaymentStatus.objects.bulk_create(
        AwaitingPaymentStatus(order_status=s) for s in statuses if s not in present
    )


def mapping_editor_url(*, pipeline_id: int, status: str = "", stage: str = "") -> str:
    """Where to add a rule for a value seen unmapped: the pipeline's editor with a new row prefilled, or,
    for a pipeline not mapped yet, its add page (which goes on to the editor with the row prefilled)."""
    prefill = {k: v for k, v in (("add_rule_status", status), ("add_rule_stage", stage)) if v}
    pk = Pipeline.objects.filter(pipeline_id=pipeline_id).values_list("pk", flat=True).first()
    if pk is not None:
        url = reverse("admin:statussync_pipeline_change", args=[pk])
    else:
        url = reverse("admin:statussync_pipeline_add")
        prefill = {"pipeline_id": str(pipeline_id), **prefill}
    return f"{url}?{urlencode(prefill)}" if prefill else url


__all__ = ["PipelineAdmin", "mapping_editor_url"]

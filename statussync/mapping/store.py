"""The stored status ↔ stage mapping: import a document (validated by `statussync.mapping.validate` against
the catalog's snapshot, then stored whole, atomically, with its change recorded), export it, check it, and
load it for the engine.

`statussync.mapping.validate` and `statussync.mapping.document` decide (parse, validate, diff: pure functions
of documents and a `CatalogSnapshot`); this module does the reading and writing around it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Prefetch
from django.utils.translation import gettext as _

from statussync import engine
from statussync.mapping.catalog import catalog_snapshot
from statussync.mapping.document import ParsedMapping, mapping_of_document
from statussync.mapping.validate import MappingError, Problem, mapping_parse, mapping_validate
from statussync.models import (
    AwaitingPaymentStatus,
    MappingChange,
    MappingChangeSource,
    Pipeline,
    StatusRule,
)


@dataclass(frozen=True)
class ImportSummary:
    """What `mapping_import` stored, and the warnings about it."""

    pipelines: int
    rules: int
    awaiting_payment_statuses: int
    changed: bool
    warnings: tuple[Problem, ...] = ()
    change: MappingChange | None = None

    def describe(self) -> str:
        """A one-line summary for people."""
        counts = _describe_counts(
            pipelines=self.pipelines, rules=self.rules, awaiting=self.awaiting_payment_statuses
        )
        text = _("mapping imported: %(counts)s") % {"counts": counts}
        return text if self.changed else text + " " + _("(no change)")


def mapping_import(
    *,
    data: Any,
    source: str = MappingChangeSource.COMMAND,
    user: Any = None,
    username: str = "",
) -> ImportSummary:
    """Validate `data` and replace the whole stored mapping with it, atomically; record the change.

    On any error raises MappingError and the stored mapping stays exactly as it was. Warnings are returned
    in the summary.
    """
    parsed = mapping_parse(data=data)
    problems = mapping_validate(parsed=parsed, known=catalog_snapshot())
    errors = [p for p in problems if p.level == "error"]
    if errors:
        raise MappingError(errors)
    document = parsed.as_document()
    summary = ImportSummary(
        pipelines=len(parsed.pipelines),
        rules=sum(len(p.rules) for p in parsed.pipelines),
        awaiting_payment_statuses=len(parsed.awaiting_payment_statuses),
        changed=True,
        warnings=tuple(problems),
    )
    try:
        with transaction.atomic():
            before = mapping_export()
            if before == document:
                # Re-importing the same file (e.g. on every deploy) writes nothing and keeps row ids.
                return replace(summary, changed=False)
            mapping_store(parsed=parsed)
            change = mapping_change_record(
                before=before, after=document, source=source, user=user, username=username
            )
    except IntegrityError as exc:
        # Validation mirrors the constraints, so this is a concurrent import (or a bug); the rollback kept
        # the old mapping either way.
        raise MappingError([Problem("error", "", "database_refused", {"error": exc})]) from exc
    return replace(summary, change=change)


def mapping_store(*, parsed: ParsedMapping) -> None:
    """Replace the stored mapping with `parsed` (inside the caller's transaction; no validation)."""
    StatusRule.objects.all().delete()
    Pipeline.objects.all().delete()
    AwaitingPaymentStatus.objects.all().delete()
    AwaitingPaymentStatus.objects.bulk_create(
        AwaitingPaymentStatus(order_status=s) for s in parsed.awaiting_payment_statuses
    )
    rules: list[StatusRule] = []
    for p in parsed.pipelines:
        pipeline = Pipeline.objects.create(
            pipeline_id=p.pipeline, paid_stage=p.paid_stage, conflict_policy=p.conflict_policy
        )
        rules += [
            StatusRule(
                pipeline=pipeline,
                order_status=r.order_status,
                deal_stage=r.deal_stage,
                direction=r.direction,
            )
            for r in p.rules
        ]
    # bulk_create inserts in list order, so rule ids (export order) follow the file.
    StatusRule.objects.bulk_create(rules)


def mapping_change_record(
    *, before: dict[str, Any], after: dict[str, Any], source: str, user: Any = None, username: str = ""
) -> MappingChange | None:
    """Record who changed the mapping, when, and the whole document before and after (None: no change)."""
    if before == after:
        return None
    if user is not None and getattr(user, "pk", None) is None:
        user = None
    if not username and user is not None:
        username = user.get_username()
    return MappingChange.objects.create(
        user=user, username=username[:150], source=source, before=before, after=after
    )


def mapping_export() -> dict[str, Any]:
    """The stored mapping as the JSON document `mapping_import` accepts (pipelines by id, rules by id)."""
    pipelines = Pipeline.objects.order_by("pipeline_id").prefetch_related(
        Prefetch("rules", queryset=StatusRule.objects.order_by("id"))
    )
    return {
        "awaiting_payment_statuses": list(
            AwaitingPaymentStatus.objects.order_by("id").values_list("order_status", flat=True)
        ),
        "pipelines": [
            {
                "pipeline": p.pipeline_id,
                "paid_stage": p.paid_stage,
                "conflict_policy": p.conflict_policy,
                "rules": [
                    {"order_status": r.order_status, "deal_stage": r.deal_stage, "direction": r.direction}
                    for r in p.rules.all()
                ],
            }
            for p in pipelines
        ],
    }


def mapping_check() -> list[Problem]:
    """The stored mapping's errors and warnings (the shared validator); an empty list means it looks fine.

    The import refuses errors, but a mapping stored by an older version, or before the catalog of names
    knew the portals, may have some.
    """
    document = mapping_export()
    try:
        parsed = mapping_parse(data=document)
    except MappingError as exc:  # stored by hand or by an older version
        return exc.items
    return mapping_validate(parsed=parsed, known=catalog_snapshot())


# How many times `mapping_load` reads again a mapping that changed while it was read.
LOAD_ATTEMPTS = 5


def mapping_load() -> engine.Mapping:
    """The stored mapping as the engine's Mapping: one consistent snapshot, in five queries.

    The mapping is three tables that an import replaces whole (new primary keys), read by three queries;
    under READ COMMITTED an import committing between them would give pipelines without their rules, and
    links would come out "unmapped". Every change records a MappingChange in its own transaction, so the
    latest change's id is the mapping's version: the same before and after the three queries means no change
    committed in between. `success_stages` stays empty: the services layer fills it from the CRM's stage list.
    """
    for _attempt in range(LOAD_ATTEMPTS):
        version = mapping_version()
        document = mapping_export()
        if mapping_version() == version:
            return mapping_of_document(document)
    # Changed under every attempt: the caller's jobs are retried later rather than decided on a half mapping.
    raise MappingChangingError(f"the mapping changed while it was read, {LOAD_ATTEMPTS} times in a row")


class MappingChangingError(RuntimeError):
    """The mapping kept changing while `mapping_load` read it."""


def mapping_version() -> int:
    """The mapping's version: the id of its latest recorded change (0 before the first)."""
    return MappingChange.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _describe_counts(*, pipelines: int, rules: int, awaiting: int) -> str:
    return _("%(pipelines)s pipeline(s), %(rules)s rule(s), %(awaiting)s awaiting-payment status(es)") % {
        "pipelines": pipelines,
        "rules": rules,
        "awaiting": awaiting,
    }


def mapping_describe() -> str:
    """A one-line count of the stored mapping, e.g. for `statusmap check`."""
    return _describe_counts(
        pipelines=Pipeline.objects.count(),
        rules=StatusRule.objects.count(),
        awaiting=AwaitingPaymentStatus.objects.count(),
    )

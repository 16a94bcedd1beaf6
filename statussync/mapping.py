"""The status ↔ stage mapping as a JSON document: parse, import, export, check, and load it for the engine.

The document's shape is a public contract (DESIGN.md "The mapping file"); `mapping_export` and
`mapping_import` round-trip it exactly. Validation collects every problem at once, each prefixed with its
JSON path, so a manager fixes a file in one pass instead of one error per run.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, replace
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Prefetch

from statussync import engine
from statussync.models import AwaitingPaymentStatus, ConflictPolicy, Direction, Pipeline, StatusRule

# The model columns' limits: SQLite would store longer values silently, PostgreSQL would fail mid-import.
_MAX_VALUE_LENGTH = 50
_MAX_PIPELINE_ID = 2**31 - 1

_TOP_KEYS = ("awaiting_payment_statuses", "pipelines")
_PIPELINE_KEYS = ("pipeline", "paid_stage", "conflict_policy", "rules")
_RULE_KEYS = ("order_status", "deal_stage", "direction")
_DIRECTIONS = tuple(Direction.values)
_POLICIES = tuple(ConflictPolicy.values)
_TO_CRM = frozenset({Direction.BOTH.value, Direction.TO_CRM.value})
_TO_CMS = frozenset({Direction.BOTH.value, Direction.TO_CMS.value})
_STAGE_PREFIX = re.compile(r"^C(\d+):")


class MappingError(Exception):
    """The mapping was refused; `problems` lists every reason, each starting with its JSON path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} problem(s): " + "; ".join(self.problems))


@dataclass(frozen=True)
class ParsedRule:
    """One validated rule."""

    order_status: str
    deal_stage: str
    direction: str


@dataclass(frozen=True)
class ParsedPipeline:
    """One validated pipeline, defaults filled in."""

    pipeline: int
    paid_stage: str
    conflict_policy: str
    rules: tuple[ParsedRule, ...]


@dataclass(frozen=True)
class ParsedMapping:
    """A validated mapping document, ready to store."""

    awaiting_payment_statuses: tuple[str, ...]
    pipelines: tuple[ParsedPipeline, ...]

    def as_document(self) -> dict[str, Any]:
        """The document `mapping_export` would print once this mapping is stored."""
        return {
            "awaiting_payment_statuses": list(self.awaiting_payment_statuses),
            "pipelines": [
                {
                    "pipeline": p.pipeline,
                    "paid_stage": p.paid_stage,
                    "conflict_policy": p.conflict_policy,
                    "rules": [
                        {"order_status": r.order_status, "deal_stage": r.deal_stage, "direction": r.direction}
                        for r in p.rules
                    ],
                }
                # Export lists pipelines by id, so an unsorted file is not reported as a change forever.
                for p in sorted(self.pipelines, key=lambda p: p.pipeline)
            ],
        }


@dataclass(frozen=True)
class ImportSummary:
    """What `mapping_import` stored."""

    pipelines: int
    rules: int
    awaiting_payment_statuses: int
    changed: bool

    def describe(self) -> str:
        """A one-line summary for people."""
        counts = _describe_counts(
            pipelines=self.pipelines, rules=self.rules, awaiting=self.awaiting_payment_statuses
        )
        return f"mapping imported: {counts}" + ("" if self.changed else " (no change)")


class _DuplicateKeyError(ValueError):
    pass


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys silently; a doubled "direction" must not lose a value.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def mapping_decode(*, text: str) -> Any:
    """Decode a mapping file's text; a syntax error raises MappingError naming its line and column."""
    try:
        return json.loads(text.removeprefix("\ufeff"), object_pairs_hook=_refuse_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise MappingError([f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]) from exc
    except _DuplicateKeyError as exc:
        raise MappingError([f"invalid JSON: key {json.dumps(str(exc))} appears twice in one object"]) from exc


class _Problems:
    """Collects problems with their JSON paths."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")

    def object(self, value: Any, path: str, allowed: tuple[str, ...], required: tuple[str, ...]) -> bool:
        if not isinstance(value, dict):
            self.add(path, f"must be an object, not {_type_name(value)}")
            return False
        prefix = f"{path}." if path != "(top level)" else ""
        for key in value:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), allowed, n=1)
                why = f"did you mean {hint[0]}?" if hint else f"expected one of {', '.join(allowed)}"
                self.add(f"{prefix}{key}", f"unknown key; {why}")
        for key in required:
            if key not in value:
                self.add(f"{prefix}{key}", "required")
        return True

    def string(self, value: Any, path: str, *, allow_empty: bool = False) -> str | None:
        if not isinstance(value, str):
            self.add(path, f"must be a string, not {_type_name(value)}")
            return None
        if not value and not allow_empty:
            self.add(path, "must not be empty")
            return None
        if value != value.strip():
            self.add(path, f"{_q(value)} has leading or trailing spaces")
            return None
        if len(value) > _MAX_VALUE_LENGTH:
            self.add(path, f"longer than {_MAX_VALUE_LENGTH} characters")
            return None
        return value

    def choice(self, value: Any, path: str, choices: tuple[str, ...]) -> str | None:
        if not isinstance(value, str) or value not in choices:
            self.add(path, f"must be one of {', '.join(choices)}")
            return None
        return value


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def mapping_parse(*, data: Any) -> ParsedMapping:
    """Validate a decoded mapping document (DESIGN.md "The mapping file").

    Raises MappingError with every problem found, not just the first.
    """
    problems = _Problems()
    if not problems.object(data, "(top level)", _TOP_KEYS, required=("pipelines",)):
        raise MappingError(problems.items)

    awaiting = _parse_awaiting(problems, data.get("awaiting_payment_statuses", []))
    pipelines: list[ParsedPipeline] = []
    raw_pipelines = data.get("pipelines", [])
    if not isinstance(raw_pipelines, list):
        problems.add("pipelines", f"must be a list, not {_type_name(raw_pipelines)}")
        raw_pipelines = []
    first_seen: dict[int, int] = {}
    for index, raw in enumerate(raw_pipelines):
        parsed = _parse_pipeline(problems, raw, f"pipelines[{index}]")
        # Checked on the raw id, so a duplicate is reported even when the pipeline has other problems too.
        pipeline_id = raw.get("pipeline") if isinstance(raw, dict) else None
        if type(pipeline_id) is int and pipeline_id in first_seen:
            problems.add(
                f"pipelines[{index}].pipeline",
                f"pipeline {pipeline_id} is already defined in pipelines[{first_seen[pipeline_id]}]",
            )
            continue
        if type(pipeline_id) is int:
            first_seen[pipeline_id] = index
        if parsed is not None:
            pipelines.append(parsed)

    if problems.items:
        raise MappingError(problems.items)
    return ParsedMapping(awaiting_payment_statuses=tuple(awaiting), pipelines=tuple(pipelines))


def _parse_awaiting(problems: _Problems, raw: Any) -> list[str]:
    if not isinstance(raw, list):
        problems.add("awaiting_payment_statuses", f"must be a list, not {_type_name(raw)}")
        return []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        path = f"awaiting_payment_statuses[{index}]"
        value = problems.string(item, path)
        if value is None:
            continue
        if value in seen:
            problems.add(path, f"{_q(value)} is already listed at [{seen[value]}]")
            continue
        seen[value] = index
    return list(seen)


def _parse_pipeline(problems: _Problems, raw: Any, path: str) -> ParsedPipeline | None:
    """The pipeline, or None when it has a problem (already recorded)."""
    before = len(problems.items)
    if not problems.object(raw, path, _PIPELINE_KEYS, required=("pipeline", "rules")):
        return None

    pipeline_id = raw.get("pipeline")
    # bool is an int in Python; `true` as a pipeline id is a mistake, not pipeline 1.
    if "pipeline" in raw and (type(pipeline_id) is not int or not 0 <= pipeline_id <= _MAX_PIPELINE_ID):
        problems.add(f"{path}.pipeline", "must be a whole number ≥ 0 (0 is the default pipeline)")
    paid_stage = problems.string(raw.get("paid_stage", ""), f"{path}.paid_stage", allow_empty=True)
    policy = problems.choice(
        raw.get("conflict_policy", ConflictPolicy.LATEST.value), f"{path}.conflict_policy", _POLICIES
    )

    raw_rules = raw.get("rules", [])
    if not isinstance(raw_rules, list):
        problems.add(f"{path}.rules", f"must be a list, not {_type_name(raw_rules)}")
        raw_rules = []
    indexed: list[tuple[int, ParsedRule]] = []
    for index, raw_rule in enumerate(raw_rules):
        rule = _parse_rule(problems, raw_rule, f"{path}.rules[{index}]")
        if rule is not None:
            indexed.append((index, rule))
    rules = _check_rule_conflicts(problems, indexed, path)

    if len(problems.items) > before:
        return None
    return ParsedPipeline(
        pipeline=pipeline_id, paid_stage=paid_stage or "", conflict_policy=policy or "", rules=tuple(rules)
    )


def _parse_rule(problems: _Problems, raw: Any, path: str) -> ParsedRule | None:
    before = len(problems.items)
    if not problems.object(raw, path, _RULE_KEYS, required=("order_status", "deal_stage")):
        return None
    order_status = deal_stage = None
    if "order_status" in raw:
        order_status = problems.string(raw["order_status"], f"{path}.order_status")
    if "deal_stage" in raw:
        deal_stage = problems.string(raw["deal_stage"], f"{path}.deal_stage")
    direction = problems.choice(raw.get("direction", Direction.BOTH.value), f"{path}.direction", _DIRECTIONS)
    if len(problems.items) > before or order_status is None or deal_stage is None or direction is None:
        return None
    return ParsedRule(order_status=order_status, deal_stage=deal_stage, direction=direction)


def _check_rule_conflicts(
    problems: _Problems, indexed: list[tuple[int, ParsedRule]], path: str
) -> list[ParsedRule]:
    """Refuse a source value with two targets in one direction (DESIGN.md), and repeated rules.

    A repeat with the same target is refused too: the database allows one row per source value and
    direction, and a silently merged duplicate would make export differ from the file.
    """
    identical: dict[ParsedRule, int] = {}
    seen: dict[str, dict[str, tuple[int, ParsedRule]]] = {"to_crm": {}, "to_cms": {}}
    accepted: list[ParsedRule] = []
    for index, rule in indexed:
        rule_path = f"{path}.rules[{index}]"
        if rule in identical:
            problems.add(rule_path, f"duplicate of rules[{identical[rule]}]")
            continue
        identical[rule] = index
        ok = True
        for direction in ("to_crm", "to_cms"):
            if rule.direction in (Direction.BOTH, direction):
                ok = _claim(problems, seen[direction], index, rule, rule_path, direction=direction) and ok
        if ok:
            accepted.append(rule)
    return accepted


def _claim(
    problems: _Problems,
    seen: dict[str, tuple[int, ParsedRule]],
    index: int,
    rule: ParsedRule,
    rule_path: str,
    *,
    direction: str,
) -> bool:
    """Record the rule's source → target in `direction`; False (and a problem) if the source already maps."""
    if direction == "to_crm":
        field, what, target_what = "order_status", "order status", "deal stage"
        source, target = rule.order_status, rule.deal_stage
    else:
        field, what, target_what = "deal_stage", "deal stage", "order status"
        source, target = rule.deal_stage, rule.order_status
    if source not in seen:
        seen[source] = (index, rule)
        return True
    other_index, other = seen[source]
    other_target = other.deal_stage if direction == "to_crm" else other.order_status
    if other_target == target:
        message = (
            f"{what} {_q(source)} → {_q(target)} in direction {direction} is already given by "
            f"rules[{other_index}] (direction {other.direction}); remove one of them"
        )
    else:
        message = (
            f"{what} {_q(source)} already maps to {target_what} {_q(other_target)} in direction {direction} "
            f"(rules[{other_index}]); within one pipeline and direction it may map to one {target_what} only"
        )
    problems.add(f"{rule_path}.{field}", message)
    return False


def mapping_import(*, data: Any) -> ImportSummary:
    """Validate `data` and replace the whole stored mapping with it, atomically.

    On any problem raises MappingError and the stored mapping stays exactly as it was.
    """
    parsed = mapping_parse(data=data)
    document = parsed.as_document()
    summary = ImportSummary(
        pipelines=len(parsed.pipelines),
        rules=sum(len(p.rules) for p in parsed.pipelines),
        awaiting_payment_statuses=len(parsed.awaiting_payment_statuses),
        changed=True,
    )
    try:
        with transaction.atomic():
            if mapping_export() == document:
                # Re-importing the same file (e.g. on every deploy) writes nothing and keeps row ids.
                return replace(summary, changed=False)
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
    except IntegrityError as exc:
        # Validation mirrors the constraints, so this is a concurrent import (or a bug); the rollback kept
        # the old mapping either way.
        raise MappingError([f"the database refused the mapping ({exc}); nothing changed, try again"]) from exc
    return summary


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


def mapping_check() -> list[str]:
    """Problems with the stored mapping, as sentences for a manager; an empty list means it looks fine.

    These are things the import accepts on purpose (a pipeline can be set up in steps) but that make the
    sync do less than a manager probably expects.
    """
    document = mapping_export()
    problems: list[str] = []
    if not document["pipelines"]:
        problems.append("no pipelines are mapped: nothing will be synced")
    mentioned: set[str] = set()
    for p in document["pipelines"]:
        n = p["pipeline"]
        mentioned.update(r["order_status"] for r in p["rules"])
        if not p["rules"]:
            problems.append(f"pipeline {n} has no rules: statuses and stages of its deals are never synced")
        if not p["paid_stage"]:
            problems.append(
                f"pipeline {n} has no paid_stage: a payment moves its deals only through the status rules"
            )
        else:
            mismatch = _stage_prefix_problem(pipeline=n, stage=p["paid_stage"])
            if mismatch:
                problems.append(f"pipeline {n}: paid_stage {mismatch}")
        for index, r in enumerate(p["rules"]):
            mismatch = _stage_prefix_problem(pipeline=n, stage=r["deal_stage"])
            if mismatch:
                problems.append(f"pipeline {n}: rules[{index}] deal_stage {mismatch}")
    for status in document["awaiting_payment_statuses"]:
        if status not in mentioned:
            problems.append(
                f"awaiting-payment status {_q(status)} appears in no rule: is it a typo of a shop status?"
            )
    return problems


def _stage_prefix_problem(*, pipeline: int, stage: str) -> str:
    """Bitrix names stages of pipeline n > 0 `C<n>:…` and those of pipeline 0 without a prefix."""
    match = _STAGE_PREFIX.match(stage)
    if pipeline == 0 and match:
        return (
            f"{_q(stage)} looks like a stage of pipeline {match.group(1)}; "
            "stages of pipeline 0 have no C<n>: prefix"
        )
    if pipeline != 0 and not stage.startswith(f"C{pipeline}:"):
        return f"{_q(stage)} does not start with C{pipeline}: as stages of pipeline {pipeline} do"
    return ""


def mapping_load() -> engine.Mapping:
    """The stored mapping as the engine's Mapping, in three queries.

    `success_stages` stays empty: the services layer fills it from the CRM's stage list.
    """
    pipelines: dict[int, engine.PipelineMap] = {}
    for p in Pipeline.objects.prefetch_related(Prefetch("rules", queryset=StatusRule.objects.order_by("id"))):
        to_crm: dict[str, str] = {}
        to_cms: dict[str, str] = {}
        for r in p.rules.all():
            if r.direction in _TO_CRM:
                to_crm[r.order_status] = r.deal_stage
            if r.direction in _TO_CMS:
                to_cms[r.deal_stage] = r.order_status
        pipelines[p.pipeline_id] = engine.PipelineMap(
            pipeline=p.pipeline_id,
            to_crm=to_crm,
            to_cms=to_cms,
            paid_stage=p.paid_stage,
            conflict_policy=p.conflict_policy,
        )
    awaiting = frozenset(AwaitingPaymentStatus.objects.values_list("order_status", flat=True))
    return engine.Mapping(pipelines=pipelines, awaiting_payment_statuses=awaiting)


def _describe_counts(*, pipelines: int, rules: int, awaiting: int) -> str:
    return f"{pipelines} pipeline(s), {rules} rule(s), {awaiting} awaiting-payment status(es)"


def mapping_describe() -> str:
    """A one-line count of the stored mapping, e.g. for `statusmap check`."""
    return _describe_counts(
        pipelines=Pipeline.objects.count(),
        rules=StatusRule.objects.count(),
        awaiting=AwaitingPaymentStatus.objects.count(),
    )

"""The mapping's validator: every problem with a mapping document, found at once — a manager fixes a file in
one pass, not one error per run. It serves `statusmap import`/`check` and the admin's forms.

Each problem is a `Problem` with a level, the JSON path it is about (the admin puts it on the field of that
path) and a code with parameters, rendered for a file (`pipelines[0].rules[2].deal_stage: deal stage "C1:WON"
…`) or for the form (names from the catalog, "the rule on row 3"). `mapping_decode` and `mapping_parse` check
the text and the shape (errors only); `mapping_validate` is a pure function of the parsed mapping and a
`CatalogSnapshot` of what the portals list; its callers (`mapping_store.mapping_import`,
`mapping_store.mapping_check`, the admin) read the snapshot.

- Errors refuse the mapping: a malformed document, a source value with two targets in one direction, a
  repeated rule, a stage of another pipeline (the engine cannot write it: `crm.deal.update` ignores a stage
  of another pipeline [docs/bitrix.md "Deals"]).
- Warnings are accepted but probably not what the manager meant: a lossy round trip (a status goes out as a
  stage that comes back as another status), a code the portal does not list, a paid stage that is a failure
  stage, a pipeline with no rules or no paid stage, an awaiting-payment status no rule uses.
- Notes are worth knowing but common: a paid stage no rule maps back to a status (the contract's example).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from statussync.mapping.catalog import CatalogSnapshot
from statussync.mapping.document import TO_CMS, TO_CRM, ParsedMapping, ParsedPipeline, ParsedRule
from statussync.models import ConflictPolicy, Direction, StageSemantics

# The model columns' limits: SQLite would store longer values silently, PostgreSQL would fail mid-import.
_MAX_VALUE_LENGTH = 50
_MAX_PIPELINE_ID = 2**31 - 1

_TOP_KEYS = ("awaiting_payment_statuses", "pipelines")
_PIPELINE_KEYS = ("pipeline", "paid_stage", "conflict_policy", "rules")
_RULE_KEYS = ("order_status", "deal_stage", "direction")
_DIRECTIONS = tuple(Direction.values)
_POLICIES = tuple(ConflictPolicy.values)
# Bitrix names the stages of pipeline n > 0 `C<n>:…` and those of pipeline 0 without a prefix
# [docs/bitrix.md "Stages and pipelines"].
_STAGE_PREFIX = re.compile(r"^C(\d+):")

# error: refused. warning: accepted, probably not meant (`statusmap check` fails). note: accepted, worth
# knowing, and common enough that a check failing on it would cry wolf (the contract's own example has one).
Level = Literal["error", "warning", "note"]


# --- problems ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """An order status code inside a problem's parameters."""

    code: str


@dataclass(frozen=True)
class Stage:
    """A deal stage code inside a problem's parameters."""

    code: str


@dataclass(frozen=True)
class DirectionRef:
    """A rule's direction inside a problem's parameters: the file's code, or its name on a form."""

    code: str


@dataclass(frozen=True)
class RuleRef:
    """Another rule of the same pipeline, by its index in the pipeline's `rules`."""

    index: int


# The texts, by code. Parameters in %(name)s form; Status/Stage/RuleRef parameters are rendered per reader.
TEXTS: dict[str, Any] = {
    # The document's shape.
    "not_object": gettext_lazy("must be an object, not %(type)s"),
    "not_list": gettext_lazy("must be a list, not %(type)s"),
    "not_string": gettext_lazy("must be a string, not %(type)s"),
    "unknown_key_hint": gettext_lazy("unknown key; did you mean %(hint)s?"),
    "unknown_key": gettext_lazy("unknown key; expected one of %(keys)s"),
    "required": gettext_lazy("required"),
    "empty": gettext_lazy("must not be empty"),
    "spaces": gettext_lazy("%(value)s has leading or trailing spaces"),
    "too_long": gettext_lazy("longer than %(max)s characters"),
    "choice": gettext_lazy("must be one of %(choices)s"),
    "pipeline_id": gettext_lazy("must be a whole number ≥ 0 (0 is the default pipeline)"),
    "pipeline_twice": gettext_lazy("pipeline %(pipeline)s is already defined in pipelines[%(index)s]"),
    "awaiting_twice": gettext_lazy("%(value)s is already listed at [%(index)s]"),
    "invalid_json": gettext_lazy("invalid JSON at line %(line)s, column %(column)s: %(message)s"),
    "key_twice": gettext_lazy("invalid JSON: key %(key)s appears twice in one object"),
    "database_refused": gettext_lazy(
        "the database refused the mapping (%(error)s); nothing changed, try again"
    ),
    # Rules that contradict each other (errors: the engine could not decide).
    "duplicate_rule": gettext_lazy("duplicate of %(rule)s"),
    "status_repeated": gettext_lazy(
        "order status %(source)s → %(target)s in direction %(direction)s is already given by %(rule)s "
        "(direction %(other_direction)s); remove one of them"
    ),
    "stage_repeated": gettext_lazy(
        "deal stage %(source)s → %(target)s in direction %(direction)s is already given by %(rule)s "
        "(direction %(other_direction)s); remove one of them"
    ),
    "status_two_stages": gettext_lazy(
        "order status %(source)s already maps to deal stage %(other)s in direction %(direction)s "
        "(%(rule)s); within one pipeline and direction it may map to one deal stage only"
    ),
    "stage_two_statuses": gettext_lazy(
        "deal stage %(source)s already maps to order status %(other)s in direction %(direction)s "
        "(%(rule)s); within one pipeline and direction it may map to one order status only"
    ),
    # Stages the engine cannot write (errors).
    "stage_of_pipeline": gettext_lazy(
        "%(stage)s is a stage of pipeline %(other)s: a deal of pipeline %(pipeline)s never has it, and the "
        "CRM ignores it when bxsync writes it"
    ),
    "stage_prefix_other": gettext_lazy(
        "%(stage)s looks like a stage of pipeline %(other)s (its C%(other)s: prefix); stages of pipeline 0 "
        "have no C<n>: prefix"
    ),
    "stage_prefix_missing": gettext_lazy(
        "%(stage)s does not start with C%(pipeline)s: as stages of pipeline %(pipeline)s do"
    ),
    # Accepted, but probably not meant (warnings).
    "no_pipelines": gettext_lazy("no pipelines are mapped: nothing will be synced"),
    "no_rules": gettext_lazy(
        "pipeline %(pipeline)s has no rules: statuses and stages of its deals are never synced"
    ),
    "no_paid_stage": gettext_lazy(
        "pipeline %(pipeline)s has no paid stage: a payment moves its deals only through the status rules"
    ),
    "paid_stage_unmapped": gettext_lazy(
        "the paid stage %(stage)s has no rule back to an order status: a deal a manager moves there "
        "changes nothing in the shop, and a pair first seen there is a conflict"
    ),
    "paid_stage_failure": gettext_lazy(
        "the paid stage %(stage)s is a failure stage: every paid order would close its deal as lost"
    ),
    "lossy_round_trip": gettext_lazy(
        "order status %(status)s goes out as deal stage %(stage)s, which comes back as order status "
        "%(back)s (%(rule)s): the shop would not get its own status back"
    ),
    "stage_not_in_crm": gettext_lazy("%(stage)s is not a stage of pipeline %(pipeline)s in the CRM"),
    "status_not_in_shop": gettext_lazy("%(status)s is not an order status of the shop"),
    "pipeline_not_in_crm": gettext_lazy("pipeline %(pipeline)s is not in the CRM"),
    "awaiting_in_no_rule": gettext_lazy(
        "awaiting-payment status %(status)s appears in no rule: is it a typo of a shop status?"
    ),
}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    names = {
        bool: gettext_lazy("a boolean"),
        int: gettext_lazy("a number"),
        float: gettext_lazy("a number"),
        str: gettext_lazy("a string"),
        list: gettext_lazy("a list"),
        dict: gettext_lazy("an object"),
    }
    return str(names.get(type(value), type(value).__name__))


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class Problem:
    """One problem with a mapping: `level` error (refused) or warning (accepted), the JSON `path` it is
    about ("" for the whole document), and a code with parameters."""

    level: Level
    path: str
    code: str
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def message(
        self,
        *,
        for_form: bool = False,
        rule_name: Callable[[int], str] | None = None,
        status: Callable[[str], str] = _q,
        stage: Callable[[str], str] = _q,
    ) -> str:
        """The sentence in the reader's language. Order statuses pass through `status` and deal stages through
        `stage` (quoted, for a file; the admin passes the catalog's "name (code)" labels); other rules are
        `rules[i]` for a file, "the rule on row n" for the form, or what `rule_name` says."""

        def show(value: Any) -> Any:
            if isinstance(value, Status):
                return status(value.code)
            if isinstance(value, Stage):
                return stage(value.code)
            if isinstance(value, DirectionRef):
                # A file says to_cms; a form shows the direction as its dropdown names it.
                return (
                    _("“%(direction)s”") % {"direction": Direction(value.code).label}
                    if for_form
                    else value.code
                )
            if isinstance(value, RuleRef):
                if rule_name is not None:
                    return rule_name(value.index)
                # "the rule on row 1", not "(row 1)": shown on row 3, a bare row number reads as its own.
                if for_form:
                    return _("the rule on row %(n)s") % {"n": value.index + 1}
                return f"rules[{value.index}]"
            return value

        return str(TEXTS[self.code]) % {k: show(v) for k, v in self.params.items()}

    def __str__(self) -> str:
        text = self.message()
        return f"{self.path}: {text}" if self.path else text


class MappingError(Exception):
    """The mapping was refused: `items` holds every error; `problems` the same as text, each starting with
    its JSON path."""

    def __init__(self, items: list[Problem]) -> None:
        self.items = list(items)
        self.problems = [str(p) for p in self.items]
        super().__init__(f"{len(self.problems)} problem(s): " + "; ".join(self.problems))


class _Problems:
    """Collects problems with their JSON paths."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, path: str, code: str, level: Level = "error", **params: Any) -> None:
        self.items.append(Problem(level, path, code, params))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.items if p.level == "error"]

    def object(self, value: Any, path: str, allowed: tuple[str, ...], required: tuple[str, ...]) -> bool:
        if not isinstance(value, dict):
            self.add(path, "not_object", type=_type_name(value))
            return False
        prefix = f"{path}." if path != "(top level)" else ""
        for key in value:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), allowed, n=1)
                if hint:
                    self.add(f"{prefix}{key}", "unknown_key_hint", hint=hint[0])
                else:
                    self.add(f"{prefix}{key}", "unknown_key", keys=", ".join(allowed))
        for key in required:
            if key not in value:
                self.add(f"{prefix}{key}", "required")
        return True

    def string(self, value: Any, path: str, *, allow_empty: bool = False) -> str | None:
        if not isinstance(value, str):
            self.add(path, "not_string", type=_type_name(value))
            return None
        if not value and not allow_empty:
            self.add(path, "empty")
            return None
        if value != value.strip():
            self.add(path, "spaces", value=_q(value))
            return None
        if len(value) > _MAX_VALUE_LENGTH:
            self.add(path, "too_long", max=_MAX_VALUE_LENGTH)
            return None
        return value

    def choice(self, value: Any, path: str, choices: tuple[str, ...]) -> str | None:
        if not isinstance(value, str) or value not in choices:
            self.add(path, "choice", choices=", ".join(choices))
            return None
        return value


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
        problem = Problem(
            "error", "", "invalid_json", {"line": exc.lineno, "column": exc.colno, "message": exc.msg}
        )
        raise MappingError([problem]) from exc
    except _DuplicateKeyError as exc:
        raise MappingError([Problem("error", "", "key_twice", {"key": _q(str(exc))})]) from exc


def mapping_parse(*, data: Any) -> ParsedMapping:
    """Check a decoded mapping document's shape and rules' consistency [docs/contract.md "The mapping file"].

    Raises MappingError with every problem found, not just the first. `mapping_validate` then looks at what
    the rules mean against the portals.
    """
    problems = _Problems()
    if not problems.object(data, "(top level)", _TOP_KEYS, required=("pipelines",)):
        raise MappingError(problems.items)

    awaiting = _awaiting_parse(problems, data.get("awaiting_payment_statuses", []))
    pipelines: list[ParsedPipeline] = []
    raw_pipelines = data.get("pipelines", [])
    if not isinstance(raw_pipelines, list):
        problems.add("pipelines", "not_list", type=_type_name(raw_pipelines))
        raw_pipelines = []
    first_seen: dict[int, int] = {}
    for index, raw in enumerate(raw_pipelines):
        parsed = _pipeline_parse(problems, raw, f"pipelines[{index}]")
        # Checked on the raw id, so a duplicate is reported even when the pipeline has other problems too.
        pipeline_id = raw.get("pipeline") if isinstance(raw, dict) else None
        if type(pipeline_id) is int and pipeline_id in first_seen:
            problems.add(
                f"pipelines[{index}].pipeline",
                "pipeline_twice",
                pipeline=pipeline_id,
                index=first_seen[pipeline_id],
            )
            continue
        if type(pipeline_id) is int:
            first_seen[pipeline_id] = index
        if parsed is not None:
            pipelines.append(parsed)

    if problems.items:
        raise MappingError(problems.items)
    return ParsedMapping(awaiting_payment_statuses=tuple(awaiting), pipelines=tuple(pipelines))


def _awaiting_parse(problems: _Problems, raw: Any) -> list[str]:
    if not isinstance(raw, list):
        problems.add("awaiting_payment_statuses", "not_list", type=_type_name(raw))
        return []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        path = f"awaiting_payment_statuses[{index}]"
        value = problems.string(item, path)
        if value is None:
            continue
        if value in seen:
            problems.add(path, "awaiting_twice", value=_q(value), index=seen[value])
            continue
        seen[value] = index
    return list(seen)


def _pipeline_parse(problems: _Problems, raw: Any, path: str) -> ParsedPipeline | None:
    """The pipeline, or None when it has a problem (already recorded)."""
    before = len(problems.items)
    if not problems.object(raw, path, _PIPELINE_KEYS, required=("pipeline", "rules")):
        return None

    pipeline_id = raw.get("pipeline")
    # bool is an int in Python; `true` as a pipeline id is a mistake, not pipeline 1.
    if "pipeline" in raw and (type(pipeline_id) is not int or not 0 <= pipeline_id <= _MAX_PIPELINE_ID):
        problems.add(f"{path}.pipeline", "pipeline_id")
    paid_stage = problems.string(raw.get("paid_stage", ""), f"{path}.paid_stage", allow_empty=True)
    policy = problems.choice(
        raw.get("conflict_policy", ConflictPolicy.LATEST.value), f"{path}.conflict_policy", _POLICIES
    )

    raw_rules = raw.get("rules", [])
    if not isinstance(raw_rules, list):
        problems.add(f"{path}.rules", "not_list", type=_type_name(raw_rules))
        raw_rules = []
    indexed: list[tuple[int, ParsedRule]] = []
    for index, raw_rule in enumerate(raw_rules):
        rule = _rule_parse(problems, raw_rule, f"{path}.rules[{index}]")
        if rule is not None:
            indexed.append((index, rule))
    rules = _rules_check(problems, indexed, path)

    if len(problems.items) > before:
        return None
    return ParsedPipeline(
        pipeline=pipeline_id, paid_stage=paid_stage or "", conflict_policy=policy or "", rules=tuple(rules)
    )


def _rule_parse(problems: _Problems, raw: Any, path: str) -> ParsedRule | None:
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


def _rules_check(problems: _Problems, indexed: list[tuple[int, ParsedRule]], path: str) -> list[ParsedRule]:
    """Refuse a source value with two targets in one direction, and repeated rules (docs/contract.md).

    A repeat with the same target is refused too: the database allows one row per source value and
    direction, and a silently merged duplicate would make export differ from the file. The admin's form
    runs this on its rows before saving: Django's own formset check skips the conditional unique
    constraints, so two conflicting new rows would otherwise reach the database.
    """
    identical: dict[ParsedRule, int] = {}
    seen: dict[str, dict[str, tuple[int, ParsedRule]]] = {"to_crm": {}, "to_cms": {}}
    accepted: list[ParsedRule] = []
    for index, rule in indexed:
        rule_path = f"{path}.rules[{index}]"
        if rule in identical:
            problems.add(rule_path, "duplicate_rule", rule=RuleRef(identical[rule]))
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
    source: Status | Stage
    target: Status | Stage
    if direction == "to_crm":
        field_name, source, target = "order_status", Status(rule.order_status), Stage(rule.deal_stage)
    else:
        field_name, source, target = "deal_stage", Stage(rule.deal_stage), Status(rule.order_status)
    if source.code not in seen:
        seen[source.code] = (index, rule)
        return True
    other_index, other = seen[source.code]
    other_target = Stage(other.deal_stage) if direction == "to_crm" else Status(other.order_status)
    params: dict[str, Any]
    if other_target == target:
        code = "status_repeated" if direction == "to_crm" else "stage_repeated"
        params = {"other_direction": DirectionRef(other.direction)}
    else:
        code = "status_two_stages" if direction == "to_crm" else "stage_two_statuses"
        params = {"other": other_target}
    problems.add(
        f"{rule_path}.{field_name}",
        code,
        source=source,
        target=target,
        direction=DirectionRef(direction),
        rule=RuleRef(other_index),
        **params,
    )
    return False


# --- what the rules mean: the shared validator ------------------------------------------------------------


def mapping_validate(*, parsed: ParsedMapping, known: CatalogSnapshot) -> list[Problem]:
    """Errors and warnings about what a well-formed mapping means, against what the portals list (`known`,
    from `catalog.catalog_snapshot()`) when the catalog was read (by the stages' `C<n>:` prefixes otherwise).
    Paths are the document's, in the order of `parsed` (a file's own order).

    A pure function: the caller reads the catalog, so the same mapping and snapshot give the same problems.
    """
    problems = _Problems()
    if not parsed.pipelines:
        problems.add("", "no_pipelines", "warning")
    used_statuses: set[str] = set()
    for index, p in enumerate(parsed.pipelines):
        used_statuses.update(r.order_status for r in p.rules)
        _pipeline_validate(problems, p, f"pipelines[{index}]", known=known)
    for index, status in enumerate(parsed.awaiting_payment_statuses):
        path = f"awaiting_payment_statuses[{index}]"
        if known.has_statuses and not known.status_is_known(status):
            problems.add(path, "status_not_in_shop", "warning", status=Status(status))
        elif status not in used_statuses:
            problems.add(path, "awaiting_in_no_rule", "warning", status=Status(status))
    return problems.items


def _pipeline_validate(problems: _Problems, p: ParsedPipeline, path: str, *, known: CatalogSnapshot) -> None:
    """The problems of one pipeline's settings and rules (see `mapping_validate`)."""
    n = p.pipeline
    if known.has_pipelines and not known.pipeline_is_known(n):
        problems.add(f"{path}.pipeline", "pipeline_not_in_crm", "warning", pipeline=n)
    if not p.rules:
        problems.add(f"{path}.rules", "no_rules", "warning", pipeline=n)
    for index, rule in enumerate(p.rules):
        rule_path = f"{path}.rules[{index}]"
        _stage_check(problems, f"{rule_path}.deal_stage", stage=rule.deal_stage, pipeline=n, known=known)
        if known.has_statuses and not known.status_is_known(rule.order_status):
            problems.add(
                f"{rule_path}.order_status", "status_not_in_shop", "warning", status=Status(rule.order_status)
            )

    to_crm = {r.order_status: r.deal_stage for r in p.rules if r.direction in TO_CRM}
    to_cms = {r.deal_stage: (i, r.order_status) for i, r in enumerate(p.rules) if r.direction in TO_CMS}
    for index, rule in enumerate(p.rules):
        if rule.direction not in TO_CRM or to_crm.get(rule.order_status) != rule.deal_stage:
            continue
        back = to_cms.get(rule.deal_stage)
        if back is not None and back[1] != rule.order_status:
            problems.add(
                f"{path}.rules[{index}].deal_stage",
                "lossy_round_trip",
                "warning",
                status=Status(rule.order_status),
                stage=Stage(rule.deal_stage),
                back=Status(back[1]),
                rule=RuleRef(back[0]),
            )

    if not p.paid_stage:
        problems.add(f"{path}.paid_stage", "no_paid_stage", "warning", pipeline=n)
        return
    before = len(problems.items)
    _stage_check(problems, f"{path}.paid_stage", stage=p.paid_stage, pipeline=n, known=known)
    if len(problems.items) > before:
        return
    if known.stage_semantics(p.paid_stage) == StageSemantics.FAILURE:
        problems.add(f"{path}.paid_stage", "paid_stage_failure", "warning", stage=Stage(p.paid_stage))
    elif p.paid_stage not in to_cms:
        problems.add(f"{path}.paid_stage", "paid_stage_unmapped", "note", stage=Stage(p.paid_stage))


def _stage_check(
    problems: _Problems, path: str, *, stage: str, pipeline: int, known: CatalogSnapshot
) -> None:
    """A stage of another pipeline is an error; one the CRM does not list (any more) is a warning."""
    other = known.stage_pipeline(stage)
    if other is not None and other != pipeline:
        problems.add(path, "stage_of_pipeline", stage=Stage(stage), other=other, pipeline=pipeline)
        return
    if other is None:
        match = _STAGE_PREFIX.match(stage)
        if pipeline == 0 and match:
            problems.add(path, "stage_prefix_other", stage=Stage(stage), other=int(match.group(1)))
            return
        if pipeline != 0 and not stage.startswith(f"C{pipeline}:"):
            problems.add(path, "stage_prefix_missing", stage=Stage(stage), pipeline=pipeline)
            return
    if known.knows_pipeline(pipeline) and not known.stage_is_known(stage):
        problems.add(path, "stage_not_in_crm", "warning", stage=Stage(stage), pipeline=pipeline)

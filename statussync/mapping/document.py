"""The status ↔ stage mapping as a JSON document once it is well-formed: the parsed document, the engine's
Mapping of a document, and what changed from one document to another — pure functions, no database. Checking
a document is `statussync.mapping.validate`'s; storing, exporting and loading the stored mapping are
`statussync.mapping.store`'s.

The document's shape is a public contract [docs/contract.md "The mapping file"]; `mapping_store`'s
`mapping_export` and `mapping_import` round-trip it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from statussync import engine
from statussync.models import ConflictPolicy, Direction

# The directions a rule carries a status to the CRM in, and a stage to the shop in.
TO_CRM = frozenset({Direction.BOTH.value, Direction.TO_CRM.value})
TO_CMS = frozenset({Direction.BOTH.value, Direction.TO_CMS.value})


# --- the parsed document ----------------------------------------------------------------------------------


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


def mapping_of_document(document: dict[str, Any]) -> engine.Mapping:
    """A (well-formed) mapping document as the engine's Mapping, without touching the database."""
    pipelines: dict[int, engine.PipelineMap] = {}
    for p in document.get("pipelines", []):
        to_crm: dict[str, str] = {}
        to_cms: dict[str, str] = {}
        for r in p.get("rules", []):
            direction = r.get("direction", Direction.BOTH)
            if direction in TO_CRM:
                to_crm[r["order_status"]] = r["deal_stage"]
            if direction in TO_CMS:
                to_cms[r["deal_stage"]] = r["order_status"]
        pipelines[p["pipeline"]] = engine.PipelineMap(
            pipeline=p["pipeline"],
            to_crm=to_crm,
            to_cms=to_cms,
            paid_stage=p.get("paid_stage", ""),
            conflict_policy=p.get("conflict_policy", ConflictPolicy.LATEST),
        )
    return engine.Mapping(
        pipelines=pipelines,
        awaiting_payment_statuses=frozenset(document.get("awaiting_payment_statuses", [])),
    )


@dataclass(frozen=True)
class DiffLine:
    """One difference between two mapping documents: `kind` says what changed, `pipeline` where."""

    kind: Literal[
        "pipeline_added",
        "pipeline_removed",
        "rule_added",
        "rule_removed",
        "rule_stage_changed",
        "rule_status_changed",
        "paid_stage",
        "conflict_policy",
        "awaiting_added",
        "awaiting_removed",
    ]
    pipeline: int | None = None
    rule: tuple[str, str, str] | None = None  # (order status, deal stage, direction); the new one if changed
    old: str = ""  # a changed rule: its former stage (rule_stage_changed) or status (rule_status_changed)
    new: str = ""


def mapping_diff(*, before: dict[str, Any], after: dict[str, Any]) -> list[DiffLine]:
    """What changed from one (well-formed) mapping document to another, pipeline by pipeline."""
    lines: list[DiffLine] = []
    old = {p["pipeline"]: p for p in before.get("pipelines", [])}
    new = {p["pipeline"]: p for p in after.get("pipelines", [])}

    def rules_of(p: dict[str, Any]) -> list[tuple[str, str, str]]:
        return [(r["order_status"], r["deal_stage"], r.get("direction", "both")) for r in p.get("rules", [])]

    for pid in sorted(set(old) | set(new)):
        o, n = old.get(pid), new.get(pid)
        # A pipeline mapped or unmapped whole is one line, not one per rule.
        if o is None:
            lines.append(DiffLine("pipeline_added", pid, new=str(len(rules_of(n or {})))))
            continue
        if n is None:
            lines.append(DiffLine("pipeline_removed", pid, old=str(len(rules_of(o)))))
            continue
        o_rules, n_rules = rules_of(o), rules_of(n)
        removed = [r for r in o_rules if r not in n_rules]
        added = [r for r in n_rules if r not in o_rules]
        # A rule whose stage (or status) was swapped for another reads as one change, not a removal and an
        # addition.
        for new_rule in list(added):
            for old_rule in removed:
                if old_rule[2] != new_rule[2]:
                    continue
                if old_rule[0] == new_rule[0]:
                    lines.append(DiffLine("rule_stage_changed", pid, rule=new_rule, old=old_rule[1]))
                elif old_rule[1] == new_rule[1]:
                    lines.append(DiffLine("rule_status_changed", pid, rule=new_rule, old=old_rule[0]))
                else:
                    continue
                removed.remove(old_rule)
                added.remove(new_rule)
                break
        lines += [DiffLine("rule_removed", pid, rule=r) for r in removed]
        lines += [DiffLine("rule_added", pid, rule=r) for r in added]
        for key in ("paid_stage", "conflict_policy"):
            if o.get(key, "") != n.get(key, ""):
                lines.append(DiffLine(key, pid, old=o.get(key, ""), new=n.get(key, "")))
    o_wait, n_wait = before.get("awaiting_payment_statuses", []), after.get("awaiting_payment_statuses", [])
    lines += [DiffLine("awaiting_removed", new=s) for s in o_wait if s not in n_wait]
    lines += [DiffLine("awaiting_added", new=s) for s in n_wait if s not in o_wait]
    return lines

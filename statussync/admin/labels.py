"""How the timeline, the audit list and the dashboard name an order status or a deal stage: "name (code)"
from the catalog of names the portals gave (statussync.catalog), a code a portal dropped said to be missing.
"""

from __future__ import annotations

from collections.abc import Callable

from statussync import catalog
from statussync.mapping import Problem


def order_status_label(code: str) -> str:
    """The shop's order status `code` as people should read it."""
    return catalog.status_label(code) if code else code


def deal_stage_label(code: str, pipeline: int | None = None) -> str:
    """The CRM's deal stage `code` (of `pipeline`, when known) as people should read it."""
    return catalog.stage_label(code) if code else code


def problem_text(problem: Problem, *, rule_name: Callable[[int], str] | None = None) -> str:
    """A mapping problem for the admin's forms: codes as "name (code)", other rules as "row n" (or what
    `rule_name` says)."""
    return problem.message(
        for_form=True, rule_name=rule_name, status=catalog.status_label, stage=catalog.stage_label
    )

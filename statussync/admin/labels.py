"""How the timeline, the audit list and the dashboard name an order status or a deal stage: "name (code)"
from the catalog of names the portals gave (statussync.catalog), a code a portal dropped said to be missing.
"""

from __future__ import annotations

from statussync import catalog


def order_status_label(code: str) -> str:
    """The shop's order status `code` as people should read it."""
    return catalog.status_label(code) if code else code


def deal_stage_label(code: str, pipeline: int | None = None) -> str:
    """The CRM's deal stage `code` (of `pipeline`, when known) as people should read it."""
    return catalog.stage_label(code) if code else code

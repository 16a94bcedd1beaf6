"""How the timeline, the audit list and the dashboard name an order status or a deal stage.

One seam on purpose: the catalog of names from the portals ("name (code)", a missing code shown as missing)
belongs to the mapping pages. Until those pages' label helpers are here, a code is shown as it is; point
these two functions at them and every page of this module set speaks in names.
"""

from __future__ import annotations


def order_status_label(code: str) -> str:
    """The shop's order status `code` as people should read it."""
    return code


def deal_stage_label(code: str, pipeline: int | None = None) -> str:
    """The CRM's deal stage `code` (of `pipeline`, when known) as people should read it."""
    return code

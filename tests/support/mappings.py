"""Mapping documents shared by the tests."""

from __future__ import annotations

import copy
from typing import Any

# The contract's example mapping, verbatim. docs/mapping.example.json must equal it (tests/test_statusmap.py).
DESIGN_EXAMPLE: dict[str, Any] = {
    "awaiting_payment_statuses": ["N"],
    "pipelines": [
        {
            "pipeline": 0,
            "paid_stage": "PREPAYMENT_INVOICE",
            "conflict_policy": "latest",
            "rules": [
                {"order_status": "N", "deal_stage": "NEW", "direction": "both"},
                {"order_status": "P", "deal_stage": "PREPARATION", "direction": "both"},
                {"order_status": "F", "deal_stage": "WON", "direction": "both"},
                {"order_status": "C", "deal_stage": "LOSE", "direction": "both"},
                {"order_status": "C", "deal_stage": "APOLOGY", "direction": "to_cms"},
            ],
        }
    ],
}

# A second pipeline, with the `C<n>:` stage ids Bitrix gives every pipeline but the default one.
PIPELINE_1: dict[str, Any] = {
    "pipeline": 1,
    "paid_stage": "C1:PREPAYMENT_INVOICE",
    "conflict_policy": "latest",
    "rules": [
        {"order_status": "N", "deal_stage": "C1:NEW", "direction": "both"},
        {"order_status": "P", "deal_stage": "C1:PREPARATION", "direction": "both"},
        {"order_status": "F", "deal_stage": "C1:WON", "direction": "both"},
        {"order_status": "C", "deal_stage": "C1:LOSE", "direction": "both"},
        {"order_status": "C", "deal_stage": "C1:APOLOGY", "direction": "to_cms"},
    ],
}


def two_pipelines() -> dict[str, Any]:
    """The contract's example plus pipeline 1 (a fresh copy to modify)."""
    document = copy.deepcopy(DESIGN_EXAMPLE)
    document["pipelines"].append(copy.deepcopy(PIPELINE_1))
    return document

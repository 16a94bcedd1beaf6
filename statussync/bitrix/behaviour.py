"""What one portal does where the documentation leaves it open, as the client and the sync read it.

`bitrix doctor` probes these points and stores the answers (`statussync.doctor.quirks`); `client_for` hands
each client the portal's `PortalBehaviour` (cached there, not read per request). Until a point is probed the
client assumes the documented (or most likely) answer, so an unprobed portal works as before
[docs/bitrix.md "Undocumented behaviours"].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DOCUMENTED", "PortalBehaviour"]

# The stored names (docs/bitrix.md "Undocumented behaviours"); `statussync.doctor.quirks` writes them.
START_MINUS_ONE = "order_list_start_minus_one"  # bool
PAYMENT_ARRAY_FILTER = "payment_list_array_filter"  # "ok" | "ignored" | "refused"
ORDER_NOT_FOUND_CODE = "order_get_not_found_code"  # the error code, as a string
DATETIME_OFFSET_FILTER = "datetime_offset_filter"  # "ok" | "ignored" | "refused"
MOVE_CHANGES_DATE_MODIFY = "pipeline_move_changes_date_modify"  # bool


@dataclass(frozen=True)
class PortalBehaviour:
    """The answers the client and the sync adapt to; each default is what bxsync assumes unprobed."""

    # `start=-1` (no count) on list reads; refused: `start=0`, which costs the portal a count per page.
    start_minus_one: bool = True
    # `sale.payment.list` with an array in `=id`; refused or ignored: payments read one by one.
    payment_array_filter: bool = True
    # An error code the portal gave for a missing entity that the documented families do not cover.
    not_found_codes: frozenset[str] = frozenset()
    # `>FIELD` with `YYYY-MM-DDThh:mm:ss±hh:mm`; refused or ignored: change feeds read newest first instead.
    datetime_filter: bool = True
    # False: reconciliation also reads `>MOVED_TIME`, since a pipeline move would not show in `>DATE_MODIFY`.
    move_changes_date_modify: bool = True

    @classmethod
    def from_probed(cls, probed: Mapping[str, Any]) -> PortalBehaviour:
        """The behaviour from doctor's stored answers ({name: answer}); an unprobed name keeps its default."""
        code = probed.get(ORDER_NOT_FOUND_CODE)
        return cls(
            start_minus_one=probed.get(START_MINUS_ONE, True) is not False,
            payment_array_filter=probed.get(PAYMENT_ARRAY_FILTER, "ok") == "ok",
            not_found_codes=frozenset({str(code).upper()}) if code else frozenset(),
            datetime_filter=probed.get(DATETIME_OFFSET_FILTER, "ok") == "ok",
            move_changes_date_modify=probed.get(MOVE_CHANGES_DATE_MODIFY, True) is not False,
        )

    @property
    def list_start(self) -> int:
        """The `start` of a list read that needs no total [docs/bitrix.md "Lists"]."""
        return -1 if self.start_minus_one else 0


DOCUMENTED = PortalBehaviour()

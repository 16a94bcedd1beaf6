"""`bitrix doctor`: check the configured portals, explain each problem with its fix, and remember the
undocumented behaviours the sync may need to adapt to.

`doctor_run` runs every check (`checks`, `mapping`, `quirks`, `roundtrip`, one function each); the readings
of the portals' answers are pure functions in `interpret`; a report is codes and parameters (`findings`),
rendered in the reader's language. `portal_quirks_get` is the sync's way to what was probed.
"""

from .findings import Finding
from .quirks import portal_quirks_get
from .run import DoctorResult, doctor_report_latest, doctor_run

__all__ = ["DoctorResult", "Finding", "doctor_report_latest", "doctor_run", "portal_quirks_get"]

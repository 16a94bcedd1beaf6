"""What ``make demo`` shows on its console: plain words and one live line, never a wall of logs.

A newcomer's first look is this console. The web server's and workers' logs go to ``demo.log``; the console
keeps the admin's address and login, and a one-line summary of what bxsync is doing, refreshed in place.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TextIO

from django.utils.translation import gettext

# How often the live line is read from the database and redrawn; when the console is not a terminal, a new
# line at most this often.
REFRESH_SECONDS = 2.0
PLAIN_OUTPUT_SECONDS = 15.0


@dataclass(frozen=True)
class DemoCounts:
    """The figures of the live line."""

    events: int = 0
    writes: int = 0
    payments: int = 0
    conflicts: int = 0
    attention: int = 0


def demo_counts() -> DemoCounts:
    """Read the live line's figures (five small queries on the demo's database)."""
    from statussync.models import AuditEntry, InboundEvent, Link, LinkState, Outcome

    def outcomes(*names: str) -> int:
        return AuditEntry.objects.filter(outcome__in=names).count()

    return DemoCounts(
        events=InboundEvent.objects.count(),
        writes=outcomes(Outcome.APPLIED, Outcome.PAYMENT_APPLIED, Outcome.CONFLICT_RESOLVED),
        payments=outcomes(Outcome.PAYMENT_APPLIED),
        conflicts=outcomes(Outcome.CONFLICT_RESOLVED, Outcome.CONFLICT_FLAGGED),
        attention=Link.objects.filter(state=LinkState.ACTIVE, needs_attention=True).count(),
    )


def summary_line(counts: DemoCounts) -> str:
    """ "events 120 · writes 34 · payments 5 · conflicts 2 · needing attention 1" """
    return gettext(
        "Events %(events)s · writes %(writes)s · payments %(payments)s · conflicts %(conflicts)s · "
        "needing attention %(attention)s"
    ) % {
        "events": counts.events,
        "writes": counts.writes,
        "payments": counts.payments,
        "conflicts": counts.conflicts,
        "attention": counts.attention,
    }


def reconcile_line(counts: Mapping[str, int], *, linked: int) -> str:
    """The first reconciliation's report in words: what it read, how many pairs are linked, and any other
    outcome than "nothing to do" (a pair found in agreement)."""
    from statussync.admin.timeline import outcome_title

    other = {
        str(key): n
        for key, n in counts.items()
        if key not in ("orders", "deals", "queued", "no_change", "echo") and n
    }
    line = gettext("Read %(orders)s orders and %(deals)s deals; %(linked)s pairs are linked") % {
        "orders": counts.get("orders", 0),
        "deals": counts.get("deals", 0),
        "linked": linked,
    }
    if other:
        line += (
            " ("
            + ", ".join(
                gettext("%(outcome)s: %(n)s") % {"outcome": outcome_title(key).lower(), "n": n}
                for key, n in sorted(other.items(), key=lambda kv: -kv[1])
            )
            + ")"
        )
    return line + "."


class LivePrinter:
    """Redraws the summary line in place on a terminal; elsewhere (a pipe, a CI log) prints it as a new
    line when it changed, at most every `PLAIN_OUTPUT_SECONDS`."""

    def __init__(
        self,
        *,
        read: Callable[[], DemoCounts] = demo_counts,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read = read
        self.stream = stream if stream is not None else sys.stdout
        self.clock = clock
        self.in_place = self.stream.isatty()
        self._next = 0.0
        self._printed_at = float("-inf")
        self._last = ""
        self._open_line = False

    def tick(self) -> None:
        """Called often (the service runner's loop): reads and redraws every `REFRESH_SECONDS`."""
        now = self.clock()
        if now < self._next:
            return
        self._next = now + REFRESH_SECONDS
        try:
            line = summary_line(self.read())
        except Exception:  # the database busy or locked a moment: the next tick tries again
            return
        if self.in_place:
            # Carriage return and "erase to end of line": the same line, redrawn.
            self.stream.write("\r\033[K" + line)
            self._open_line = True
        elif line != self._last and now - self._printed_at >= PLAIN_OUTPUT_SECONDS:
            self.stream.write(line + "\n")
            self._printed_at = now
        else:
            return
        self._last = line
        self.stream.flush()

    def close(self) -> None:
        """End the live line, so what follows starts on a line of its own."""
        if self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False

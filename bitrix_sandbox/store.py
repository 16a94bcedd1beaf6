"""Shared state primitives of an emulated portal: the portal clock and thread-safe counters."""

from __future__ import annotations

import copy
import threading
from datetime import datetime, timedelta, timezone
from typing import Any


def parse_tz_offset(offset: str) -> timezone:
    """``"+03:00"`` → a fixed ``timezone``."""
    sign = -1 if offset.startswith("-") else 1
    hours, _, minutes = offset.lstrip("+-").partition(":")
    return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes or 0)))


class PortalClock:
    """Wall clock of a portal: Bitrix answers ISO 8601 dates with the portal's fixed offset, to the second."""

    def __init__(self, tz_offset: str = "+03:00") -> None:
        self.tz = parse_tz_offset(tz_offset)
        # Tests move a portal's clock forward instead of sleeping: Bitrix dates have one-second precision,
        # so "later" needs whole seconds between two changes.
        self.offset = timedelta()

    def now(self) -> datetime:
        """Current time in the portal tz, truncated to seconds like Bitrix stores it."""
        return (datetime.now(self.tz) + self.offset).replace(microsecond=0)

    def advance(self, seconds: float) -> None:
        """Move this portal's clock forward."""
        self.offset += timedelta(seconds=seconds)

    def now_iso(self) -> str:
        """Current time formatted like ``2024-08-30T14:29:00+03:00``."""
        return self.format(self.now())

    def format(self, value: datetime) -> str:
        """Format an aware or naive (= portal tz) datetime the Bitrix way."""
        if value.tzinfo is None:
            value = value.replace(tzinfo=self.tz)
        return value.astimezone(self.tz).replace(microsecond=0).isoformat()

    def parse(self, value: Any) -> datetime | None:
        """Parse an ISO date/datetime (naive means portal tz); None when it is not one."""
        if isinstance(value, datetime):
            parsed = value
        elif isinstance(value, str) and value.strip():
            try:
                parsed = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
            except ValueError:
                return None
        else:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=self.tz)
        return parsed


class Counters:
    """Thread-safe nested counters: ``inc("a", "b")`` → ``{"a": {"b": 1}}``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {}

    def inc(self, *path: str, amount: int = 1) -> None:
        """Add ``amount`` at the nested ``path`` (creating levels as needed)."""
        with self._lock:
            node = self._data
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = node.get(path[-1], 0) + amount

    def get(self, *path: str) -> int:
        """The counter at ``path``, 0 when absent."""
        with self._lock:
            node: Any = self._data
            for key in path:
                if not isinstance(node, dict) or key not in node:
                    return 0
                node = node[key]
            return node if isinstance(node, int) else 0

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of all counters (JSON-serialisable)."""
        with self._lock:
            return copy.deepcopy(self._data)

    def reset(self) -> None:
        """Zero everything."""
        with self._lock:
            self._data = {}

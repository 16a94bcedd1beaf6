"""Runtime fault switches of one portal, drawn from a seeded RNG so runs are reproducible."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class FaultSettings:
    """What can go wrong. Rates are probabilities in [0, 1]; times are seconds.

    REST side: ``latency`` (added to every call), ``error_rate`` (HTTP 500 INTERNAL_SERVER_ERROR, nothing
    applied), ``timeout_rate`` (the call is applied, then the answer is held ``timeout_seconds`` — longer than
    any sane client timeout — so the client sees a timeout for a write that happened), ``outage_seconds``
    (set: every call answers 503 for that long from now). Event side: ``drop_rate`` (never sent),
    ``duplicate_rate`` (sent twice), ``reorder_window`` (events are held for this long, then released
    shuffled), ``event_delay`` (sent this much later).
    """

    latency: float = 0.0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_seconds: float = 35.0
    outage_seconds: float = 0.0
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    reorder_window: float = 0.0
    event_delay: float = 0.0


FAULT_NAMES = frozenset(f.name for f in fields(FaultSettings))


class Faults:
    """Thread-safe holder of FaultSettings with seeded dice."""

    def __init__(self, seed: int | str = 0) -> None:
        self._lock = threading.Lock()
        self._settings = FaultSettings()
        self._rng = random.Random(seed)
        self._outage_until = 0.0

    def set(self, **changes: Any) -> dict[str, Any]:
        """Change some switches (unknown names raise ValueError); returns the new settings."""
        unknown = set(changes) - FAULT_NAMES
        if unknown:
            raise ValueError(f"unknown fault switch(es): {', '.join(sorted(unknown))}")
        with self._lock:
            for name, value in changes.items():
                setattr(self._settings, name, float(value))
            if "outage_seconds" in changes:
                self._outage_until = time.monotonic() + float(changes["outage_seconds"])
            return self._as_dict()

    def clear(self) -> None:
        """Turn every fault off."""
        with self._lock:
            self._settings = FaultSettings()
            self._outage_until = 0.0

    def _as_dict(self) -> dict[str, Any]:
        data = asdict(self._settings)
        data["outage_remaining"] = max(0.0, self._outage_until - time.monotonic())
        return data

    def snapshot(self) -> dict[str, Any]:
        """Current settings plus the seconds of outage left."""
        with self._lock:
            return self._as_dict()

    def value(self, name: str) -> float:
        """One switch's current value."""
        with self._lock:
            return float(getattr(self._settings, name))

    def roll(self, name: str) -> bool:
        """True with the probability configured in rate switch ``name``."""
        with self._lock:
            rate = float(getattr(self._settings, name))
            if rate <= 0:
                return False
            return self._rng.random() < rate

    def in_outage(self) -> bool:
        """True while an outage window is open."""
        with self._lock:
            return time.monotonic() < self._outage_until

    def shuffle(self, items: list[Any]) -> None:
        """Shuffle in place with the seeded RNG."""
        with self._lock:
            self._rng.shuffle(items)

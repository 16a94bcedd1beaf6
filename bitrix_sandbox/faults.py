"""Runtime fault switches of one portal, drawn from a seeded RNG so runs are reproducible."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any

REPLY_LOST_AS = ("timeout", "error")


@dataclass
class FaultSettings:
    """What can go wrong. Rates are probabilities in [0, 1]; times are seconds.

    REST side: ``latency`` (added to every call), ``error_rate`` (HTTP 500 INTERNAL_SERVER_ERROR, nothing
    applied), ``timeout_rate`` (the call is applied, then the answer is held ``timeout_seconds`` — longer than
    any sane client timeout — so the client sees a timeout for a write that happened), ``outage_seconds``
    (set: every call answers 503 for that long from now).

    Reply lost, for writes only: the write is applied and its events fire, then the reply is lost — held
    ``timeout_seconds`` (``reply_lost_as="timeout"``) or answered 500 INTERNAL_SERVER_ERROR after the commit
    (``"error"``). It hits a request carrying one of ``reply_lost_methods`` (empty: every write method of the
    portal), alone or inside a ``batch`` (then the whole batch's reply is lost), when
    ``reply_lost_next`` > 0 (the next N such requests; counts down), or ``reply_lost_once`` and the request
    carries a write never seen before (same method, id and fields: "every write's reply is lost once", its
    retry gets through), or by ``reply_lost_rate``.

    Event side: ``drop_rate`` (never sent), ``duplicate_rate`` (sent twice), ``reorder_window`` (events are
    held for this long, then released shuffled), ``event_delay`` (sent this much later).
    """

    latency: float = 0.0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_seconds: float = 35.0
    outage_seconds: float = 0.0
    reply_lost_rate: float = 0.0
    reply_lost_next: int = 0
    reply_lost_once: bool = False
    reply_lost_methods: tuple[str, ...] = ()
    reply_lost_as: str = "timeout"
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    reorder_window: float = 0.0
    event_delay: float = 0.0


FAULT_NAMES = frozenset(f.name for f in fields(FaultSettings))


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "y", "true", "yes")
    return bool(value)


def _convert(name: str, value: Any) -> Any:
    """A switch's value from Python or JSON (``"0.5"``, ``["crm.deal.update"]``, ``true``) in its own type."""
    if name == "reply_lost_next":
        return int(value)
    if name == "reply_lost_once":
        return _truthy(value)
    if name == "reply_lost_methods":
        items = [value] if isinstance(value, str) else list(value or ())
        return tuple(str(item).lower() for item in items if str(item))
    if name == "reply_lost_as":
        if value not in REPLY_LOST_AS:
            raise ValueError(f"reply_lost_as must be one of {', '.join(REPLY_LOST_AS)}")
        return str(value)
    return float(value)


class Faults:
    """Thread-safe holder of FaultSettings with seeded dice."""

    def __init__(self, seed: int | str = 0) -> None:
        self._lock = threading.Lock()
        self._settings = FaultSettings()
        self._rng = random.Random(seed)
        self._outage_until = 0.0
        self._writes_seen: set[tuple[str, str]] = set()

    def set(self, **changes: Any) -> dict[str, Any]:
        """Change some switches (unknown names or values raise ValueError); returns the new settings."""
        unknown = set(changes) - FAULT_NAMES
        if unknown:
            raise ValueError(f"unknown fault switch(es): {', '.join(sorted(unknown))}")
        converted = {name: _convert(name, value) for name, value in changes.items()}
        with self._lock:
            for name, value in converted.items():
                setattr(self._settings, name, value)
            if "outage_seconds" in converted:
                self._outage_until = time.monotonic() + converted["outage_seconds"]
            return self._as_dict()

    def clear(self) -> None:
        """Turn every fault off (and forget which writes already lost their reply once)."""
        with self._lock:
            self._settings = FaultSettings()
            self._outage_until = 0.0
            self._writes_seen.clear()

    def _as_dict(self) -> dict[str, Any]:
        data = asdict(self._settings)
        data["reply_lost_methods"] = list(self._settings.reply_lost_methods)
        data["outage_remaining"] = max(0.0, self._outage_until - time.monotonic())
        return data

    def snapshot(self) -> dict[str, Any]:
        """Current settings plus the seconds of outage left."""
        with self._lock:
            return self._as_dict()

    def value(self, name: str) -> Any:
        """One switch's current value."""
        with self._lock:
            return getattr(self._settings, name)

    def roll(self, name: str) -> bool:
        """True with the probability configured in rate switch ``name``."""
        with self._lock:
            return self._roll(name)

    def _roll(self, name: str) -> bool:
        rate = float(getattr(self._settings, name))
        if rate <= 0:
            return False
        return self._rng.random() < rate

    def lose_reply(self, writes: Iterable[tuple[str, str]], all_write_methods: Iterable[str]) -> bool:
        """Decide whether the reply to a request that applied ``writes`` is lost (see ``FaultSettings``).

        ``writes`` are ``(method, key)`` of the write commands the request applied; ``key`` identifies the
        write (id and fields) for ``reply_lost_once``.
        """
        with self._lock:
            settings = self._settings
            methods = set(settings.reply_lost_methods or all_write_methods)
            eligible = [(method, key) for method, key in writes if method in methods]
            if not eligible:
                return False
            unseen = any(write not in self._writes_seen for write in eligible)
            if settings.reply_lost_once:
                self._writes_seen.update(eligible)
            if settings.reply_lost_next > 0:
                settings.reply_lost_next -= 1
                return True
            if settings.reply_lost_once and unseen:
                return True
            return self._roll("reply_lost_rate")

    def in_outage(self) -> bool:
        """True while an outage window is open."""
        with self._lock:
            return time.monotonic() < self._outage_until

    def shuffle(self, items: list[Any]) -> None:
        """Shuffle in place with the seeded RNG."""
        with self._lock:
            self._rng.shuffle(items)

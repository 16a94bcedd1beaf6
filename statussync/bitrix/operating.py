"""The operating-time limit, per method: what each answer's ``time`` block says, and which methods to hold.

Bitrix cloud adds up each method's execution time per webhook over 10 one-minute baskets; every answer
carries the sum so far (``time.operating``) and when the oldest basket leaves it (``time.operating_reset_at``,
a Unix time). Past the limit the next call of that method answers ``429 OPERATION_TIME_LIMIT``, while other
methods go on; inside a ``batch`` each command counts against its own method and the outer call does not
(settings/performance/limits.md) [docs/bitrix.md "Limits"].

So bxsync holds a method, never a portal: once the method's time passes BXSYNC_OPERATING_SLOW_DOWN of
BXSYNC_OPERATING_LIMIT_SECONDS it stops calling it until its oldest basket leaves, and after a 429 until the
reset time the last answer gave (or ``Retry-After``, or a minute). A held method fails at once with
``OperatingLimitError`` and sends nothing; the job runner retries it after ``retry_after``.

The ledger is per process: every answer carries the portal's total, so each process learns it from its own
next call, and a 429 costs each process at most one refused call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from .errors import OperatingLimitError

# When a 429 comes without any reset time known: the baskets are a minute wide.
_DEFAULT_HOLD_SECONDS = 60.0


@dataclass
class _Method:
    operating: float = 0.0
    reset_at: float | None = None
    held_until: float = 0.0


class OperatingLedger:
    """Operating time and holds per ``(webhook, method)``, fed by answers, asked before each call."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._methods: dict[tuple[str, str], _Method] = {}
        self.clock = clock

    def _entry(self, webhook: str, method: str) -> _Method:
        return self._methods.setdefault((webhook, method.lower()), _Method())

    def observe(self, *, webhook: str, method: str, time_block: Any) -> None:
        """Record an answer's ``time`` block; hold the method when it nears the limit."""
        if not isinstance(time_block, Mapping):
            return
        operating = _number(time_block.get("operating"))
        if operating is None:
            return  # a boxed portal without the limit says nothing
        reset_at = _number(time_block.get("operating_reset_at"))
        limit, slow_down = _limits()
        with self._lock:
            entry = self._entry(webhook, method)
            entry.operating, entry.reset_at = operating, reset_at
            if limit and reset_at and operating >= limit * slow_down:
                entry.held_until = max(entry.held_until, reset_at)

    def refused(self, *, webhook: str, error: OperatingLimitError) -> None:
        """A 429 for ``error.method``: hold it until ``Retry-After``, the last reset time seen, or a
        minute; and say in ``error.retry_after`` how long."""
        now = self.clock()
        with self._lock:
            entry = self._entry(webhook, error.method)
            if error.retry_after:
                until = now + error.retry_after
            elif entry.reset_at and entry.reset_at > now:
                until = entry.reset_at
            else:
                until = now + _DEFAULT_HOLD_SECONDS
            entry.held_until = max(entry.held_until, until)
            error.retry_after = entry.held_until - now

    def held_for(self, *, webhook: str, method: str) -> float:
        """Seconds ``method`` is still held (0: it may go)."""
        with self._lock:
            entry = self._methods.get((webhook, method.lower()))
            return max(entry.held_until - self.clock(), 0.0) if entry else 0.0

    def check(self, *, webhook: str, portal: str, method: str) -> None:
        """Raise ``OperatingLimitError`` (nothing is sent) while ``method`` is held."""
        wait = self.held_for(webhook=webhook, method=method)
        if wait > 0:
            raise OperatingLimitError(
                portal=portal,
                method=method,
                code="OPERATION_TIME_LIMIT",
                description=f"held by bxsync near its operating-time limit for {wait:.0f} s more",
                retry_after=wait,
            )

    def clear(self) -> None:
        """Forget everything (tests)."""
        with self._lock:
            self._methods.clear()


def envelope_metered(
    ledger: OperatingLedger, *, webhook: str, method: str, send: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Send one call through ``ledger``: refused at once while its method is held, its ``time`` block counted,
    a ``429 OPERATION_TIME_LIMIT`` holding the method. The outer ``batch`` call counts against no method's
    time: each of its commands counts against its own (settings/performance/limits.md)."""
    if method != "batch":
        ledger.check(webhook=webhook, portal=webhook, method=method)
    try:
        envelope = send()
    except OperatingLimitError as exc:
        ledger.refused(webhook=webhook, error=exc)
        raise
    if method != "batch":
        ledger.observe(webhook=webhook, method=method, time_block=envelope.get("time"))
    return envelope


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _limits() -> tuple[float, float]:
    return (
        float(settings.BXSYNC_OPERATING_LIMIT_SECONDS),
        float(settings.BXSYNC_OPERATING_SLOW_DOWN),
    )


#: This process's ledger, shared by every client of it.
LEDGER = OperatingLedger()

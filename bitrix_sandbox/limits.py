"""The two Bitrix cloud REST limits: the per-portal leaky bucket and the per-method operating-time limit."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

Clock = Callable[[], float]


class LeakyBucket:
    """Request counter that drains ``rate`` per second and rejects once it would exceed ``burst``.

    [docs/bitrix.md "Limits"] each request adds 1, the counter drains by Y/s, above X → 503
    QUERY_LIMIT_EXCEEDED; Y=2, X=50 on non-enterprise plans. Rejected requests do not add to the counter.
    """

    def __init__(self, rate: float = 2.0, burst: int = 50, clock: Clock = time.monotonic) -> None:
        self._lock = threading.Lock()
        self.clock = clock  # replaceable, so tests can freeze time
        self.rate = rate
        self.burst = burst
        self._level = 0.0
        self._last = clock()

    def configure(self, rate: float | None = None, burst: int | None = None) -> None:
        """Change drain rate and/or burst at runtime (``rate <= 0`` disables the limit)."""
        with self._lock:
            self._drain()
            if rate is not None:
                self.rate = rate
            if burst is not None:
                self.burst = burst

    def _drain(self) -> None:
        now = self.clock()
        self._level = max(0.0, self._level - (now - self._last) * max(self.rate, 0.0))
        self._last = now

    def try_acquire(self) -> bool:
        """Count one request; False when the portal would answer QUERY_LIMIT_EXCEEDED."""
        with self._lock:
            if self.rate <= 0:
                return True
            self._drain()
            if self._level + 1 > self.burst:
                return False
            self._level += 1
            return True

    @property
    def level(self) -> float:
        """Current counter value (after draining)."""
        with self._lock:
            self._drain()
            return self._level

    def reset(self) -> None:
        """Empty the bucket."""
        with self._lock:
            self._level = 0.0
            self._last = self.clock()


class OperatingLimiter:
    """Accumulated execution time per method over a sliding window (default 10 minutes).

    [docs/bitrix.md "Limits"] when a method's time in the window exceeds the limit, the *next* call
    to that method gets 429 OPERATION_TIME_LIMIT; other methods keep working. The real limit is configured by
    Bitrix (480 s is an example), so here it is off by default and set per method or globally.
    """

    def __init__(
        self,
        limit: float | None = None,
        per_method: dict[str, float] | None = None,
        window: float = 600.0,
        clock: Clock = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.limit = limit
        self.per_method: dict[str, float] = dict(per_method or {})
        self.window = window
        self._spent: dict[str, deque[tuple[float, float]]] = {}

    def configure(self, limit: float | None = None, per_method: dict[str, float] | None = None) -> None:
        """Replace the global limit and/or the per-method limits."""
        with self._lock:
            self.limit = limit
            if per_method is not None:
                self.per_method = dict(per_method)

    def _limit_for(self, method: str) -> float | None:
        return self.per_method.get(method, self.limit)

    def _prune(self, method: str, now: float) -> deque[tuple[float, float]]:
        spent = self._spent.setdefault(method, deque())
        while spent and spent[0][0] <= now - self.window:
            spent.popleft()
        return spent

    def status(self, method: str) -> tuple[bool, float, float | None]:
        """Return (allowed, operating seconds in window, reset-at unix time of the oldest entry)."""
        with self._lock:
            now = self._clock()
            spent = self._prune(method, now)
            total = sum(s for _, s in spent)
            reset_at = spent[0][0] + self.window if spent else None
            limit = self._limit_for(method)
            return (limit is None or total <= limit), total, reset_at

    def record(self, method: str, seconds: float) -> None:
        """Add the execution time of one call."""
        with self._lock:
            now = self._clock()
            self._prune(method, now).append((now, seconds))

    def reset(self) -> None:
        """Forget all accumulated time."""
        with self._lock:
            self._spent.clear()

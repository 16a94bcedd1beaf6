"""Outgoing-webhook delivery of one portal: a background queue that POSTs events the way Bitrix does.

Facts emulated:
- form-encoded body with PHP bracket keys: ``event``, ``event_handler_id``, ``data[FIELDS][...]``, ``ts``,
  ``auth[domain|client_endpoint|server_endpoint|member_id|application_token]``
  [docs/bitrix.md "Events"];
- an outgoing webhook's ``auth`` carries no OAuth tokens and no user id
  [docs/bitrix.md "Events"];
- delivery is asynchronous through a queue, ``ts`` is when the event left the queue
  [docs/bitrix.md "Events"];
- no retries: a failed or non-2xx delivery is counted and forgotten [docs/bitrix.md "Events"];
- one event per changed entity, no throttling [docs/bitrix.md "Events"];
- ordering is not guaranteed (UNCONFIRMED upstream), hence the ``reorder_window`` fault;
- events go through Bitrix's queue server and may arrive late [docs/bitrix.md "Events"]: ``pause()``
  holds every event in the queue (the queue server stalls) until ``resume()`` sends them on.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from .faults import Faults
from .store import Counters

SERVER_ENDPOINT = "https://oauth.bitrix.info/rest/"


@dataclass(order=True)
class _Queued:
    due: float
    seq: int
    name: str = field(compare=False)
    fields: dict[str, Any] = field(compare=False)
    wrap: str | None = field(compare=False, default="FIELDS")


class EventDispatcher:
    """Queue + worker thread(s) delivering one portal's events to its handler URL."""

    def __init__(
        self,
        counters: Counters,
        faults: Faults,
        *,
        domain: str,
        client_endpoint: str,
        member_id: str,
        application_token: str,
        handler_url: str | None = None,
        subscribed: frozenset[str] | None = None,
        handler_timeout: float = 10.0,
        workers: int = 1,
        log_size: int = 5000,
        application_only: frozenset[str] = frozenset(),
    ) -> None:
        self._counters = counters
        self._faults = faults
        self.domain = domain
        self.client_endpoint = client_endpoint
        self.member_id = member_id
        self.application_token = application_token
        self.handler_url = handler_url
        self.subscribed = subscribed
        self.handler_timeout = handler_timeout
        # Events only an application may bind; an outgoing webhook, the default subscriber, never gets them.
        self.application_only = application_only
        self.subscriber = "webhook"
        self._n_workers = max(1, workers)
        self._cond = threading.Condition()
        self._heap: list[_Queued] = []
        self._held: list[tuple[str, dict[str, Any], str | None]] = []
        self._paused = False
        self._held_deadline: float | None = None
        self._in_flight = 0
        self._seq = itertools.count()
        self._handler_ids: dict[str, int] = {}
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._log: deque[dict[str, Any]] = deque(maxlen=log_size)
        # Sees every event the portal emits, whatever the outgoing webhook is subscribed to and whatever
        # the delivery faults: the application's bindings (``app.Application.event_happened``).
        self.observer: Callable[[str, dict[str, Any]], None] | None = None

    # -- configuration ---------------------------------------------------------------------------------------

    def configure(
        self,
        handler_url: str | None = None,
        application_token: str | None = None,
        subscribed: frozenset[str] | None = None,
        handler_timeout: float | None = None,
        subscriber: str | None = None,
    ) -> None:
        """Point the outgoing webhook somewhere else / change its token or event set at runtime.
        ``subscriber``: ``"webhook"`` (an outgoing webhook) or ``"application"`` (``event.bind``)."""
        if subscriber not in (None, "webhook", "application"):
            raise ValueError(f"subscriber is 'webhook' or 'application', not {subscriber!r}")
        with self._cond:
            if subscriber is not None:
                self.subscriber = subscriber
            if handler_url is not None:
                self.handler_url = handler_url or None
            if application_token is not None:
                self.application_token = application_token
            if subscribed is not None:
                self.subscribed = subscribed
            if handler_timeout is not None:
                self.handler_timeout = handler_timeout

    def may_subscribe(self, event: str) -> bool:
        """Whether this subscriber can bind ``event`` at all: an outgoing webhook cannot bind the
        application-only events, whatever it ticks (api-reference/crm/deals/events/index.md:
        ONCRMDEALMOVETOCATEGORY) [docs/bitrix.md "Events"]."""
        return self.subscriber == "application" or event not in self.application_only

    def handler_id(self, event: str) -> int:
        """Stable ``event_handler_id`` per event name (Bitrix gives each bound handler its own id)."""
        with self._cond:
            return self._handler_ids.setdefault(event, 100 + len(self._handler_ids))

    # -- producing -------------------------------------------------------------------------------------------

    def emit(self, name: str, fields: dict[str, Any], *, wrap: str | None = "FIELDS") -> None:
        """Queue event ``name`` with ``data[FIELDS]`` = ``fields``; applies drop/duplicate/delay/reorder.

        ``wrap=None`` puts the fields straight under ``data`` (``data[ID]``), as the timeline events do
        [docs/bitrix.md "Timeline comments"].
        """
        self._counters.inc("events", "emitted", name)
        # Applications see every event (their own bindings decide); outgoing webhooks only what they may.
        if self.observer is not None:
            self.observer(name, {wrap: dict(fields)} if wrap else dict(fields))
        if not self.may_subscribe(name):
            self._counters.inc("events", "application_only", name)
            return
        if self.subscribed is not None and name not in self.subscribed:
            self._counters.inc("events", "unsubscribed", name)
            return
        if not self.handler_url:
            self._counters.inc("events", "skipped", name)
            self._record(name, fields, "skipped", None)
            return
        if self._faults.roll("drop_rate"):
            self._counters.inc("events", "dropped", name)
            self._record(name, fields, "dropped", None)
            return
        copies = 1
        if self._faults.roll("duplicate_rate"):
            copies = 2
            self._counters.inc("events", "duplicated", name)
        delay = self._faults.value("event_delay")
        window = self._faults.value("reorder_window")
        with self._cond:
            now = time.monotonic()
            for _ in range(copies):
                if window > 0:
                    self._held.append((name, dict(fields), wrap))
                    if self._held_deadline is None:
                        self._held_deadline = now + window
                else:
                    heapq.heappush(
                        self._heap, _Queued(now + delay, next(self._seq), name, dict(fields), wrap)
                    )
            self._cond.notify_all()

    def _flush_held(self, now: float) -> None:
        held, self._held, self._held_deadline = self._held, [], None
        self._faults.shuffle(held)
        delay = self._faults.value("event_delay")
        for name, fields, wrap in held:
            heapq.heappush(self._heap, _Queued(now + delay, next(self._seq), name, fields, wrap))

    # -- consuming -------------------------------------------------------------------------------------------

    def pause(self) -> None:
        """Hold every event in the queue, as a stalled Bitrix queue server does, until ``resume()``."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        """Send the held events on (late, in queue order) and deliver as usual from now on."""
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    @property
    def paused(self) -> bool:
        """True while delivery is paused."""
        with self._cond:
            return self._paused

    def start(self) -> None:
        """Start the delivery worker thread(s)."""
        with self._cond:
            self._stopping = False
        for i in range(self._n_workers):
            thread = threading.Thread(target=self._run, name=f"sandbox-events-{self.domain}-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop the workers; queued events are discarded (a dead portal sends nothing)."""
        with self._cond:
            self._stopping = True
            self._paused = False
            self._heap.clear()
            self._held.clear()
            self._held_deadline = None
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=self.handler_timeout + 1)
        self._threads.clear()

    def _next(self) -> _Queued | None:
        with self._cond:
            while True:
                if self._stopping:
                    return None
                now = time.monotonic()
                if self._held and self._held_deadline is not None and self._held_deadline <= now:
                    self._flush_held(now)
                if self._paused:
                    self._cond.wait()
                    continue
                if self._heap and self._heap[0].due <= now:
                    self._in_flight += 1
                    return heapq.heappop(self._heap)
                waits = []
                if self._heap:
                    waits.append(self._heap[0].due - now)
                if self._held_deadline is not None:
                    waits.append(self._held_deadline - now)
                self._cond.wait(timeout=max(min(waits), 0.001) if waits else None)

    def _run(self) -> None:
        connection = _Connection()
        try:
            while (item := self._next()) is not None:
                try:
                    self._deliver(connection, item.name, item.fields, item.wrap)
                finally:
                    with self._cond:
                        self._in_flight -= 1
                        self._cond.notify_all()
        finally:
            connection.close()

    def build_body(self, name: str, fields: dict[str, Any], wrap: str | None = "FIELDS") -> str:
        """The exact form body Bitrix would POST for this event (``data[FIELDS][ID]``, or ``data[ID]``)."""
        prefix = f"data[{wrap}]" if wrap else "data"
        pairs: list[tuple[str, str]] = [("event", name), ("event_handler_id", str(self.handler_id(name)))]
        pairs += [(f"{prefix}[{key}]", "" if value is None else str(value)) for key, value in fields.items()]
        pairs += [
            ("ts", str(int(time.time()))),
            ("auth[domain]", self.domain),
            ("auth[client_endpoint]", self.client_endpoint),
            ("auth[server_endpoint]", SERVER_ENDPOINT),
            ("auth[member_id]", self.member_id),
            ("auth[application_token]", self.application_token),
        ]
        return urlencode(pairs)

    def _deliver(
        self, connection: _Connection, name: str, fields: dict[str, Any], wrap: str | None = "FIELDS"
    ) -> None:
        url = self.handler_url
        if not url:
            self._counters.inc("events", "skipped", name)
            self._record(name, fields, "skipped", None)
            return
        body = self.build_body(name, fields, wrap)
        self._counters.inc("events", "sent", name)
        status: int | None = None
        try:
            status = connection.post(url, body.encode("ascii"), timeout=self.handler_timeout)
        except (OSError, http.client.HTTPException):
            status = None
        # [docs/bitrix.md "Events"] no retries: a failure is only recorded.
        outcome = "delivered" if status is not None and 200 <= status < 300 else "failed"
        self._counters.inc("events", outcome, name)
        self._record(name, fields, outcome, status)

    def _record(self, name: str, fields: dict[str, Any], outcome: str, status: int | None) -> None:
        with self._cond:
            self._log.append({"event": name, "fields": dict(fields), "outcome": outcome, "status": status})

    # -- observing -------------------------------------------------------------------------------------------

    def pending(self) -> int:
        """Events queued, held for reordering, or being delivered."""
        with self._cond:
            return len(self._heap) + len(self._held) + self._in_flight

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued event was delivered (or failed); False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._heap and not self._held and self._in_flight == 0, timeout=timeout
            )

    def log(self) -> list[dict[str, Any]]:
        """Recent events with their outcome (delivered/failed/dropped/skipped), oldest first."""
        with self._cond:
            return list(self._log)

    def clear_log(self) -> None:
        """Forget the event log."""
        with self._cond:
            self._log.clear()


class _Connection:
    """One delivery worker's kept-alive HTTP/1.1 connection to the handler, opened again when the handler
    closed it. Plain `http.client`, not requests: the sandbox shares the benchmarks' two cores with bxsync,
    and requests' own CPU per POST capped a storm's delivery at 660-890 events/s against a handler that does
    nothing (docs/benchmarks.md "The sandbox's senders"). Redirects are not followed, as before."""

    HEADERS = {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "Bitrix24 Webhook Engine (sandbox)",
    }

    def __init__(self) -> None:
        self._http: http.client.HTTPConnection | None = None
        self._origin: tuple[str, str] = ("", "")

    def post(self, url: str, body: bytes, *, timeout: float) -> int:
        """POST `body` to `url`; the answer's status. Raises OSError or HTTPException if none came."""
        parts = urlsplit(url)
        origin = (parts.scheme, parts.netloc)
        if self._http is None or origin != self._origin or self._closed_by_handler():
            self.close()
            kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            self._http, self._origin = kind(parts.netloc, timeout=timeout), origin
        self._http.timeout = timeout
        if self._http.sock is not None:
            self._http.sock.settimeout(timeout)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            self._http.request("POST", path, body=body, headers=self.HEADERS)
            response = self._http.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if response.will_close:
            self.close()
        return response.status

    def _closed_by_handler(self) -> bool:
        """Whether the idle connection has something to read: the handler closed it (or sent what no
        request asked for), so it cannot carry the next request. urllib3 checks the same before reuse."""
        sock = self._http.sock if self._http is not None else None
        if sock is None:
            return False
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

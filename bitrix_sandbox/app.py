"""A portal's local application: OAuth 2.0, ``event.bind``, and the offline-event queue.

Facts emulated (the doc paths are in ``b24restdocs``):
- OAuth: ``/oauth/authorize/?client_id&state`` sends a signed-in user straight back to the application's
  ``redirect_uri`` with ``code`` (valid 30 s), ``state``, ``domain``, ``member_id``, ``scope``,
  ``server_domain``; ``/oauth/token/`` exchanges the code or a refresh token for a new pair: the access
  token lives an hour, the refresh token is replaced on use (settings/oauth/index.md, auto-renewal.md,
  error-codes.md). The portal's own ``/oauth/token/`` stands in for ``oauth.bitrix.info``, as the cloud
  proxies it (settings/cloud-and-on-premise/on-premise/index.md). A used refresh token is refused
  (``invalid_grant``): the sandbox's strict reading of "retain it instead of the previous one".
- REST with ``auth=<access_token>`` (or ``Authorization: Bearer``): an expired token answers
  ``401 expired_token``, an unknown one or one of a removed application ``401 invalid_token``
  (_includes/system-errors.md; the SDK's ``BitrixAPIInvalidToken``).
- ``event.bind``/``event.get``/``event.unbind`` (api-reference/events/event-bind.md, event-get.md).
- Offline events (api-reference/events/offline-events.md, event-offline-get.md, -clear.md, -error.md): one
  record per object (a thousand edits leave one, with the last timestamp); ``clear=0`` reserves the records
  under a ``process_id`` and hides them from other reads; ``event.offline.clear`` deletes only reserved
  records; ``event.offline.error`` sets them aside. A change to an object whose record is reserved makes a
  new record (UNCONFIRMED upstream: the sandbox's reading, so that a clear never loses a later change).
- ``auth_connector``: a write carrying the connector the handler was bound with is not queued there.
- ``feature.get`` ``rest_offline_extended``: without it the sandbox refuses ``clear=0`` and ignores
  ``auth_connector`` (UNCONFIRMED upstream what Bitrix does; both are documented as plan features).
- ``ONOFFLINEEVENT`` is posted to an online handler when records appear, at most once per ``minTimeout``
  (api-reference/events/on-offline-event.md); ``ONAPPUNINSTALL`` when the application is removed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import string
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from .errors import RestError
from .filters import filter_rows, order_rows, paginate

ACCESS_TOKEN_SECONDS = 3600
CODE_SECONDS = 30
OFFLINE_LIMIT = 50
APP_EVENTS = frozenset({"ONAPPUNINSTALL", "ONOFFLINEEVENT"})


@dataclass
class Binding:
    """One ``event.bind``: an online handler URL, or an offline queue (with its ``auth_connector``)."""

    event: str
    handler: str = ""
    offline: bool = False
    auth_connector: str = ""
    auth_type: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """How ``event.get`` lists it."""
        row: dict[str, Any] = {
            "event": self.event,
            "handler": self.handler,
            "auth_type": str(self.auth_type),
            "offline": 1 if self.offline else 0,
        }
        if self.auth_connector:
            row["connector_id"] = self.auth_connector
        return row


@dataclass
class OfflineRecord:
    """One record of the offline queue."""

    id: int
    at: float
    event: str
    data: dict[str, Any]
    message_id: str
    connector: str
    process_id: str = ""
    error: bool = False


def _token(rng: random.Random, length: int = 32) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(rng.choice(alphabet) for _ in range(length))


class Application:
    """The one local application installed on a portal (client id and secret, tokens, bindings, queue)."""

    def __init__(self, *, kind: str, seed: int | str, member_id: str, clock: Any, counters: Any) -> None:
        self._rng = random.Random(f"{seed}:{kind}:app")
        self.kind = kind
        self.member_id = member_id
        self.client_id = f"local.{_token(self._rng, 14)}.{self._rng.randrange(10**8):08d}"
        self.client_secret = _token(self._rng, 50)
        self.application_token = _token(self._rng, 32)
        self.redirect_uri = ""
        self.installed = True
        self.features = {"rest_offline_extended": True}
        self.user_id = 1
        self.portal_clock = clock
        self.metrics = counters
        self.lock = threading.RLock()
        self._codes: dict[str, float] = {}
        self._access: dict[str, float] = {}
        self._refresh: set[str] = set()
        self.bindings: list[Binding] = []
        self.queue: list[OfflineRecord] = []
        self._ids = itertools.count(1)
        self._acting = threading.local()
        self._last_wake = 0.0
        self.on_wake: Any = None  # set by the portal: posts ONOFFLINEEVENT / ONAPPUNINSTALL online

    # -- clock -----------------------------------------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the epoch on the portal's clock (tests move it forward to expire tokens)."""
        return time.time() + self.portal_clock.offset.total_seconds()

    # -- OAuth -----------------------------------------------------------------------------------------------

    def authorize(self, client_id: str, state: str, redirect_uri: str, domain: str) -> str:
        """The URL a signed-in administrator is sent back to, with a fresh one-time ``code``."""
        with self.lock:
            if not self.installed or client_id != self.client_id:
                raise RestError(400, "invalid_client", "Application not installed")
            target = self.redirect_uri or redirect_uri
            if not target:
                raise RestError(400, "invalid_request", "The application has no redirect_uri")
            code = _token(self._rng)
            self._codes[code] = self.now() + CODE_SECONDS
            self.metrics.inc("oauth", "authorize")
        query = urlencode(
            {
                "code": code,
                "state": state,
                "domain": domain,
                "member_id": self.member_id,
                "scope": self.kind_scope,
                "server_domain": "oauth.bitrix.info",
            }
        )
        return f"{target}{'&' if '?' in target else '?'}{query}"

    @property
    def kind_scope(self) -> str:
        """The application card's scope."""
        return "crm" if self.kind == "crm" else "sale"

    def token(self, params: dict[str, Any], client_endpoint: str) -> dict[str, Any]:
        """``/oauth/token/``: exchange a code (``authorization_code``) or a refresh token for a new pair."""
        grant = str(params.get("grant_type") or "")
        with self.lock:
            if params.get("client_id") != self.client_id or params.get("client_secret") != self.client_secret:
                raise RestError(401, "invalid_client", "Invalid client")
            if not self.installed:
                raise RestError(401, "invalid_client", "Application not installed")
            if grant == "authorization_code":
                expires = self._codes.pop(str(params.get("code") or ""), None)
                if expires is None or expires < self.now():
                    raise RestError(400, "invalid_grant", "Invalid authorization code")
            elif grant == "refresh_token":
                refresh = str(params.get("refresh_token") or "")
                if refresh not in self._refresh:
                    raise RestError(400, "invalid_grant", "Invalid refresh token")
                self._refresh.discard(refresh)  # replaced on use
            else:
                raise RestError(400, "invalid_request", "Unknown grant_type")
            self.metrics.inc("oauth", grant)
            access, refresh = _token(self._rng), _token(self._rng)
            expires_at = self.now() + ACCESS_TOKEN_SECONDS
            self._access[access] = expires_at
            self._refresh.add(refresh)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "expires": int(expires_at),
            "expires_in": ACCESS_TOKEN_SECONDS,
            "client_endpoint": client_endpoint,
            "server_endpoint": "https://oauth.bitrix.info/rest/",
            "domain": "oauth.bitrix.info",
            "member_id": self.member_id,
            "scope": self.kind_scope,
            "status": "L",
            "user_id": self.user_id,
        }

    def tokens_issue(self) -> tuple[str, str, int]:
        """A fresh pair without a grant (what the installation callback carries): access, refresh, expiry."""
        with self.lock:
            access, refresh = _token(self._rng), _token(self._rng)
            expires_at = self.now() + ACCESS_TOKEN_SECONDS
            self._access[access] = expires_at
            self._refresh.add(refresh)
        return access, refresh, int(expires_at)

    def token_check(self, access_token: str) -> RestError | None:
        """None when ``access_token`` may call REST; else the error to answer."""
        with self.lock:
            expires = self._access.get(access_token) if self.installed else None
            if expires is None:
                return RestError(401, "invalid_token", "Unable to get application by token")
            if expires <= self.now():
                return RestError(401, "expired_token", "The access token provided has expired.")
        return None

    def access_seconds_left(self) -> float:
        """Seconds the newest access token has left on the portal's clock (0 without one): a test moves the
        clock to just before it expires."""
        with self.lock:
            return max((expires - self.now() for expires in self._access.values()), default=0.0)

    def uninstall(self) -> None:
        """The administrator removes the application: tokens, bindings and queue go; ONAPPUNINSTALL fires."""
        with self.lock:
            online = [b for b in self.bindings if b.event == "ONAPPUNINSTALL" and b.handler]
            self.installed = False
            self._access.clear()
            self._refresh.clear()
            self.bindings.clear()
            self.queue.clear()
        for binding in online:
            if self.on_wake is not None:
                self.on_wake(binding.handler, "ONAPPUNINSTALL", {"LANGUAGE_ID": "ru", "CLEAN": 0})

    def install(self) -> None:
        """(Re)install the application."""
        with self.lock:
            self.installed = True

    # -- who is writing --------------------------------------------------------------------------------------

    @contextmanager
    def acting(self, connector: str | None):
        """Within this block, changes are made by the application with ``auth_connector`` = ``connector``."""
        previous = getattr(self._acting, "connector", None)
        self._acting.connector = connector or None
        try:
            yield
        finally:
            self._acting.connector = previous

    @contextmanager
    def rest_call(self):
        """One call to the portal (a batch included): ``ONOFFLINEEVENT`` with ``minTimeout`` 0 is sent once
        per call, however many records it queues (on-offline-event.md "Notification Frequency")."""
        outer = getattr(self._acting, "call_woken", None)
        self._acting.call_woken = False
        try:
            yield
        finally:
            self._acting.call_woken = outer

    # -- bindings --------------------------------------------------------------------------------------------

    def bind(self, params: dict[str, Any], known_events: frozenset[str]) -> bool:
        """``event.bind``."""
        event = str(params.get("event") or "").upper()
        offline = str(params.get("event_type") or "online").lower() == "offline"
        handler = str(params.get("handler") or "")
        if event not in known_events | APP_EVENTS:
            raise RestError(400, "ERROR_EVENT_NOT_FOUND", "Event not found")
        if not offline and not handler:
            raise RestError(400, "ERROR_HANDLER_REQUIRED", "Handler is required")
        options = params.get("options") if isinstance(params.get("options"), dict) else {}
        binding = Binding(
            event=event,
            handler="" if offline else handler,
            offline=offline,
            auth_connector=str(params.get("auth_connector") or ""),
            auth_type=int(params.get("auth_type") or 0),
            options=dict(options),
        )
        with self.lock:
            if any(
                (b.event, b.handler, b.offline, b.auth_connector)
                == (binding.event, binding.handler, binding.offline, binding.auth_connector)
                for b in self.bindings
            ):
                raise RestError(400, "ERROR_EVENT_HANDLER_EXISTS", "Handler already binded")
            self.bindings.append(binding)
        return True

    def unbind(self, params: dict[str, Any]) -> dict[str, int]:
        """``event.unbind``: by event, and handler (online) or ``event_type=offline``."""
        event = str(params.get("event") or "").upper()
        offline = str(params.get("event_type") or "online").lower() == "offline"
        handler = str(params.get("handler") or "")
        with self.lock:
            keep = [
                b
                for b in self.bindings
                if not (b.event == event and b.offline == offline and (offline or b.handler == handler))
            ]
            count = len(self.bindings) - len(keep)
            self.bindings = keep
        return {"count": count}

    def handlers_of(self, event: str) -> list[str]:
        """Online handler URLs bound to ``event``."""
        with self.lock:
            return [b.handler for b in self.bindings if b.event == event and not b.offline]

    # -- the offline queue -----------------------------------------------------------------------------------

    def event_happened(self, event: str, data: dict[str, Any]) -> None:
        """Queue ``event`` for every offline binding, one record per object and connector."""
        acting = getattr(self._acting, "connector", None)
        honours_connector = self.features.get("rest_offline_extended", False)
        message_id = hashlib.sha256(json.dumps([event, data], sort_keys=True).encode()).hexdigest()[:32]
        queued = False
        online: list[str] = []
        with self.lock:
            for binding in self.bindings:
                if binding.event != event:
                    continue
                if not binding.offline:
                    online.append(binding.handler)
                    continue
                if honours_connector and acting and acting == binding.auth_connector:
                    self.metrics.inc("offline", "suppressed", event)
                    continue
                queued = True
                self._record_put(event, data, message_id, binding.auth_connector)
        if queued:
            self._wake()
        for handler in online:
            if self.on_wake is not None:
                self.on_wake(handler, event, data)

    def _record_put(self, event: str, data: dict[str, Any], message_id: str, connector: str) -> None:
        for record in self.queue:
            if (record.message_id, record.connector, record.process_id) == (message_id, connector, ""):
                record.at = self.now()  # coalesced: the record keeps the last change's time
                record.error = False
                self.metrics.inc("offline", "coalesced", event)
                return
        self.queue.append(OfflineRecord(next(self._ids), self.now(), event, data, message_id, connector))
        self.metrics.inc("offline", "queued", event)

    def _wake(self) -> None:
        """``ONOFFLINEEVENT`` to its online handlers for a new record (on-offline-event.md "Notification
        Frequency"): ``minTimeout`` > 0 (1 unless bound otherwise): the first record sends one, the next not
        before that many seconds have passed, what is queued meanwhile sends none; 0: one per call."""
        handlers: list[tuple[str, float]] = []
        with self.lock:
            for binding in self.bindings:
                if binding.event == "ONOFFLINEEVENT" and binding.handler:
                    timeout = binding.options.get("mintimeout", binding.options.get("minTimeout", 1))
                    handlers.append((binding.handler, float(timeout if timeout not in (None, "") else 1)))
            if not handlers or self.on_wake is None:
                return
            min_timeout = min(timeout for _, timeout in handlers)
            now = time.time()
            if min_timeout <= 0:
                if getattr(self._acting, "call_woken", None):
                    return
                if getattr(self._acting, "call_woken", None) is False:
                    self._acting.call_woken = True
            elif now - self._last_wake < min_timeout:
                return
            self._last_wake = now
        for handler, _ in handlers:
            self.on_wake(handler, "ONOFFLINEEVENT", {})  # "data" arrives empty (on-offline-event.md)

    def offline_get(self, params: dict[str, Any]) -> dict[str, Any]:
        """``event.offline.get``: the oldest records; deleted (``clear=1``) or reserved (``clear=0``)."""
        clear = str(params.get("clear", 1)) not in ("0", "false", "N")
        if not clear and not self.features.get("rest_offline_extended", False):
            raise RestError(403, "ACCESS_DENIED", "Feature rest_offline_extended is not available")
        connector = str(params.get("auth_connector") or "")
        limit = max(1, min(int(params.get("limit") or OFFLINE_LIMIT), OFFLINE_LIMIT))
        with_errors = str(params.get("error", 0)) in ("1", "true", "Y")
        process_id = str(params.get("process_id") or "")
        with self.lock:
            mine = [r for r in self.queue if process_id and r.process_id == process_id]
            free = [
                r
                for r in self.queue
                if r.connector == connector and not r.process_id and r.error == with_errors
            ]
            picked = sorted(mine, key=lambda r: (r.at, r.id))[:limit]
            picked += sorted(free, key=lambda r: (r.at, r.id))[: limit - len(picked)]
            if clear:
                gone = {r.id for r in picked}
                self.queue = [r for r in self.queue if r.id not in gone]
                process_id = ""
            elif picked:
                process_id = process_id or _token(self._rng)
                for record in picked:
                    record.process_id = process_id
            if picked:
                self.metrics.inc("offline", "read", amount=len(picked))
            events = [self._row(r) for r in picked]
        return {"process_id": process_id or None, "events": events}

    def _row(self, record: OfflineRecord) -> dict[str, Any]:
        return {
            "ID": str(record.id),
            "TIMESTAMP_X": self.portal_clock.format(_ts(record.at, self.portal_clock)),
            "EVENT_NAME": record.event,
            "EVENT_DATA": record.data,
            "EVENT_ADDITIONAL": {"user_id": self.user_id},
            "MESSAGE_ID": record.message_id,
        }

    def offline_clear(self, params: dict[str, Any]) -> bool:
        """``event.offline.clear``: delete the records of ``process_id`` (or those ``id``, ``message_id``)."""
        process_id = str(params.get("process_id") or "")
        if not process_id:
            raise RestError(400, "INVALID_ARG_VALUE", "process_id is required")
        ids = {str(i) for i in _as_list(params.get("id"))}
        message_ids = {str(m) for m in _as_list(params.get("message_id"))}
        with self.lock:
            before = len(self.queue)
            self.queue = [
                r
                for r in self.queue
                if not (
                    r.process_id == process_id
                    and (not ids or str(r.id) in ids)
                    and (ids or not message_ids or r.message_id in message_ids)
                )
            ]
            self.metrics.inc("offline", "cleared", amount=before - len(self.queue))
        return True

    def offline_error(self, params: dict[str, Any]) -> bool:
        """``event.offline.error``: set the records of ``process_id`` with these ``message_id`` aside."""
        process_id = str(params.get("process_id") or "")
        message_ids = {str(m) for m in _as_list(params.get("message_id"))}
        with self.lock:
            for record in self.queue:
                if record.process_id == process_id and record.message_id in message_ids:
                    record.error, record.process_id = True, ""
                    self.metrics.inc("offline", "errors")
        return True

    def offline_list(self, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int | None, int | None]:
        """``event.offline.list`` (api-reference/events/event-offline-list.md): the queue as it is, nothing
        reserved or deleted; ``filter``/``order`` on ``ID``, ``TIMESTAMP_X``, ``EVENT_NAME``, ``MESSAGE_ID``,
        ``PROCESS_ID``, ``ERROR``; pages of 50 by ``start``; only the records of the ``auth_connector``
        given (none: those without a source). Returns (page, total, next)."""
        connector = str(params.get("auth_connector") or "")
        with self.lock:
            rows = [
                self._row(r) | {"PROCESS_ID": r.process_id, "ERROR": "1" if r.error else "0"}
                for r in self.queue
                if r.connector == connector
            ]
        types = {
            "ID": "int",
            "TIMESTAMP_X": "datetime",
            "EVENT_NAME": "str",
            "MESSAGE_ID": "str",
            "PROCESS_ID": "str",
            "ERROR": "int",
        }
        rows = filter_rows(rows, params.get("filter"), types, self.portal_clock)
        rows = order_rows(rows, params.get("order"), types, self.portal_clock, "ID")
        return paginate(rows, params.get("start"))

    def depth(self) -> int:
        """Records waiting (reserved or not, errors excluded)."""
        with self.lock:
            return sum(1 for r in self.queue if not r.error)

    def info(self) -> dict[str, Any]:
        """The control API's view (secrets included: the sandbox is a test double)."""
        with self.lock:
            return {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "application_token": self.application_token,
                "redirect_uri": self.redirect_uri,
                "installed": self.installed,
                "features": dict(self.features),
                "bindings": [b.row() for b in self.bindings],
                "queue_depth": self.depth(),
                "queue": [self._row(r) | {"process_id": r.process_id, "error": r.error} for r in self.queue],
            }

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change ``redirect_uri``, ``features`` or ``installed``; returns ``info()``."""
        with self.lock:
            if "redirect_uri" in changes:
                self.redirect_uri = str(changes.pop("redirect_uri") or "")
            if "features" in changes:
                self.features.update({str(k): bool(v) for k, v in dict(changes.pop("features")).items()})
            if changes.pop("installed", True) is False:
                changes["uninstall"] = True
            if changes:
                unknown = sorted(set(changes) - {"uninstall"})
                if unknown:
                    raise ValueError(f"unknown application settings {unknown}")
        if changes.get("uninstall"):
            self.uninstall()
        return self.info()

    def reset(self) -> None:
        """Forget tokens, bindings, the queue and the settings; installed again."""
        with self.lock:
            self.installed = True
            self.redirect_uri = ""
            self.features = {"rest_offline_extended": True}
            self._last_wake = 0.0
            self._codes.clear()
            self._access.clear()
            self._refresh.clear()
            self.bindings.clear()
            self.queue.clear()


def _as_list(value: Any) -> list[Any]:
    if value in (None, ""):
        return []
    if isinstance(value, dict):
        return list(value.values())
    return list(value) if isinstance(value, list | tuple) else [value]


def _ts(at: float, clock: Any):
    from datetime import datetime

    return datetime.fromtimestamp(at, clock.tz)

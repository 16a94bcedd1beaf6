"""The REST side common to both emulated portals: auth, limits, faults, envelopes, ``batch`` and counters.

A concrete portal (``ShopPortal``, ``CrmPortal``) registers its methods; everything a Bitrix client can
observe about the transport lives here:
- inbound webhook ``/rest/<user_id>/<code>/<method>[.json]``, wrong user/code → 401 NO_AUTH_FOUND
  [docs/bitrix.md "Errors"];
- success ``{"result", "time"}`` plus ``total``/``next`` for lists
  [docs/bitrix.md "Calling the REST API"];
- errors ``{"error", "error_description"}`` with an HTTP status [docs/bitrix.md "Errors"];
- leaky bucket 503 QUERY_LIMIT_EXCEEDED, ``batch`` counts once; operating limit 429 per method
  [docs/bitrix.md "Limits"];
- ``batch``: ≤ 50 commands, HTTP 200 even when commands fail, no nested batch
  [docs/bitrix.md "Batch"].
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import random
import re
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import requests

from phpquery import http_build_query, parse_bracket_query

from .app import Application
from .errors import RestError
from .events import EventDispatcher
from .faults import Faults
from .filters import FilterError
from .limits import LeakyBucket, OperatingLimiter
from .store import Counters, PortalClock

if TYPE_CHECKING:
    from .server import PortalServer

log = logging.getLogger(__name__)

DEFAULT_WEBHOOK_USER = 1
DEFAULT_HUMAN_USER = 7
BATCH_MAX = 50


@dataclass
class MethodResult:
    """What a method handler returns: the ``result`` payload and, for list methods, ``total``/``next``."""

    result: Any
    total: int | None = None
    next: int | None = None


@dataclass
class CallContext:
    """Who is calling: the webhook's user id (REST writes are attributed to it)."""

    user_id: int
    source: str = "rest"
    #: An application's call (OAuth): its ``auth_connector`` marks the changes it makes.
    app: bool = False


Handler = Callable[[dict[str, Any], CallContext], MethodResult]


@dataclass
class PortalConfig:
    """Settings shared by both portals; empty ``webhook_code``/``application_token`` come from the seed."""

    port: int = 0
    host: str = "127.0.0.1"
    user_id: int = DEFAULT_WEBHOOK_USER
    human_user_id: int = DEFAULT_HUMAN_USER
    webhook_code: str = ""
    application_token: str = ""
    handler_url: str | None = None
    # Event names the outgoing webhook is subscribed to; None = every event the portal emits.
    subscribed_events: frozenset[str] | None = None
    rate: float = 2.0
    burst: int = 50
    operating_limit: float | None = None
    operating_limits: dict[str, float] = field(default_factory=dict)
    tz_offset: str = "+03:00"
    # UNCONFIRMED upstream whether a save without changes fires the update event; default: it does.
    event_on_noop_update: bool = True
    handler_timeout: float = 10.0
    delivery_workers: int = 1


@dataclass
class _Outcome:
    status: int
    result: MethodResult | None
    error: dict[str, Any] | None
    operating: float
    operating_reset_at: float | None
    started: float
    finished: float
    processing: float


def _token(rng: random.Random, length: int) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(rng.choice(alphabet) for _ in range(length))


def lower_keys(params: dict[str, Any]) -> dict[str, Any]:
    """Top-level parameter names ignore case (``ID``, ``id``) [docs/bitrix.md "Parameter encoding"]."""
    return {str(k).lower(): v for k, v in params.items()}


def truthy(value: Any) -> bool:
    """Bitrix-ish boolean: 1/"1"/true/"Y"/"true"."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "y", "true", "yes")
    return bool(value)


def php_array(values: dict[str, Any]) -> Any:
    """Mimic PHP's json_encode of an array: empty → ``[]``, keys ``"0".."n-1"`` → a list, else an object.

    [docs/bitrix.md "Batch"] the docs' own batch examples show ``"result_error": []``.
    """
    if not values:
        return []
    keys = list(values)
    if all(k.isdigit() for k in keys) and [int(k) for k in keys] == list(range(len(keys))):
        return [values[k] for k in keys]
    return values


_RESULT_REF = re.compile(r"\$result\[([^\]]+)\]((?:\[[^\]]*\])*)")


class Portal:
    """Base of an emulated Bitrix portal. Subclasses set ``kind`` and register methods in ``_register``."""

    kind = "portal"
    #: Events this portal emits.
    EVENT_NAMES: frozenset[str] = frozenset()
    #: Events the outgoing webhook is subscribed to unless configured (None = all).
    DEFAULT_SUBSCRIBED: frozenset[str] | None = None
    #: Events only an application can bind: an outgoing webhook never receives them [docs/bitrix.md "Events"].
    APPLICATION_ONLY_EVENTS: frozenset[str] = frozenset()
    #: REST methods that write (what the reply-lost fault and the write counters are about).
    WRITE_METHODS: frozenset[str] = frozenset()

    def __init__(self, config: PortalConfig, seed: int | str = 0) -> None:
        self.config = config
        self.seed = seed
        self.lock = threading.RLock()
        self.clock = PortalClock(config.tz_offset)
        self.metrics = Counters()
        self.faults = Faults(seed=f"{seed}:{self.kind}:faults")
        self.bucket = LeakyBucket(config.rate, config.burst)
        self.operating = OperatingLimiter(config.operating_limit, config.operating_limits)
        ids = random.Random(f"{seed}:{self.kind}:ids")
        self.webhook_code = config.webhook_code or _token(ids, 16)
        application_token = config.application_token or _token(ids, 32)
        member_id = hashlib.sha256(f"{seed}:{self.kind}".encode()).hexdigest()[:32]
        self.events = EventDispatcher(
            self.metrics,
            self.faults,
            domain=f"{self.kind}.sandbox.local",
            client_endpoint=f"https://{self.kind}.sandbox.local/rest/",
            member_id=member_id,
            application_token=application_token,
            handler_url=config.handler_url,
            subscribed=(
                config.subscribed_events if config.subscribed_events is not None else self.DEFAULT_SUBSCRIBED
            ),
            handler_timeout=config.handler_timeout,
            workers=config.delivery_workers,
            application_only=self.APPLICATION_ONLY_EVENTS,
        )
        self.app = Application(
            kind=self.kind, seed=seed, member_id=member_id, clock=self.clock, counters=self.metrics
        )
        self.app.on_wake = self._app_event_post
        self.events.observer = self.app.event_happened
        self._methods: dict[str, Handler] = {}
        # One Bitrix24 serving both roles (see ``serve_also``): the portal whose address and bucket we use,
        # and the portals whose webhooks this one answers, by webhook code.
        self.rest_home: Portal | None = None
        self.guests: dict[str, Portal] = {}
        # A renamed portal (see ``move_address``): its new base URL, and the server answering there.
        self.moved_to: str | None = None
        self._moved_server: PortalServer | None = None
        self._stop = threading.Event()
        self._server: PortalServer | None = None
        self._control: Any = None
        self.port = config.port
        from .account import Account  # imports this module

        self.account = Account(self)
        self._register()
        self.account.register()
        self._app_register()
        self._app_posts: queue.Queue[tuple[str, str]] = queue.Queue()
        self._app_poster: threading.Thread | None = None

    # -- wiring ----------------------------------------------------------------------------------------------

    def _register(self) -> None:
        """Subclasses register their REST methods here."""

    def register(self, method: str, handler: Handler) -> None:
        """Expose ``handler`` as REST method ``method`` (names are case-insensitive)."""
        self._methods[method.lower()] = handler

    @property
    def methods(self) -> list[str]:
        """Names of the REST methods this portal answers."""
        return sorted([*self._methods, "batch"])

    def human_actions(self) -> dict[str, Callable[..., Any]]:
        """Name → callable of the non-REST actions the control API may trigger."""
        return {}

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self, control: Any = None) -> None:
        """Bind the HTTP server (``config.port``, 0 = ephemeral) and start serving and delivering events.

        Started again after ``stop()``, it binds the port it had, so the webhook URL stays valid.
        """
        from .server import PortalServer

        self._stop.clear()
        if control is not None:
            self._control = control
        self._server = PortalServer(self, self._control, port=self.port or self.config.port)
        self.port = self._server.port
        base = f"http://{self.config.host}:{self.port}"
        self.events.domain = f"{self.config.host}:{self.port}"
        self.events.client_endpoint = f"{base}/rest/"
        self._server.start()
        self.events.start()

    def stop(self) -> None:
        """Stop HTTP and event delivery; pending sleeps (latency/timeout faults) are cut short."""
        self._stop.set()
        if self._server is not None:
            self._server.stop()
            self._server = None
        self.address_restore()
        self.events.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def webhook_url(self) -> str:
        """Inbound-webhook base URL ``http://127.0.0.1:<port>/rest/<user>/<code>/`` (on the hosting portal's
        address when another portal serves this one's REST, see ``serve_also``)."""
        home = self.rest_home or self
        return f"{home.base_url}/rest/{self.config.user_id}/{self.webhook_code}/"

    # -- one portal, both roles ------------------------------------------------------------------------------

    def serve_also(self, other: Portal) -> None:
        """Answer ``other``'s inbound webhook on this portal's address, from this portal's leaky bucket: a
        shop and a CRM on one Bitrix24, two webhooks of one portal. Bitrix counts requests per portal, not
        per webhook or application (settings/performance/limits.md) [docs/bitrix.md "Limits"]. ``other``
        keeps its own control API on its own port."""
        if other.webhook_code == self.webhook_code:
            raise ValueError("two webhooks of one portal need two codes")
        other.bucket = self.bucket
        other.rest_home = self
        self.guests[other.webhook_code] = other

    def rest_portal(self, code: str) -> Portal:
        """The portal whose inbound webhook ``code`` is, among those this one serves."""
        return self.guests.get(code, self)

    # -- a renamed portal ------------------------------------------------------------------------------------

    def move_address(self) -> str:
        """The portal is renamed (a cloud portal's address may change at any time): it answers on a new port
        from now on, and its old address answers every REST call with ``302`` to the same path there
        (settings/how-to-call-rest-api/change-domen.md) [docs/bitrix.md "Calling the REST API"]. The
        webhook URL keeps the old address, as bxsync's configured one does. Returns the new base URL."""
        from .server import PortalServer

        server = PortalServer(self, self._control, port=0)
        server.start()
        self._moved_server = server
        self.moved_to = f"http://{self.config.host}:{server.port}"
        return self.moved_to

    def address_restore(self) -> None:
        """Undo ``move_address``: the old address answers again."""
        if self._moved_server is not None:
            self._moved_server.stop()
        self._moved_server, self.moved_to = None, None

    def redirect_for(self, port: int, path: str) -> str | None:
        """Where a REST call to ``path`` on ``port`` is redirected, if the portal moved away from there."""
        if self.moved_to and port == self.port and path.startswith("/rest/"):
            return f"{self.moved_to}{path}"
        return None

    @property
    def application_token(self) -> str:
        """The ``auth[application_token]`` sent with every outgoing event."""
        return self.events.application_token

    # -- control ---------------------------------------------------------------------------------------------

    def configure_events(
        self,
        handler_url: str | None = None,
        application_token: str | None = None,
        subscribed_events: list[str] | frozenset[str] | None = None,
        handler_timeout: float | None = None,
        subscriber: str | None = None,
    ) -> None:
        """Set the outgoing webhook's handler URL, token, subscribed event names and delivery timeout.
        ``subscriber="application"`` makes the subscriber an application (``event.bind``), which may also
        bind the application-only events (``APPLICATION_ONLY_EVENTS``); ``"webhook"``, the default, may
        not."""
        self.events.configure(
            handler_url=handler_url,
            application_token=application_token,
            subscribed=frozenset(subscribed_events) if subscribed_events is not None else None,
            handler_timeout=handler_timeout,
            subscriber=subscriber,
        )

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        """Change fault switches (see ``FaultSettings``); returns the new settings."""
        return self.faults.set(**changes)

    def clear_faults(self) -> None:
        """Turn every fault off."""
        self.faults.clear()

    def set_limits(
        self,
        rate: float | None = None,
        burst: int | None = None,
        operating_limit: float | None = None,
        operating_limits: dict[str, float] | None = None,
    ) -> None:
        """Change the leaky bucket and the operating-time limits at runtime (both reset)."""
        self.bucket.configure(rate=rate, burst=burst)
        self.bucket.reset()
        self.operating.configure(limit=operating_limit, per_method=operating_limits)
        self.operating.reset()

    def counters(self) -> dict[str, Any]:
        """All counters, nested by source and method or event name.

        ``rest_requests`` (HTTP requests served: a batch is one), ``rest_calls`` (by method, batch
        sub-commands included), ``rest_rejected`` (by reason: ``outage``, ``auth``, ``rate_limit``,
        ``fault_5xx``, ``fault_timeout``, ``reply_lost``, ``operating_limit``), ``replies_lost`` (write
        commands whose reply was lost, by method), ``writes`` (requested: every REST write call, and every
        human/seed change, by ``source`` and method), ``writes_applied`` (those that changed something),
        ``events`` (``emitted``/``sent``/``delivered``/``failed``/``dropped``/... by event name),
        ``events_pending`` and, on the CRM, ``timeline_comments`` by source.
        """
        data = self.metrics.snapshot()
        data["events_pending"] = self.events.pending()
        return data

    def reset_counters(self) -> None:
        """Zero the counters and the event log (state is kept)."""
        self.metrics.reset()
        self.events.clear_log()

    def wait_events_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event has been delivered or failed."""
        return self.events.wait_idle(timeout)

    def event_log(self) -> list[dict[str, Any]]:
        """Recent events with outcome, oldest first."""
        return self.events.log()

    def info(self) -> dict[str, Any]:
        """What a client needs to know about this portal (control API ``info``)."""
        return {
            "kind": self.kind,
            "base_url": self.base_url,
            "webhook_url": self.webhook_url,
            "user_id": self.config.user_id,
            "human_user_id": self.config.human_user_id,
            "application_token": self.application_token,
            "handler_url": self.events.handler_url,
            "events": sorted(self.EVENT_NAMES),
            "subscriber": self.events.subscriber,
            "subscribed_events": sorted(self.events.subscribed)
            if self.events.subscribed is not None
            else None,
            "methods": self.methods,
            "rate": self.bucket.rate,
            "burst": self.bucket.burst,
            "options": self.options(),
            "account": self.account.snapshot(),
        }

    def options(self) -> dict[str, Any]:
        """Behaviour switches that are not faults."""
        return {"event_on_noop_update": self.config.event_on_noop_update}

    def set_account(self, **changes: Any) -> dict[str, Any]:
        """Change who the webhook is and how the portal is set up (``account.AccountSettings``)."""
        return self.account.set(**changes)

    def set_options(self, **options: Any) -> dict[str, Any]:
        """Change behaviour switches (``event_on_noop_update``); unknown names raise ValueError."""
        for name, value in options.items():
            if name == "event_on_noop_update":
                self.config.event_on_noop_update = truthy(value)
            else:
                raise ValueError(f"unknown option {name!r}")
        return self.options()

    def state(self) -> dict[str, Any]:
        """All entities (control API ``state``)."""
        return {}

    def entity(self, kind: str, entity_id: int) -> dict[str, Any] | None:
        """One entity by kind (``deal``/``order``/``payment``) for the control API."""
        return None

    def reset_state(self) -> None:
        """Delete every entity silently."""

    def count_write(self, source: str, method: str, *, applied: bool = True) -> None:
        """Count one write (``source``: ``rest``, ``human`` or ``seed``; ``method``: the REST-equivalent
        name) under ``writes``, and under ``writes_applied`` too when it changed something."""
        self.metrics.inc("writes", source, method)
        if applied:
            self.metrics.inc("writes_applied", source, method)

    def pause_events(self) -> None:
        """Hold every outgoing event (a stalled Bitrix queue server) until ``resume_events``."""
        self.events.pause()

    def resume_events(self) -> None:
        """Deliver the held events, late, and carry on as usual."""
        self.events.resume()

    # -- the application (OAuth, event.bind, offline events: see ``app``) ----------------------------------

    def _app_register(self) -> None:
        def app_only(call: Callable[[dict[str, Any]], Any]) -> Handler:
            def handler(params: dict[str, Any], ctx: CallContext) -> MethodResult:
                if not ctx.app:
                    # api-reference/events/event-bind.md: "works only within the context of application
                    # authorization"; the code and status are the sandbox's (UNCONFIRMED upstream).
                    raise RestError(
                        401, "WRONG_AUTH_TYPE", "Current authorization type is denied for this method"
                    )
                return MethodResult(call(lower_keys(params)))

            return handler

        known = self.EVENT_NAMES
        self.register("event.bind", app_only(lambda p: self.app.bind(p, known)))
        self.register("event.unbind", app_only(self.app.unbind))
        self.register("event.get", app_only(lambda p: [b.row() for b in self.app.bindings]))
        self.register("event.offline.get", app_only(self.app.offline_get))
        self.register("event.offline.clear", app_only(self.app.offline_clear))
        self.register("event.offline.error", app_only(self.app.offline_error))
        self.register("event.offline.list", self._offline_list)
        self.register(
            "feature.get",
            lambda p, ctx: MethodResult(
                {"value": "Y" if self.app.features.get(str(lower_keys(p).get("code") or "")) else "N"}
            ),
        )

    def _offline_list(self, params: dict[str, Any], ctx: CallContext) -> MethodResult:
        """``event.offline.list``: a list method, so ``total`` and ``next`` come with the page."""
        if not ctx.app:
            raise RestError(401, "WRONG_AUTH_TYPE", "Current authorization type is denied for this method")
        page, total, nxt = self.app.offline_list(lower_keys(params))
        return MethodResult(page, total=total, next=nxt)

    def oauth_authorize(self, params: dict[str, Any]) -> str:
        """``/oauth/authorize/``: the redirect target with a fresh code (the administrator is signed in)."""
        return self.app.authorize(
            str(params.get("client_id") or ""),
            str(params.get("state") or ""),
            str(params.get("redirect_uri") or ""),
            self.events.domain,
        )

    def oauth_token(self, params: dict[str, Any]) -> dict[str, Any]:
        """``/oauth/token/``: a new token pair (raises ``RestError``)."""
        return self.app.token(params, f"{self.base_url}/rest/")

    def app_install_post(self, url: str) -> int:
        """The administrator saves the local application: its installation callback gets the first token
        pair (settings/app-installation/local-apps/installation-callback.md). Returns the HTTP status."""
        access, refresh, expires = self.app.tokens_issue()
        body = {
            "event": "ONAPPINSTALL",
            "data": {"VERSION": "1", "LANGUAGE_ID": "ru"},
            "auth": {
                "access_token": access,
                "refresh_token": refresh,
                "expires": str(expires),
                "expires_in": "3600",
                "scope": self.app.kind_scope,
                "domain": self.events.domain,
                "server_endpoint": "https://oauth.bitrix.info/rest/",
                "status": "L",
                "client_endpoint": f"{self.base_url}/rest/",
                "member_id": self.app.member_id,
                "user_id": str(self.app.user_id),
                "application_token": self.app.application_token,
            },
        }
        answer = requests.post(
            url,
            data=http_build_query(body).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=self.events.handler_timeout,
        )
        answer.close()
        return answer.status_code

    def _app_event_post(self, handler: str, name: str, data: dict[str, Any]) -> None:
        """Post an application's online event (``ONOFFLINEEVENT``, ``ONAPPUNINSTALL``) in the background."""
        body = http_build_query(
            {
                "event": name,
                "data": data,
                "ts": str(int(time.time())),
                "auth": {
                    "domain": self.events.domain,
                    "client_endpoint": f"{self.base_url}/rest/",
                    "server_endpoint": "https://oauth.bitrix.info/rest/",
                    "member_id": self.app.member_id,
                    "application_token": self.app.application_token,
                },
            }
        )
        self._app_posts.put((handler, body))
        if self._app_poster is None or not self._app_poster.is_alive():
            self._app_poster = threading.Thread(
                target=self._app_post_loop, name="sandbox-app-events", daemon=True
            )
            self._app_poster.start()

    def _app_post_loop(self) -> None:
        while True:
            handler, body = self._app_posts.get()
            self.metrics.inc("app_events", "sent")
            try:
                requests.post(
                    handler,
                    data=body.encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                    timeout=self.events.handler_timeout,
                ).close()
            except requests.RequestException:
                self.metrics.inc("app_events", "failed")

    # -- REST entry point ------------------------------------------------------------------------------------

    def handle_rest(
        self, user_id: str, code: str, method: str, params: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        """Answer one inbound-webhook call: returns (HTTP status, JSON body)."""
        if self.faults.in_outage():
            self.metrics.inc("rest_rejected", "outage")
            return 503, {
                "error": "SERVICE_UNAVAILABLE",
                "error_description": "Service temporarily unavailable",
            }
        if str(user_id) != str(self.config.user_id) or code != self.webhook_code:
            self.metrics.inc("rest_rejected", "auth")
            # [docs/bitrix.md "Errors"] bad webhook code → 401 NO_AUTH_FOUND
            return 401, {"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"}
        return self._serve(method, params, CallContext(user_id=int(self.config.user_id)))

    def handle_app_rest(
        self, method: str, params: dict[str, Any], bearer: str = ""
    ) -> tuple[int, dict[str, Any]]:
        """Answer one application call ``/rest/<method>`` authorised by ``auth=<access_token>`` or a bearer
        header (settings/oauth/index.md); returns (HTTP status, JSON body)."""
        if self.faults.in_outage():
            self.metrics.inc("rest_rejected", "outage")
            return 503, {
                "error": "SERVICE_UNAVAILABLE",
                "error_description": "Service temporarily unavailable",
            }
        params = dict(params)
        token = str(params.pop("auth", "") or bearer)
        refused = self.app.token_check(token)
        if refused is not None:
            self.metrics.inc("rest_rejected", refused.error)
            return refused.status, refused.body()
        return self._serve(method, params, CallContext(user_id=self.app.user_id, app=True))

    def _serve(self, method: str, params: dict[str, Any], ctx: CallContext) -> tuple[int, dict[str, Any]]:
        with self.app.rest_call():
            return self._serve_call(method, params, ctx)

    def _serve_call(
        self, method: str, params: dict[str, Any], ctx: CallContext
    ) -> tuple[int, dict[str, Any]]:
        method = method.lower()
        # [docs/bitrix.md "Limits"] one HTTP request = 1 in the bucket, a batch included.
        if not self.bucket.try_acquire():
            self.metrics.inc("rest_rejected", "rate_limit")
            return 503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
        if self.faults.roll("error_rate"):
            self.metrics.inc("rest_rejected", "fault_5xx")
            return 500, {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"}
        latency = self.faults.value("latency")
        if latency > 0:
            self._stop.wait(latency)
        self.metrics.inc("rest_requests")  # HTTP requests served: a batch is one
        self.metrics.inc("rest_calls", method)
        if method == "batch":
            status, body, applied = self._batch(params, ctx, latency)
        else:
            outcome = self._invoke(method, params, ctx, extra_seconds=latency)
            status, body = outcome.status, self._envelope(outcome)
            applied = [(method, params)] if outcome.error is None else []
        writes = [(m, p) for m, p in applied if m in self.WRITE_METHODS]
        if writes and self.faults.lose_reply([(m, write_key(p)) for m, p in writes], self.WRITE_METHODS):
            # Committed, events on their way; only the answer goes missing.
            self.metrics.inc("rest_rejected", "reply_lost")
            for m, _ in writes:
                self.metrics.inc("replies_lost", m)
            if self.faults.value("reply_lost_as") == "error":
                return 500, {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"}
            self._stop.wait(self.faults.value("timeout_seconds"))
            return status, body
        if self.faults.roll("timeout_rate"):
            # The call took effect; the answer just never arrives in time.
            self.metrics.inc("rest_rejected", "fault_timeout")
            self._stop.wait(self.faults.value("timeout_seconds"))
        return status, body

    def _invoke(
        self, method: str, params: dict[str, Any], ctx: CallContext, extra_seconds: float = 0.0
    ) -> _Outcome:
        started = time.time()
        handler = self._methods.get(method)
        if handler is None:
            # [docs/bitrix.md "Errors"] unknown method → 404 ERROR_METHOD_NOT_FOUND
            return _Outcome(
                404,
                None,
                {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"},
                0.0,
                None,
                started,
                time.time(),
                0.0,
            )
        try:
            params = self.account.admit(method, params)
        except RestError as exc:
            return _Outcome(exc.status, None, exc.body(), 0.0, None, started, time.time(), 0.0)
        allowed, operating, reset_at = self.operating.status(method)
        if not allowed:
            self.metrics.inc("rest_rejected", "operating_limit")
            return _Outcome(
                429,
                None,
                {
                    "error": "OPERATION_TIME_LIMIT",
                    "error_description": "Method is blocked due to operation time limit.",
                },
                operating,
                reset_at,
                started,
                time.time(),
                0.0,
            )
        t0 = time.perf_counter()
        result: MethodResult | None = None
        error: dict[str, Any] | None = None
        status = 200
        try:
            connector = str(params.get("auth_connector") or "") if ctx.app else ""
            with self.app.acting(connector):
                result = handler(params, ctx)
        except RestError as exc:
            status, error = exc.status, exc.body()
        except FilterError as exc:
            status, error = 400, {"error": "", "error_description": str(exc)}
        except Exception:  # a sandbox bug must look like a portal 500, not kill the server thread
            log.exception("sandbox %s: %s failed", self.kind, method)
            status, error = (
                500,
                {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"},
            )
        processing = time.perf_counter() - t0
        # [docs/bitrix.md "Limits"] operating time is accumulated per method.
        self.operating.record(method, processing + extra_seconds)
        _, operating, reset_at = self.operating.status(method)
        return _Outcome(status, result, error, operating, reset_at, started, time.time(), processing)

    def _time_block(self, outcome: _Outcome) -> dict[str, Any]:
        reset_at = outcome.operating_reset_at or (outcome.finished + self.operating.window)
        return {
            "start": outcome.started,
            "finish": outcome.finished,
            "duration": outcome.finished - outcome.started,
            "processing": outcome.processing,
            "date_start": self.clock.format(_from_ts(outcome.started, self.clock)),
            "date_finish": self.clock.format(_from_ts(outcome.finished, self.clock)),
            "operating_reset_at": int(reset_at),
            "operating": round(outcome.operating, 6),
        }

    def _envelope(self, outcome: _Outcome) -> dict[str, Any]:
        if outcome.error is not None or outcome.result is None:
            return outcome.error or {
                "error": "INTERNAL_SERVER_ERROR",
                "error_description": "Internal server error",
            }
        body: dict[str, Any] = {"result": outcome.result.result}
        if outcome.result.total is not None:
            body["total"] = outcome.result.total
        if outcome.result.next is not None:
            body["next"] = outcome.result.next
        body["time"] = self._time_block(outcome)
        return body

    # -- batch -----------------------------------------------------------------------------------------------

    def _batch(
        self, params: dict[str, Any], ctx: CallContext, extra_seconds: float
    ) -> tuple[int, dict[str, Any], list[tuple[str, dict[str, Any]]]]:
        """Run a batch; returns (HTTP status, body, the commands that succeeded as (method, params))."""
        started = time.time()
        applied: list[tuple[str, dict[str, Any]]] = []
        t0 = time.perf_counter()
        params = lower_keys(params)
        cmd = params.get("cmd") or {}
        halt = truthy(params.get("halt", 0))
        if isinstance(cmd, list):
            items = [(str(i), c) for i, c in enumerate(cmd)]
        elif isinstance(cmd, dict):
            items = [(str(k), c) for k, c in cmd.items()]
        else:
            return (
                400,
                {"error": "INVALID_ARG_VALUE", "error_description": "Parameter 'cmd' must be array."},
                [],
            )
        if len(items) > BATCH_MAX:
            # [docs/bitrix.md "Batch"] more than 50 commands
            error = {"error": "ERROR_BATCH_LENGTH_EXCEEDED", "error_description": "Max batch length exceeded"}
            return 400, error, []
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        totals: dict[str, Any] = {}
        nexts: dict[str, Any] = {}
        times: dict[str, Any] = {}
        for key, command in items:
            raw_method, _, query = str(command).partition("?")
            sub_method = raw_method.strip().lower().removesuffix(".json")
            try:
                sub_params = _substitute(parse_bracket_query(query, lists=True), results)
            except ValueError as exc:
                # Sandbox choice, stricter than PHP's parse_str: a malformed sub-command is the caller's bug.
                errors[key] = {"error": "INVALID_ARG_VALUE", "error_description": f"malformed command: {exc}"}
                if halt:
                    break
                continue
            if sub_method == "batch":
                errors[key] = {
                    "error": "ERROR_BATCH_METHOD_NOT_ALLOWED",
                    "error_description": "Method is not allowed for batch usage",
                }
            else:
                self.metrics.inc("rest_calls", sub_method)
                outcome = self._invoke(sub_method, sub_params, ctx)
                if outcome.error is None and outcome.result is not None:
                    applied.append((sub_method, sub_params))
                    results[key] = outcome.result.result
                    if outcome.result.total is not None:
                        totals[key] = outcome.result.total
                    if outcome.result.next is not None:
                        nexts[key] = outcome.result.next
                    times[key] = self._time_block(outcome)
                else:
                    errors[key] = outcome.error
            if halt and key in errors:
                break
        finished = time.time()
        # The outer batch call itself is not counted against the operating limit [docs/bitrix.md "Limits"].
        outcome = _Outcome(
            200, None, None, 0.0, None, started, finished, time.perf_counter() - t0 + extra_seconds
        )
        payload = {
            "result": php_array(results),
            "result_error": php_array(errors),
            "result_total": php_array(totals),
            "result_next": php_array(nexts),
            "result_time": php_array(times),
        }
        # [docs/bitrix.md "Batch"] HTTP 200 even when commands fail.
        return 200, {"result": payload, "time": self._time_block(outcome)}, applied


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return "" if value is None else str(value)


def write_key(params: dict[str, Any]) -> str:
    """What identifies one write: its id and fields, alike from a JSON body or a batch command string."""
    params = lower_keys(params)
    return json.dumps(_canonical({"id": params.get("id"), "fields": params.get("fields")}), sort_keys=True)


def _from_ts(ts: float, clock: PortalClock) -> datetime:
    return datetime.fromtimestamp(ts, clock.tz)


_UNRESOLVED = object()


def _lookup(results: dict[str, Any], key: str, path: str) -> Any:
    node: Any = results.get(key, _UNRESOLVED)
    for part in re.findall(r"\[([^\]]*)\]", path):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return _UNRESOLVED
    return node


def _substitute(value: Any, results: dict[str, Any]) -> Any:
    """Replace ``$result[key][FIELD]`` references with earlier commands' results [docs/bitrix.md "Batch"]."""
    if isinstance(value, dict):
        return {k: _substitute(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, results) for v in value]
    if isinstance(value, str) and "$result[" in value:
        return _RESULT_REF.sub(lambda m: _substituted(m, results), value)
    return value


def _substituted(match: re.Match[str], results: dict[str, Any]) -> str:
    """A reference's value; one that names nothing (a failed command, a row an empty list does not have) is
    left as its own text: "the server substitutes the unresolved text as an ordinary value, and the next
    command runs with a corrupted parameter" (b24restdocs sdk/b24gosdk/index.md "Batch Requests")."""
    value = _lookup(results, match.group(1), match.group(2))
    if value is _UNRESOLVED:
        return match.group(0)
    return "" if value is None else str(value)

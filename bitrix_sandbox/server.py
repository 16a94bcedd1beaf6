"""HTTP front of one emulated portal: the Bitrix REST endpoint and the sandbox control API.

REST: ``POST|GET /rest/<user_id>/<code>/<method>[.json]`` with a JSON body (what bxsync sends), a form body
with PHP bracket keys, and/or a query string (merged; the body wins). ``rest.Portal.handle_rest`` answers.

Control API (JSON in, JSON out; no auth — the servers bind to 127.0.0.1 only). On either portal's port:

==========================  ===============================================================================
``GET  /_sandbox/info``       portal kind, webhook URL, application token, handler URL, methods, config
``GET  /_sandbox/counters``   ``rest_requests``, ``rest_calls`` (per method), ``rest_rejected`` (per reason),
                              ``replies_lost``, ``writes`` (requested) and ``writes_applied`` (changed
                              something) per source and method, ``events``, ``timeline_comments`` (CRM);
                              see ``Portal.counters``
``POST /_sandbox/reset_counters``  zero counters and the event log
``GET  /_sandbox/faults``     current fault switches
``POST /_sandbox/faults``     set switches (``faults.FaultSettings``), ``{"clear": true, ...}`` turns
                              everything off first. REST: ``latency``, ``error_rate`` (500, not applied),
                              ``timeout_rate`` + ``timeout_seconds`` (applied, answer too late),
                              ``outage_seconds`` (503 for that long). Reply lost (the write is applied
                              and its events fire, then the reply is lost): ``reply_lost_next`` (the next
                              N write requests), ``reply_lost_once`` (each distinct write loses its reply
                              once: "every write's reply is lost once"), ``reply_lost_rate``, limited to
                              ``reply_lost_methods`` (default: every write method; a ``batch`` carrying
                              one counts), lost as ``reply_lost_as`` ``"timeout"`` (held
                              ``timeout_seconds``) or ``"error"`` (500 after the commit). Events:
                              ``drop_rate``, ``duplicate_rate``, ``reorder_window``, ``event_delay``.
                              E.g. ``{"reply_lost_once": true, "reply_lost_methods": ["crm.deal.update"],
                              "reply_lost_as": "error"}``
``GET  /_sandbox/app``        the local application (``app.Application.info``): client id and secret,
                              bindings, offline queue; ``POST`` ``{"redirect_uri", "features":
                              {"rest_offline_extended": false}, "installed": false}`` (false uninstalls);
                              ``POST /_sandbox/app/reset`` forgets tokens, bindings and queue;
                              ``POST /_sandbox/app/install_callback {"url"}`` posts ONAPPINSTALL there
``POST /_sandbox/limits``     ``{"rate", "burst", "operating_limit", "operating_limits": {method: s}}``
``POST /_sandbox/events``     ``{"handler_url", "application_token", "subscribed_events", "handler_timeout",
                              "subscriber": "webhook"|"application"}`` (a webhook never gets
                              ONCRMDEALMOVETOCATEGORY: application-only)
``POST /_sandbox/events/idle``  ``{"timeout": 10}`` → ``{"idle": bool, "pending": n}``
``POST /_sandbox/events/pause``   hold every outgoing event (a stalled Bitrix queue) ...
``POST /_sandbox/events/resume``  ... then deliver them, late, and carry on
``GET  /_sandbox/events/log`` recent events with outcome
``POST /_sandbox/options``    ``{"event_on_noop_update": bool}``, shop also ``{"status_on_paid": "P"|null}``
``GET|POST /_sandbox/account``  who the webhook is and how the portal is set up, the switches of
                              ``account.AccountSettings`` (scopes, admin, plan, deal field, deleted stages,
                              clock skew, the undocumented points ``bitrix doctor`` probes), e.g.
                              ``{"scopes": ["crm"], "admin": false, "clock_skew": 120}``
``GET  /_sandbox/state``      all deals and timeline comments (CRM) or orders with payments (shop)
``GET  /_sandbox/deal/<id>``  (CRM) one deal, ``/_sandbox/comments/<deal id>`` its timeline comments;
                              ``/_sandbox/order/<id>``, ``/_sandbox/payment/<id>`` (shop)
``POST /_sandbox/human/<action>``  a human action with keyword arguments as the JSON body, e.g.
                              CRM ``move_deal {"deal_id": 5, "stage_id": "WON", "user_id": 7}``,
                              ``move_deal_to_pipeline``, ``edit_deal``, ``set_deal_order``, ``create_deal``,
                              ``delete_deal``, ``bulk_move {"deal_ids": [...], "stage_id": "..."}``;
                              shop ``set_order_status {"order_id", "status_id", "user_id"}``, ``pay_order``,
                              ``cancel_order``, ``create_order``, ``delete_order``
==========================  ===============================================================================

Sandbox-wide (answered on both ports when the portal runs inside a ``Sandbox``):

==========================  ===============================================================================
``POST /_sandbox/seed``       ``{"n_orders": 50, "pipeline_share": 0.25, "orders_without_deal": 3,
                              "deals_without_order": 3}`` → ``{"pairs": [[order_id, deal_id], ...]}``
``POST /_sandbox/reset``      wipe entities, counters, faults and event queues on both portals
``GET  /_sandbox/traffic``    traffic stats; ``POST {"action": "start", "rate": 1.0}`` or ``"stop"``
``POST /_sandbox/idle``       ``{"timeout": 10}``: wait until both portals delivered their events
==========================  ===============================================================================

A whole portal can also go down and come back (Python API): ``portal.stop()`` refuses connections and
discards its queued events, ``portal.start()`` serves again on the same port.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from phpquery import parse_bracket_query

from .errors import RestError

if TYPE_CHECKING:
    from .rest import Portal

_REST_PATH = re.compile(r"^/rest/([^/]+)/([^/]+)/([^/?]+?)(?:\.json)?/?$")
# An application's call: /rest/<method> with auth=<access_token> (settings/oauth/index.md).
_APP_REST_PATH = re.compile(r"^/rest/([A-Za-z0-9_.]+?)(?:\.json)?/?$")
MAX_BODY = 10 * 1024 * 1024


class ControlError(Exception):
    """A bad control-API request (answered with 400/404 and the message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    portal: Portal
    control: Any


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, keep-alive clients stall ~40 ms per call.
    disable_nagle_algorithm = True
    server_version = "nginx"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging."""

    def do_GET(self) -> None:
        """Handle GET."""
        self._dispatch()

    def do_POST(self) -> None:
        """Handle POST."""
        self._dispatch()

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ControlError(413, "body too large")
        return self.rfile.read(length) if length > 0 else b""

    def _params(self, query: str, body: bytes) -> dict[str, Any]:
        try:
            # lists=True: PHP reads select[0]=ID as an array, like select[]=ID.
            params: dict[str, Any] = parse_bracket_query(query, lists=True) if query else {}
            if not body:
                return params
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            text = body.decode("utf-8", errors="replace")
            if ctype == "application/json" or (not ctype and text.lstrip().startswith("{")):
                try:
                    data = json.loads(text)
                except json.JSONDecodeError:
                    raise ControlError(400, "invalid JSON body") from None
                if isinstance(data, dict):
                    params.update(data)
            else:
                params.update(parse_bracket_query(text, lists=True))
        except RecursionError:
            raise ControlError(400, "JSON body nested too deeply") from None
        except ValueError as exc:
            # Stricter than PHP's parse_str (see phpquery): a malformed key is the client's bug, made visible.
            raise ControlError(400, f"malformed query: {exc}") from None
        return params

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        location = self.server.portal.redirect_for(self.server.server_address[1], self.path)
        if location is not None:
            self._read_body()
            self._send_redirect(location)
            return
        try:
            body = self._read_body()
            if parts.path.rstrip("/") in ("/oauth/authorize", "/oauth/token"):
                self._oauth(parts.path.rstrip("/"), parts.query, body)
                return
            if parts.path.startswith("/_sandbox/"):
                status, payload = self._control(parts.path[len("/_sandbox/") :].strip("/"), parts.query, body)
            else:
                status, payload = self._rest(parts.path, parts.query, body)
        except ControlError as exc:
            status, payload = exc.status, {"error": "INVALID_REQUEST", "error_description": str(exc)}
        self._send_json(status, payload)

    def _rest(self, path: str, query: str, body: bytes) -> tuple[int, Any]:
        match = _REST_PATH.match(path)
        app_match = None if match else _APP_REST_PATH.match(path)
        if app_match:
            bearer = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
            return self.server.portal.handle_app_rest(app_match.group(1), self._params(query, body), bearer)
        if not match:
            if path.startswith("/rest/"):
                # An OAuth-style call without a token.
                return 401, {"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"}
            return 404, {"error": "NOT_FOUND", "error_description": "Not found"}
        user_id, code, method = match.groups()
        portal = self.server.portal.rest_portal(code)
        return portal.handle_rest(user_id, code, method, self._params(query, body))

    def _oauth(self, path: str, query: str, body: bytes) -> None:
        params = self._params(query, body)
        portal = self.server.portal
        try:
            if path == "/oauth/token":
                self._send_json(200, portal.oauth_token(params))
                return
            target = portal.oauth_authorize(params)
        except RestError as exc:
            self._send_json(exc.status, exc.body())
            return
        # A signed-in administrator goes straight back to the application (settings/oauth/index.md).
        self.send_response(302)
        self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _control(self, action: str, query: str, body: bytes) -> tuple[int, Any]:
        args = self._params(query, body)
        try:
            return 200, control_action(self.server.portal, self.server.control, self.command, action, args)
        except ControlError as exc:
            return exc.status, {"error": str(exc)}
        except (KeyError, ValueError, TypeError) as exc:
            return 400, {"error": f"{type(exc).__name__}: {exc}"}

    def _send_redirect(self, location: str) -> None:
        # A renamed portal's old address: 302 to the new one (settings/how-to-call-rest-api/change-domen.md).
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (e.g. the timeout fault); nothing to tell it.
            self.close_connection = True


def _int_arg(args: dict[str, Any], name: str, default: float) -> float:
    value = args.get(name, default)
    return float(value) if value not in (None, "") else default


def control_action(portal: Portal, sandbox: Any, verb: str, action: str, args: dict[str, Any]) -> Any:
    """Run one control-API action against ``portal`` (and ``sandbox`` for sandbox-wide ones)."""
    head, _, rest = action.partition("/")
    if action == "info":
        return portal.info()
    if action == "counters":
        return portal.counters()
    if action == "reset_counters":
        portal.reset_counters()
        return {"ok": True}
    if action == "faults":
        if verb == "POST":
            if args.pop("clear", False):
                portal.clear_faults()
            return portal.set_faults(**args)
        return portal.faults.snapshot()
    if action == "app":
        return portal.app.configure(**args) if verb == "POST" else portal.app.info()
    if action == "app/install_callback":
        return {"status": portal.app_install_post(str(args["url"]))}
    if action == "app/reset":
        portal.app.reset()
        return portal.app.info()
    if action == "limits":
        portal.set_limits(**args)
        return {"ok": True}
    if action == "events":
        portal.configure_events(**args)
        return {"ok": True}
    if action == "events/idle":
        idle = portal.wait_events_idle(_int_arg(args, "timeout", 10.0))
        return {"idle": idle, "pending": portal.events.pending()}
    if action == "events/log":
        return portal.event_log()
    if action == "events/pause":
        portal.pause_events()
        return {"paused": True, "pending": portal.events.pending()}
    if action == "events/resume":
        portal.resume_events()
        return {"paused": False, "pending": portal.events.pending()}
    if action == "options":
        return portal.set_options(**args)
    if action == "account":
        return portal.set_account(**args) if verb == "POST" else portal.account.snapshot()
    if action == "state":
        return portal.state()
    if head in ("deal", "comments", "order", "payment") and rest:
        row = portal.entity(head, int(rest))
        if row is None:
            raise ControlError(404, f"{head} {rest} not found")
        return row
    if head == "human" and rest:
        actions = portal.human_actions()
        if rest not in actions:
            raise ControlError(404, f"unknown human action {rest!r}; have {sorted(actions)}")
        return {"result": actions[rest](**args)}
    if sandbox is not None:
        return sandbox.control(verb, action, args)
    raise ControlError(404, f"unknown control action {action!r}")


class PortalServer:
    """A ThreadingHTTPServer on 127.0.0.1 serving one portal."""

    def __init__(self, portal: Portal, control: Any = None, port: int | None = None) -> None:
        bind_port = portal.config.port if port is None else port
        self.httpd = _HTTPServer((portal.config.host, bind_port), _Handler)
        self.httpd.portal = portal
        self.httpd.control = control
        self.port: int = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-http-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

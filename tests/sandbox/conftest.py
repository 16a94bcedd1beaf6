"""Fixtures for the sandbox tests: a running Sandbox, a tiny event receiver, a REST caller, a poll helper.

The sandbox tests use no Django (pytest-django is loaded for the suite but never asked for a database);
``test_boundaries.py`` checks that the package imports none.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests

from bitrix_sandbox import CrmConfig, Sandbox, SandboxConfig, ShopConfig
from bitrix_sandbox.rest import Portal
from tests.support.waiting import wait_for

Waiter = Callable[..., Any]


def poll(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
    """Return the first truthy value of ``predicate()``; fail the test after ``timeout`` seconds."""
    return wait_for(predicate, timeout=timeout, interval=interval)


@dataclass
class Received:
    """One captured event POST."""

    path: str
    content_type: str
    raw: str
    fields: dict[str, str]

    @property
    def event(self) -> str:
        """The ``event`` name."""
        return self.fields.get("event", "")

    @property
    def entity_id(self) -> int:
        """``data[FIELDS][ID]`` as int."""
        return int(self.fields["data[FIELDS][ID]"])


class EventReceiver:
    """A local HTTP server recording every POST; answers ``status`` (settable)."""

    def __init__(self) -> None:
        self.status = 200
        # How the receiver ends a connection after each answer: "" keeps it alive, "announced" says
        # `Connection: close`, "silently" just closes it (as a server's keep-alive timeout does).
        self.close = ""
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._connections = 0
        self._closed = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver._connections += 1

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode("ascii")
                flat = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
                with receiver._lock:
                    receiver.received.append(
                        Received(self.path, self.headers.get("Content-Type", ""), raw, flat)
                    )
                    status = receiver.status
                body = b'{"ok":true}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if receiver.close == "announced":
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = self.close_connection or bool(receiver.close)

        class Server(ThreadingHTTPServer):
            def shutdown_request(self, request: Any) -> None:
                super().shutdown_request(request)  # the socket is closed here, after the handler's finish()
                with receiver._lock:
                    receiver._connections -= 1
                    receiver._closed.notify_all()

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def wait_closed(self, timeout: float = 5.0) -> None:
        """Wait until the receiver has closed every connection it was sent events over."""
        with self._closed:
            assert self._closed.wait_for(lambda: self._connections == 0, timeout=timeout)

    def events(self, name: str | None = None, path: str | None = None) -> list[Received]:
        """Captured events, optionally only one event name and/or handler path."""
        with self._lock:
            return [
                r
                for r in self.received
                if (name is None or r.event == name) and (path is None or r.path == path)
            ]

    def clear(self) -> None:
        """Forget everything captured so far."""
        with self._lock:
            self.received.clear()

    def stop(self) -> None:
        """Shut the server down."""
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver() -> Iterator[EventReceiver]:
    """A running event receiver."""
    rec = EventReceiver()
    yield rec
    rec.stop()


def make_config(seed: int = 1, rate: float = 0.0, **shop_options: Any) -> SandboxConfig:
    """A SandboxConfig; ``rate=0`` switches the leaky bucket off so tests are not throttled."""
    return SandboxConfig(
        shop=ShopConfig(rate=rate, **shop_options),
        crm=CrmConfig(rate=rate),
        seed=seed,
    )


@pytest.fixture
def sandbox(receiver: EventReceiver) -> Iterator[Sandbox]:
    """A started Sandbox (no rate limit) whose events go to ``receiver`` at /shop and /crm."""
    sb = Sandbox(make_config()).start()
    sb.configure_events(shop_handler=f"{receiver.url}/shop", crm_handler=f"{receiver.url}/crm")
    yield sb
    sb.stop()


class RestCaller:
    """Calls a portal's inbound webhook the way bxsync does (JSON POST to ``<base><method>.json``)."""

    def __init__(self) -> None:
        self.session = requests.Session()

    def __call__(
        self, portal: Portal, method: str, params: dict[str, Any] | None = None, timeout: float = 5.0
    ) -> requests.Response:
        return self.session.post(f"{portal.webhook_url}{method}.json", json=params or {}, timeout=timeout)

    def ok(self, portal: Portal, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call and insist on HTTP 200; returns the JSON body."""
        response = self(portal, method, params)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def rest() -> Iterator[RestCaller]:
    """A REST caller with its own keep-alive session."""
    caller = RestCaller()
    yield caller
    caller.session.close()


@pytest.fixture
def wait_until() -> Waiter:
    """``wait_until(predicate, timeout=5)``: poll until truthy, fail on timeout."""
    return poll

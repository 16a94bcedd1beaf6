"""The WSGI entry point the web server serves: webhooks through a lean middleware path, the rest through the
whole stack (bxsync_project/wsgi.py)."""

from __future__ import annotations

import io
import json
import sys
from urllib.parse import urlencode

import psycopg
import pytest
from django.db import connection
from django.test import override_settings

from statussync.models import InboundEvent
from tests.support.legs import leg
from tests.support.webhooks import CRM_TOKEN

# The web server refuses a published SECRET_KEY (bxsync_project/secret_key.py); the tests' fallback is one.
with override_settings(SECRET_KEY="wsgi-paths-test-" + "k" * 40):
    from bxsync_project import wsgi

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("portals")]


def call(method: str, path: str, body: bytes = b"", **headers: str) -> tuple[str, dict[str, str], bytes]:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        **headers,
    }
    answer: dict = {}

    def start_response(status, response_headers, exc_info=None):
        answer["status"], answer["headers"] = status, dict(response_headers)

    content = b"".join(wsgi.application(environ, start_response))
    return answer["status"], answer["headers"], content


def test_it_stores_a_webhook_through_the_lean_path_with_the_same_answers():
    body = urlencode(
        {"event": "ONCRMDEALUPDATE", "data[FIELDS][ID]": "7", "ts": "1", "auth[application_token]": CRM_TOKEN}
    ).encode()

    status, headers, _ = call("POST", "/api/bitrix/crm/", body, HTTP_ACCEPT_LANGUAGE="ru")
    forged, _, _ = call("POST", "/api/bitrix/crm/", body.replace(CRM_TOKEN.encode(), b"x" * 32))
    bad_host, _, _ = call("POST", "/api/bitrix/crm/", body, HTTP_HOST="evil.example")

    assert (status, forged, bad_host) == ("200 OK", "403 Forbidden", "400 Bad Request")
    assert InboundEvent.objects.count() == 1
    assert headers["X-Frame-Options"] == "DENY"
    assert "Content-Language" not in headers  # no locale, session or login middleware on the way


def test_it_serves_everything_else_through_the_whole_stack():
    status, headers, _ = call("GET", "/api/health/live/", HTTP_ACCEPT_LANGUAGE="ru")

    assert status == "200 OK"
    assert headers["Content-Language"] == "ru"


def test_it_builds_the_lean_path_without_changing_any_setting(monkeypatch):
    from django.conf import LazySettings, settings

    changed: list[str] = []
    original = LazySettings.__setattr__

    def watched(self, name, value):
        changed.append(name)
        original(self, name, value)

    middleware = list(settings.MIDDLEWARE)
    monkeypatch.setattr(LazySettings, "__setattr__", watched)

    handler = wsgi.WebhookHandler()

    assert [name for name in changed if name.isupper()] == []
    assert list(settings.MIDDLEWARE) == middleware
    # The chain is the lean list, outermost first, in settings.MIDDLEWARE's order.
    chain, names = handler._middleware_chain, []
    while hasattr(chain, "__wrapped__") or hasattr(chain, "get_response"):
        chain = getattr(chain, "__wrapped__", chain)
        if hasattr(chain, "get_response"):
            names.append(f"{type(chain).__module__}.{type(chain).__name__}")
            chain = chain.get_response
    assert names == wsgi.webhook_middleware()
    assert len(names) == 3


def kept_connection_dropped(monkeypatch) -> None:
    """As in the web server, the connection is kept between requests (settings.py), with no SELECT 1 before
    each; then the database drops it, as a restart or a failover does."""
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 300)
    connection.close()
    connection.ensure_connection()
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid])


@pytest.mark.skipif(leg() != "scaled", reason="a PostgreSQL server drops connections; SQLite has none")
def test_it_stores_a_webhook_on_a_new_connection_when_the_database_dropped_the_kept_one(monkeypatch):
    kept_connection_dropped(monkeypatch)
    body = urlencode(
        {"event": "ONCRMDEALUPDATE", "data[FIELDS][ID]": "8", "ts": "1", "auth[application_token]": CRM_TOKEN}
    ).encode()

    try:
        status, _, content = call("POST", "/api/bitrix/crm/", body)
    finally:
        connection.close()

    assert (status, content) == ("200 OK", b'{"status":"stored","event":"ONCRMDEALUPDATE","id":"8"}')
    assert InboundEvent.objects.filter(entity_id="8").count() == 1


@pytest.mark.skipif(leg() != "scaled", reason="a PostgreSQL server drops connections; SQLite has none")
def test_it_serves_other_pages_on_a_new_connection_when_the_database_dropped_the_kept_one(monkeypatch):
    kept_connection_dropped(monkeypatch)

    try:
        _, _, content = call("GET", "/api/health/")
    finally:
        connection.close()

    assert json.loads(content)["database"]["ok"] is True

"""Fuzzing the edge: any body, any shape the schema allows → a JSON 2xx/4xx, never a 5xx, and nothing stored
from a request that was refused."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote_plus

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ParseError
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from statussync.api.parsers import BitrixFormParser, RequestTooLarge
from statussync.models import InboundEvent, Job
from tests.support.webhooks import CMS_TOKEN, CRM_TOKEN

FORM = "application/x-www-form-urlencoded"
TOKENS = {"cms": CMS_TOKEN, "crm": CRM_TOKEN}
CONTRACT = {200, 400, 403, 405, 413}  # 405: schemathesis tries undocumented methods too

# The same Hypothesis budget on every machine: a few seconds per test.
fuzz = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Schemathesis adds its own example and coverage cases (other methods, missing fields) to these.
fuzz_schema = settings(fuzz, max_examples=100)


@contextmanager
def nothing_stored_unless_accepted(response_status: list[int]):
    before = (InboundEvent.objects.count(), Job.objects.count())
    yield
    if response_status and response_status[0] != 200:
        assert (InboundEvent.objects.count(), Job.objects.count()) == before


# --- the form parser alone: text in, a dict or a 400 out ---------------------------------------------------

key_part = st.text(alphabet=st.characters(codec="utf-8"), max_size=8)
bracket_key = st.builds(
    lambda base, segments: base + "".join(f"[{s}]" for s in segments),
    key_part,
    st.lists(st.one_of(key_part, st.just(""), st.sampled_from(["FIELDS", "ID", "auth"])), max_size=5),
)
form_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.tuples(bracket_key, key_part), max_size=20).map(
        lambda pairs: "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in pairs)
    ),
    st.lists(st.tuples(bracket_key, key_part), max_size=20).map(
        lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)  # unescaped brackets, '=' and '&' inside
    ),
)


class FakeStream:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def read(self, size: int = -1) -> bytes:
        return self.body if size < 0 else self.body[:size]


@fuzz
@given(text=form_text)
def test_the_form_parser_returns_a_dict_or_a_400(text):
    try:
        parsed = BitrixFormParser().parse(FakeStream(text.encode("utf-8", "surrogatepass")), FORM, {})
    except (ParseError, RequestTooLarge):
        return
    assert isinstance(parsed, dict)


# --- the endpoints in-process: any bytes, any content type ------------------------------------------------


def with_token(side: str, body: bytes) -> bytes:
    return body + b"&auth%5Bapplication_token%5D=" + TOKENS[side].encode()


@pytest.mark.django_db
@pytest.mark.usefixtures("portals")
@fuzz
@given(
    side=st.sampled_from(["cms", "crm"]),
    body=st.one_of(st.binary(max_size=500), form_text.map(str.encode)),
    token=st.booleans(),
    content_type=st.sampled_from([FORM, f"{FORM}; charset=UTF-8", "application/json", "text/plain", ""]),
)
def test_any_body_gets_a_json_answer_of_the_contract(client, side, body, token, content_type):
    if token:
        body = with_token(side, body)
    status: list[int] = []
    with nothing_stored_unless_accepted(status):
        # generic(): the raw bytes as they are (post() re-encodes for a charset parameter).
        response = client.generic("POST", f"/api/bitrix/{side}/", data=body, content_type=content_type)
        status.append(response.status_code)

    assert response.status_code in CONTRACT
    assert response["Content-Type"] == "application/json"
    assert isinstance(response.json(), dict)


# --- schemathesis against /api/schema/, from WSGI -----------------------------------------------------------


@pytest.fixture
def connection_kept() -> Iterator[None]:
    """Django's test client keeps the test's database connection across a request; schemathesis calls the
    WSGI app itself, whose request_started/request_finished signals close it (on PostgreSQL, and the test's
    transaction with it: "the connection is closed"). Disconnected here as the test client does
    (django/test/client.py, ClientHandler.__call__)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _side(case) -> str | None:
    for side in TOKENS:
        if case.path == f"/api/bitrix/{side}/":
            return side
    return None


def _give_the_right_token(case) -> None:
    """So that generated events also get past authentication, to the serializer and the database."""
    side = _side(case)
    if side is None or not isinstance(case.body, dict):
        return
    if "auth[application_token]" in case.body or case.media_type.startswith(FORM):
        case.body["auth[application_token]"] = TOKENS[side]
    elif isinstance(case.body.get("auth"), dict):
        case.body["auth"]["application_token"] = TOKENS[side]


@pytest.mark.django_db
@pytest.mark.usefixtures("portals", "connection_kept")
@schema.parametrize()
@fuzz_schema
def test_the_api_keeps_its_schema_and_stores_nothing_it_refuses(case):
    status: list[int] = []
    with nothing_stored_unless_accepted(status):
        response = case.call_and_validate(checks=CHECKS)
        status.append(response.status_code)
    assert response.status_code < 500 or case.path.startswith("/api/health/")


@pytest.mark.django_db
@pytest.mark.usefixtures("portals", "connection_kept")
@schema.include(path_regex="^/api/bitrix/").parametrize()
@fuzz_schema
def test_the_api_stores_what_it_accepts_and_nothing_else_with_the_right_token(case):
    _give_the_right_token(case)
    status: list[int] = []
    with nothing_stored_unless_accepted(status):
        response = case.call_and_validate(checks=CHECKS)
        status.append(response.status_code)
    assert response.status_code in CONTRACT

"""Parsers for Bitrix's outgoing-webhook bodies: form-encoded with PHP bracket keys, or the same as JSON.

Bitrix posts `application/x-www-form-urlencoded` with keys such as `data[FIELDS][ID]` and
`auth[application_token]` (https://apidocs.bitrix24.ru/api-reference/events/index.html). Django's and
DRF's form parsing would keep those keys flat; the shared codec (`statussync.bitrix.parse_bracket_query`)
un-flattens them and refuses what PHP would silently guess.

Every failure here is a `ParseError` (400) or `RequestTooLarge` (413), raised before the token is looked at:
nothing a client sends can turn into a 500.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import IO, Any

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser

from statussync.bitrix import parse_bracket_query

# Bitrix sends about ten fields; anything near this is not Bitrix, and un-flattening it costs memory.
MAX_FIELDS = 200
# As deep as the bracket codec allows. Bitrix's own bodies nest three levels (`data[FIELDS][ID]`); a deeper
# JSON body would only make the later steps (validation, storing as JSON) recurse.
MAX_DEPTH = 32
_SURROGATE = re.compile("[\ud800-\udfff]")
# An oversized body is read and thrown away, up to these bounds, before the 413 goes out, as nginx's
# lingering close does (https://nginx.org/en/docs/http/ngx_http_core_module.html#lingering_close): a server
# that closes while the sender is still writing resets the connection, and the sender reads the reset, not
# the 413 the contract promises. Past the bounds (a sender of gigabytes, or a slow one) the reset it is.
# Bitrix's own bodies are a few hundred bytes: this serves a misconfigured forwarder, or a test of the cap.
DISCARD_BYTES = 16 * 1024 * 1024
DISCARD_SECONDS = 5.0
_DISCARD_CHUNK = 64 * 1024


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "body too large"
    default_code = "too_large"


class _BitrixEventParser(BaseParser):
    """Reads at most `BXSYNC_MAX_EVENT_BYTES` of the body, then decodes it.

    Deliberately not a subclass of DRF's FormParser/JSONParser: for those, DRF reads the whole body through
    `HttpRequest.body` before the parser runs (rest_framework/request.py, `Request._parse`), and the size
    cap must come first.
    """

    def parse(self, stream: IO[bytes], media_type: str | None = None, parser_context: Any = None) -> Any:
        body = _read_capped(stream, parser_context)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError("malformed body: not UTF-8") from exc
        if not text.strip():
            raise ParseError("empty body")
        try:
            payload = self.decode(text)
        except ParseError:
            raise
        except (ValueError, RecursionError) as exc:
            # RecursionError: a deeply nested JSON body (json.loads recurses in C).
            raise ParseError(f"malformed body: {_reason(exc)}") from exc
        if not isinstance(payload, dict):
            raise ParseError("malformed body: an event must be an object")
        _shape_check(payload)
        return payload

    def decode(self, text: str) -> Any:
        raise NotImplementedError


class BitrixFormParser(_BitrixEventParser):
    """`application/x-www-form-urlencoded` with PHP bracket keys, as Bitrix sends every event."""

    media_type = "application/x-www-form-urlencoded"

    def decode(self, text: str) -> Any:
        if text.count("&") + 1 > MAX_FIELDS:
            raise ParseError(f"malformed body: more than {MAX_FIELDS} fields")
        return parse_bracket_query(text)


class BitrixJSONParser(_BitrixEventParser):
    """The same event as a JSON object (for forwarders that re-post events, and for tests)."""

    media_type = "application/json"

    def decode(self, text: str) -> Any:
        # NaN and Infinity are not JSON (RFC 8259), and PostgreSQL's jsonb refuses to store them.
        return json.loads(text, parse_constant=_not_json, parse_float=_finite_float)


def _read_capped(stream: IO[bytes] | None, parser_context: Any) -> bytes:
    cap = settings.BXSYNC_MAX_EVENT_BYTES
    request = (parser_context or {}).get("request")
    declared = request.META.get("CONTENT_LENGTH", "") if request is not None else ""
    # Refuse on the declared length without decoding a byte of an oversized body; one too big to read to
    # its end anyway (past DISCARD_BYTES) is not read at all.
    if isinstance(declared, str) and declared.isdigit() and int(declared) > cap:
        if int(declared) <= DISCARD_BYTES:
            _discard(stream)
        raise RequestTooLarge()
    if stream is None:
        return b""
    body = stream.read(cap + 1)
    if len(body) > cap:  # a length header that lied, or none at all
        _discard(stream)
        raise RequestTooLarge()
    return body


def _discard(stream: IO[bytes] | None) -> None:
    """Read what the sender is still writing and drop it, up to DISCARD_BYTES and DISCARD_SECONDS (the
    stream ends at the declared length: Django's LimitedStream)."""
    if stream is None:
        return
    deadline = time.monotonic() + DISCARD_SECONDS
    left = DISCARD_BYTES
    try:
        while left > 0 and time.monotonic() < deadline:
            chunk = stream.read(min(_DISCARD_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
    except OSError:  # the sender gave up: nobody to answer
        return


def _shape_check(payload: dict[str, Any]) -> None:
    """Refuse what no later step should meet: nesting deeper than `MAX_DEPTH`, and text PostgreSQL cannot
    store (NUL characters, lone surrogates from JSON escapes such as "\\ud800"). Without recursion: the
    value may be as deep as json.loads allows."""
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, str):
            if "\x00" in node or _SURROGATE.search(node):
                raise ParseError("malformed body: NUL or unpaired surrogate characters")
            continue
        if isinstance(node, dict):
            children: list[Any] = [*node.keys(), *node.values()]
        elif isinstance(node, list):
            children = node
        else:
            continue
        if level > MAX_DEPTH:
            raise ParseError(f"malformed body: nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, level + 1) for child in children)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range")
    return value


def _reason(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)[:200]

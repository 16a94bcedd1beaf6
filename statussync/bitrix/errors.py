"""Exceptions raised by the Bitrix client, how Bitrix error envelopes map onto them, and URL redaction.

The class says what the caller should do: ``TransientError`` -> retry later, ``PermanentError`` -> give up
(``NotFoundError``: the object is gone), ``AuthError`` -> an operator must fix the webhook or its rights.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlsplit


class BitrixError(Exception):
    """Base class. ``str()`` names portal, method, HTTP status and code/description, never the webhook URL.

    Attributes: ``portal`` ('cms'|'crm'), ``method``, ``http_status`` (None when no response was received,
    e.g. a timeout, or for a command inside a batch), ``code`` (the Bitrix error code as str, '' when empty),
    ``description``, ``retry_after`` (seconds, when known).
    """

    def __init__(
        self,
        *,
        portal: str,
        method: str,
        http_status: int | None = None,
        code: str = "",
        description: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.portal = portal
        self.method = method
        self.http_status = http_status
        self.code = code
        self.description = description
        self.retry_after = retry_after
        super().__init__(str(self))

    def __str__(self) -> str:
        status = f"HTTP {self.http_status}" if self.http_status is not None else "no HTTP status"
        return f"[{self.portal}] {self.method}: {status}, error {self.code or '-'}: {self.description or '-'}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only __init__ would break the default pickling (django-q2 pickles task results).
        return _rebuild, (type(self), self.__dict__.copy())


def _rebuild(cls: type[BitrixError], state: dict[str, Any]) -> BitrixError:
    return cls(**state)


class TransientError(BitrixError):
    """Retry later: rate/overload limits, 5xx, timeouts, connection errors, garbage from a proxy."""


class OperatingLimitError(TransientError):
    """``429 OPERATION_TIME_LIMIT``: one method used up its server time for this webhook; the other methods
    go on, and so does ``batch``, whose commands each count against their own method
    (settings/performance/limits.md) [docs/bitrix.md "Limits"]. ``retry_after``: seconds until it may go."""


class RateLimitedError(TransientError):
    """Our own limiter would have had to wait longer than ``max_wait``; ``retry_after`` holds that wait."""


# A portal that answers with these is up but asks us to slow down [docs/bitrix.md "Limits"]: backoff, not the
# outage probe, is the answer to them.
_SLOW_DOWN_CODES = frozenset({"QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT", "OVERLOAD_LIMIT"})


def portal_unreachable(error: BaseException) -> bool:
    """Whether `error` says a portal is down (a 5xx, no answer at all), rather than busy (its limits), our own
    limiter refusing to wait, or a request of ours being wrong."""
    return (
        isinstance(error, TransientError)
        and not isinstance(error, RateLimitedError)
        and error.portal in ("cms", "crm")
        and error.code.upper() not in _SLOW_DOWN_CODES
    )


class PermanentError(BitrixError):
    """Do not retry: the request itself is wrong (bad id, unknown method, batch misuse...)."""


class PortalMovedError(TransientError):
    """The portal answered a write with a redirect to an address no read has confirmed yet: the write was
    not re-sent. The next attempt, after its run's reads, goes [docs/bitrix.md "Calling the REST API"]."""


class NotFoundError(PermanentError):
    """The deal, order or payment does not exist (any more)."""


class AuthError(BitrixError):
    """The webhook code is wrong/expired or its user lacks a scope or rights. Retrying will not help."""


class PortalClosedError(AuthError):
    """``500 PORTAL_DELETED``: the portal is deleted, or (boxed) its public part is closed. Like a refused
    credential it is the whole portal's state, which an operator changes (reopens the site), not one
    request's: bxsync holds the portal's work instead of retrying in a storm or dead-lettering it
    [docs/bitrix.md "Errors"].
    """


# [docs/bitrix.md "Errors"]
_TRANSIENT_CODES = {
    "QUERY_LIMIT_EXCEEDED",  # 503, leaky bucket
    "OVERLOAD_LIMIT",  # 503, manual block by Bitrix support
    "INTERNAL_SERVER_ERROR",
    "ERROR_UNEXPECTED_ANSWER",
}
# _includes/system-errors.md: "Portal was deleted" / "the public part of the site is closed" (boxed: the
# "temporary closure of the public part" option) [docs/bitrix.md "Errors"].
_PORTAL_CLOSED_CODES = {"PORTAL_DELETED"}
_AUTH_CODES = {
    "NO_AUTH_FOUND",
    "EXPIRED_TOKEN",
    "INVALID_CREDENTIALS",  # 403 in the docs, 401 in the Python SDK [docs/bitrix.md "Errors"]
    "INSUFFICIENT_SCOPE",
    "ACCESS_DENIED",  # 403 system error; 400 from crm.item.* [docs/bitrix.md "Errors"]
    "USER_ACCESS_ERROR",
    "ALLOWED_ONLY_INTRANET_USER",
    # sale.*: numeric codes [docs/bitrix.md "Errors"]
    "200040300010",  # no rights to read orders/payments
    "200040300020",  # no rights to update the order
}
_NOT_FOUND_CODES = {
    "NOT_FOUND",  # crm.item.* [docs/bitrix.md "Errors"]
}
# sale.* codes carry an HTTP-like status in digits 5-7: 2xxx403xxxxx is "no rights". Their 404s are mixed
# ("Module catalog does not exist", "Error saving order"), but every 2xxx40400001 in the sale pages' tables is
# "<entity> not found"; sale.order.get alone documents two, 200540400001 (its example) and 201240400001 (its
# table) (api-reference/sale/order/sale-order-get.md), so that family decides, not a list [docs/bitrix.md
# "Errors"].
_SALE_FORBIDDEN = re.compile(r"2\d{3}403\d{5}")
_SALE_NOT_FOUND = re.compile(r"2\d{3}40400001")


def classify_error(
    *,
    portal: str,
    method: str,
    http_status: int | None,
    code: Any,
    description: Any,
    retry_after: float | None = None,
) -> BitrixError:
    """Build the right exception for a Bitrix error envelope (or a ``result_error`` entry of a batch).

    ``code`` may be a string, a number (sale.* uses numeric codes) or empty/None (legacy crm.deal.* answers
    HTTP 400 with ``"error": ""`` and only a text) [docs/bitrix.md "Errors"].
    """
    code_str = "" if code is None else str(code)
    text = "" if description is None else str(description)
    key = code_str.upper()
    lowered = text.strip().rstrip(".").lower()
    kwargs: dict[str, Any] = {
        "portal": portal,
        "method": method,
        "http_status": http_status,
        "code": code_str,
        "description": text,
    }
    # Legacy crm.deal.* answer 400 with an empty code and only a text: "Not found", "Access denied",
    # "ID is not defined or invalid" [docs/bitrix.md "Errors"]
    legacy_text = "" if code_str else lowered
    cls: type[BitrixError]
    if key == "OPERATION_TIME_LIMIT":
        cls = OperatingLimitError
    elif key in _TRANSIENT_CODES:
        cls = TransientError
    elif key in _PORTAL_CLOSED_CODES:
        cls = PortalClosedError
    elif key in _AUTH_CODES or _SALE_FORBIDDEN.fullmatch(code_str) or legacy_text == "access denied":
        cls = AuthError
    elif key in _NOT_FOUND_CODES or _SALE_NOT_FOUND.fullmatch(code_str) or legacy_text == "not found":
        cls = NotFoundError
    elif http_status in (401, 403):
        cls = AuthError
    elif http_status is not None and (http_status == 429 or http_status >= 500):
        cls = TransientError
    else:
        cls = PermanentError
    if issubclass(cls, TransientError):
        kwargs["retry_after"] = retry_after
    return cls(**kwargs)


_REDACTED = "***"


def _secret_segments(secret_url: str) -> tuple[str, str] | None:
    """(user, code) from ``https://host/rest/<user>/<code>/...``; None if the URL has another shape."""
    parts = urlsplit(secret_url).path.split("/")
    if "rest" not in parts:
        return None
    i = len(parts) - 1 - parts[::-1].index("rest")
    if i + 2 >= len(parts) or not parts[i + 1] or not parts[i + 2]:
        return None
    return parts[i + 1], parts[i + 2]


def redact(text: str, secret_url: str) -> str:
    """Remove the webhook credential from ``text``.

    The inbound webhook URL ``https://host/rest/<user>/<code>/`` *is* the credential
    [docs/bitrix.md "Errors"]. The base URL becomes ``https://host/rest/***/`` and any
    other occurrence of the code becomes ``***`` (requests puts only the path in its messages:
    "Max retries exceeded with url: /rest/1/<code>/...").
    """
    if not text or not secret_url:
        return text
    segments = _secret_segments(secret_url)
    if segments is None:
        # Unknown shape: hide the whole path rather than guess which part of it is secret.
        parts = urlsplit(secret_url)
        path = parts.path.rstrip("/")
        if path:
            origin = f"{parts.scheme}://{parts.netloc}"
            text = text.replace(origin + path, f"{origin}/{_REDACTED}").replace(path, f"/{_REDACTED}")
        return text
    user, code = segments
    base = secret_url[: secret_url.index(f"/rest/{user}/{code}")]
    text = text.replace(f"{base}/rest/{user}/{code}", f"{base}/rest/{_REDACTED}")
    for variant in {code, quote(code, safe="")}:
        text = text.replace(variant, _REDACTED)
    return text

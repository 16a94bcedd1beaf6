"""One HTTP request to a portal's inbound webhook: paced, sent, a rename's redirect followed, unwrapped.

``WebhookTransport`` is the part of the Bitrix client that touches the network; ``BitrixClient`` builds the
REST semantics (single calls, ``batch``, list paging) on top of it. It never retries: every failure is
classified (see ``errors``) and the job runner decides when to try again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import requests
from django.db import DatabaseError
from redis.exceptions import RedisError

from statussync import metrics

from .errors import (
    AuthError,
    BitrixError,
    PermanentError,
    PortalMovedError,
    RateLimitedError,
    TransientError,
    classify_error,
    redact,
)
from .moves import move_confirmed, move_record, move_trusted, origin
from .operating import LEDGER, envelope_metered
from .ratelimit import RateLimiter

log = logging.getLogger("statussync.bitrix")

# A renamed portal answers 302, and following it blindly turns the POST into a GET without the body, so we
# follow it ourselves [docs/bitrix.md "Calling the REST API"].
_REDIRECTS = frozenset({301, 302, 307, 308})
_HEADERS = {"Accept": "application/json", "User-Agent": "bxsync/0.1"}


class TokenSource(Protocol):
    """The credentials of a portal connected as an application (``statussync.applications.StoredTokens``)."""

    def sign(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with ``auth=<access token>`` (settings/oauth/index.md) and the ``auth_connector``."""

    def renew(self, *, stale: dict[str, Any]) -> None:
        """Renew the tokens that signed ``stale`` (once, shared with every other process)."""

    def refused(self, error: AuthError) -> None:
        """The portal refused the token for good (removed application, revoked token)."""


class WebhookTransport:
    """HTTP to one portal's inbound webhook (``https://host/rest/<user>/<code>/``), or, given ``auth``, to
    an application's REST address (``https://host/rest/``) with an OAuth token in the body.

    ``calls`` counts HTTP requests (a followed redirect is two). The base URL holds the webhook's secret code,
    so every message built here is redacted.
    """

    def __init__(
        self,
        *,
        portal: str,
        base_url: str,
        timeout: float = 20.0,
        limiter: RateLimiter | None = None,
        session: requests.Session | None = None,
        auth: TokenSource | None = None,
    ) -> None:
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"the {portal} REST URL must start with https://")  # the URL itself is a secret
        self.portal = portal
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.timeout = timeout
        self.limiter = limiter
        self.session = session if session is not None else requests.Session()
        self.auth = auth
        self.calls = 0

    def envelope(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """POST ``method`` with JSON ``params``; return the envelope ``{"result", "total", "next", "time"}``.

        Raises a ``BitrixError`` subclass on any failure (see ``errors``). A method held by its operating-time
        limit fails at once, sending nothing (see ``operating``).
        """
        return envelope_metered(
            LEDGER, webhook=self.portal, method=method, send=lambda: self._signed_envelope(method, params)
        )

    def _signed_envelope(self, method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
        if self.auth is None:
            return self._envelope(method, dict(params or {}))
        signed = self.auth.sign(dict(params or {}))
        try:
            return self._envelope(method, signed)
        except AuthError as error:
            # settings/oauth/auto-renewal.md: on 401 expired_token renew the pair and repeat the call, once.
            if error.code.lower() != "expired_token":
                self.auth.refused(error)
                raise
        self.auth.renew(stale=signed)
        return self._envelope(method, self.auth.sign(dict(params or {})))

    def _envelope(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}{method}.json"
        response = self._post(method, url, body)
        if response.status_code not in _REDIRECTS:
            return envelope_unwrap(response, portal=self.portal, method=method, base_url=self.base_url)
        target = redirect_target(self.portal, method, url, response)
        new_base = target.removesuffix(f"{method}.json")
        writes = method_writes(method, body)
        if writes and (new_base == target or not move_trusted(self.portal, self.base_url, new_base)):
            # Never re-send a write where no read has confirmed the portal answers: a run reads first,
            # so the next attempt finds the address confirmed [docs/bitrix.md "Calling the REST API"].
            move_record(portal=self.portal, new_base=new_base, confirmed=False)
            raise PortalMovedError(
                portal=self.portal,
                method=method,
                http_status=response.status_code,
                description=f"the portal moved to {origin(target)}; a write waits until a read confirms it",
            )
        response = self._post(method, target, body)
        if response.status_code in _REDIRECTS:
            raise PermanentError(
                portal=self.portal,
                method=method,
                http_status=response.status_code,
                description="redirected twice; check the portal address",
            )
        envelope = envelope_unwrap(response, portal=self.portal, method=method, base_url=new_base)
        if new_base != target and not move_confirmed(portal=self.portal, new_base=new_base):
            move_record(portal=self.portal, new_base=new_base, confirmed=True)
        return envelope

    def _post(self, method: str, url: str, body: dict[str, Any]) -> requests.Response:
        if self.limiter is not None:
            self._acquire(method)
        self.calls += 1
        started = time.monotonic()
        failure: BitrixError | None = None
        try:
            response = self.session.post(
                url, json=body, headers=_HEADERS, timeout=self.timeout, allow_redirects=False
            )
        except requests.Timeout as exc:  # before ConnectionError: ConnectTimeout is both
            failure = self._transport_error(
                TransientError, method, url, f"timed out after {self.timeout:g}s", exc
            )
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            failure = self._transport_error(TransientError, method, url, "connection failed", exc)
        except requests.RequestException as exc:
            failure = self._transport_error(PermanentError, method, url, "request failed", exc)
        # Raised outside the except blocks on purpose: requests exceptions carry the webhook URL, and a
        # chained __context__ would print it in every traceback.
        if failure is not None:
            metrics.REST_REQUESTS.labels(portal=self.portal, method=method, result="no answer").inc()
            log.info("%s", failure)
            raise failure
        metrics.REST_REQUESTS.labels(
            portal=self.portal, method=method, result=str(response.status_code)
        ).inc()
        log.debug(
            "[%s] %s -> HTTP %s in %.2fs",
            self.portal,
            method,
            response.status_code,
            time.monotonic() - started,
        )
        return response

    def _acquire(self, method: str) -> None:
        assert self.limiter is not None
        failure: BitrixError | None = None
        started = time.monotonic()
        try:
            self.limiter.acquire()
            metrics.LIMITER_WAIT.labels(portal=self.portal).observe(time.monotonic() - started)
        except RateLimitedError as exc:
            metrics.LIMITER_REFUSED.labels(portal=self.portal).inc()
            failure = RateLimitedError(
                portal=self.portal, method=method, description=exc.description, retry_after=exc.retry_after
            )
        except (DatabaseError, RedisError) as exc:
            # The shared bucket is unreachable; going ahead unpaced could trip Bitrix's limit for everyone.
            failure = TransientError(
                portal=self.portal,
                method=method,
                description=f"rate limiter unavailable: {type(exc).__name__}",
            )
        if failure is not None:
            log.info("%s", failure)
            raise failure

    def _transport_error(
        self, cls: type[BitrixError], method: str, url: str, what: str, exc: Exception
    ) -> BitrixError:
        # `url` differs from base_url after a redirect; hide the code of both.
        detail = redact(redact(f"{type(exc).__name__}: {exc}", self.base_url), url)
        return cls(portal=self.portal, method=method, description=f"{what} ({detail})")


def redirect_target(portal: str, method: str, url: str, response: requests.Response) -> str:
    """Where a redirect points; refused (``PermanentError``) without a ``Location`` or from HTTPS to HTTP."""
    location = response.headers.get("Location", "")
    target = urljoin(url, location)
    if not location or (urlsplit(url).scheme == "https" and urlsplit(target).scheme != "https"):
        # Never send the webhook code in clear text, nor guess a target.
        where = redact(target, target) if location else "nowhere (no Location header)"
        raise PermanentError(
            portal=portal,
            method=method,
            http_status=response.status_code,
            description=f"refusing to follow the redirect to {where}",
        )
    log.info(
        "[%s] %s: portal answered HTTP %s, repeating the POST at %s; update the REST URL setting",
        portal,
        method,
        response.status_code,
        redact(target, target),  # the new address carries the webhook code too
    )
    return target


def _retry_after(response: requests.Response) -> float | None:
    # Whether Bitrix sends Retry-After is unconfirmed [docs/bitrix.md "Limits"]; honour it if sent.
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def envelope_unwrap(
    response: requests.Response, *, portal: str, method: str, base_url: str
) -> dict[str, Any]:
    """The success envelope of an answer, or its failure classified and raised (see ``errors``).

    Decides from the answer alone, no I/O: the status, the body's ``error`` code, a ``Retry-After``.
    """
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    retry_after = _retry_after(response)
    if not isinstance(body, dict):
        # A proxy or load balancer page, a PHP fatal error...: worth a retry only for a server error.
        cls = TransientError if status >= 500 or status == 429 else PermanentError
        snippet = " ".join(response.text[:200].split())
        failure: BitrixError = cls(
            portal=portal,
            method=method,
            http_status=status,
            description=redact(f"non-JSON response: {snippet!r}", base_url),
        )
        if isinstance(failure, TransientError):
            failure.retry_after = retry_after
    elif "error" in body:
        # Error envelope {"error": CODE, "error_description": TEXT}; CODE may be "" or a number
        # [docs/bitrix.md "Errors"]. Some answers carry it with HTTP 200, so the code decides, not the status.
        failure = classify_error(
            portal=portal,
            method=method,
            http_status=status,
            code=body.get("error"),
            description=redact(str(body.get("error_description") or ""), base_url),
            retry_after=retry_after,
        )
    elif not 200 <= status < 300 or "result" not in body:
        failure = classify_error(
            portal=portal,
            method=method,
            http_status=status,
            code="",
            description="unexpected response without 'result'",
            retry_after=retry_after,
        )
    else:
        return body
    log.info("%s", failure)
    raise failure


# Verbs of the REST methods that change something (crm.deal.update, sale.order.update,
# crm.timeline.comment.add...); a batch writes when one of its commands does.
_WRITE_VERBS = frozenset({"add", "update", "delete", "set", "bind", "unbind"})


def method_writes(method: str, params: Mapping[str, Any]) -> bool:
    """Whether calling ``method`` with ``params`` may change something on the portal."""
    if method.lower() != "batch":
        return method.rsplit(".", 1)[-1].lower() in _WRITE_VERBS
    commands = params.get("cmd") or {}
    values = commands.values() if isinstance(commands, Mapping) else commands
    return any(method_writes(str(command).partition("?")[0].removesuffix(".json"), {}) for command in values)

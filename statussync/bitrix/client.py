"""The Bitrix REST client: inbound-webhook calls, ``batch`` and list paging, over ``transport``'s HTTP.

With ``transport`` this package is the only code in bxsync that speaks HTTP to Bitrix. The client never
retries by itself: it classifies every failure (see ``errors``) and the job runner decides when to try again.
It does pace itself through a shared ``RateLimiter`` before every HTTP request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from phpquery import http_build_query

from .behaviour import DOCUMENTED, PortalBehaviour
from .errors import (
    BitrixError,
    NotFoundError,
    OperatingLimitError,
    PermanentError,
    classify_error,
    redact,
)
from .operating import LEDGER
from .paging import ListPaging
from .ratelimit import RateLimiter, limiter_for
from .transport import TokenSource, WebhookTransport

__all__ = ["BatchResult", "BitrixClient", "client_for", "redact"]


# [docs/bitrix.md "Batch"] "в один пакет входит не более 50 подзапросов"
BATCH_LIMIT = 50
_PORTAL_SETTINGS = {"cms": "BXSYNC_CMS_REST_URL", "crm": "BXSYNC_CRM_REST_URL"}
# The cheapest read of each portal, to learn whether it answers again after an outage: a list by an id that
# never exists (ids start at 1), one field, without the count (`start=-1`) [docs/bitrix.md "Lists"]. Methods
# bxsync calls anyway [docs/contract.md "What bxsync calls on the portals"].
_PROBES: dict[str, tuple[str, dict[str, Any]]] = {
    "crm": ("crm.deal.list", {"filter": {"@ID": [0]}, "select": ["ID"]}),
    "cms": ("sale.order.list", {"filter": {"@id": [0]}, "select": ["id"]}),
}


@dataclass
class BatchResult:
    """Merged outcome of ``BitrixClient.batch``, keyed by the caller's command keys.

    A key is in ``results`` or in ``errors``, or in neither when ``halt`` stopped the batch before it ran.
    """

    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, BitrixError] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    nexts: dict[str, int] = field(default_factory=dict)


class BitrixClient:
    """REST client for one portal's inbound webhook: single calls and ``batch``; whole lists through
    ``paging`` (``ListPaging``).

    The HTTP itself (pacing, redirects, the envelope, redaction) is ``WebhookTransport``'s. ``behaviour`` is
    what doctor found the portal to do where the docs leave it open (``client_for`` hands it over).
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
        behaviour: PortalBehaviour = DOCUMENTED,
    ) -> None:
        self.transport = WebhookTransport(
            portal=portal, base_url=base_url, timeout=timeout, limiter=limiter, session=session, auth=auth
        )
        self.portal = self.transport.portal
        self.base_url = self.transport.base_url
        self.timeout = timeout
        self.limiter = limiter
        self.behaviour = behaviour
        self.paging = ListPaging(call=self.call, portal=self.portal, behaviour=lambda: self.behaviour)

    @property
    def calls(self) -> int:
        """HTTP requests made so far: a batch chunk is one, a followed redirect two."""
        return self.transport.calls

    def __repr__(self) -> str:
        return f"<BitrixClient portal={self.portal!r} calls={self.calls}>"

    # --- single calls -------------------------------------------------------------------------------------

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """POST ``method`` with JSON ``params``; return the envelope ``{"result", "total", "next", "time"}``.

        Raises a ``BitrixError`` subclass on any failure (see ``errors``).
        """
        try:
            return self.transport.envelope(method, params)
        except PermanentError as error:
            raise _not_found(error, self.behaviour) from None

    def result(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Like ``call`` but return only ``envelope["result"]``."""
        return self.call(method, params)["result"]

    def probe(self) -> None:
        """One cheap read-only call that answers whether the portal is up; raises a ``BitrixError`` if not."""
        method, params = _PROBES[self.portal]
        self.call(method, {**params, "start": self.behaviour.list_start})

    # --- batch ----------------------------------------------------------------------------------------------

    def batch(
        self, commands: Mapping[str, tuple[str, Mapping[str, Any]]], *, halt: bool = False
    ) -> BatchResult:
        """Run ``{key: (method, params)}`` through ``batch``, 50 commands per HTTP request; merge the answers.

        Failed commands land in ``errors`` as classified exceptions; the batch request itself answers 200 even
        then [docs/bitrix.md "Batch"]. With ``halt=True`` Bitrix stops at the first failing
        command and we send no further chunks. An error of the batch request itself (rate limit, auth...) is
        raised; commands of chunks sent before it have run.
        """
        out = BatchResult()
        items = list(commands.items())
        if len(items) == 1:
            # One command costs one request either way; calling the method itself keeps its own HTTP status
            # and error, and works against any portal that implements the method.
            key, (method, params) = items[0]
            try:
                envelope = self.call(method, params)
            except (PermanentError, OperatingLimitError) as error:
                # What a batch would answer in result_error: this command's failure (NotFoundError, a method
                # held by its operating limit), not the call's (the bucket, auth, an outage).
                out.errors[key] = error
            else:
                out.results[key] = envelope.get("result")
                if "total" in envelope:
                    out.totals[key] = int(envelope["total"])
                if "next" in envelope:
                    out.nexts[key] = int(envelope["next"])
            return out
        for start in range(0, len(items), BATCH_LIMIT):
            chunk = self._unheld(items[start : start + BATCH_LIMIT], out)
            if not chunk:
                continue
            methods = {key: method for key, (method, _) in chunk}
            # Sub-commands are "method?query" with PHP http_build_query encoding; inside a JSON body they are
            # plain strings, not encoded a second time [docs/bitrix.md "Parameter encoding"].
            cmd = {key: _command(method, self._marked(params)) for key, (method, params) in chunk}
            payload = self.result("batch", {"halt": 1 if halt else 0, "cmd": cmd})
            if not isinstance(payload, dict):
                raise PermanentError(
                    portal=self.portal, method="batch", description="unexpected batch result shape"
                )
            # PHP's json_encode turns an empty array into [] and an array keyed 0..n-1 into a list, so every
            # per-key map may arrive as {}, [] or a list (the docs' own examples show "result_error": []).
            out.results.update(_by_key(payload.get("result")))
            out.totals.update({k: int(v) for k, v in _by_key(payload.get("result_total")).items()})
            out.nexts.update({k: int(v) for k, v in _by_key(payload.get("result_next")).items()})
            # Each command counts against its own method's operating time [docs/bitrix.md "Limits"].
            for key, time_block in _by_key(payload.get("result_time")).items():
                if key in methods:
                    LEDGER.observe(webhook=self.portal, method=methods[key], time_block=time_block)
            chunk_errors = _by_key(payload.get("result_error"))
            for key, answer in chunk_errors.items():
                problem = (
                    answer if isinstance(answer, dict) else {"error": "", "error_description": str(answer)}
                )
                failure = classify_error(
                    portal=self.portal,
                    method=methods.get(key, "batch"),
                    http_status=None,
                    code=problem.get("error"),
                    description=redact(str(problem.get("error_description") or ""), self.base_url),
                )
                if isinstance(failure, OperatingLimitError):
                    LEDGER.refused(webhook=self.portal, error=failure)
                out.errors[key] = _not_found(failure, self.behaviour)
            if halt and chunk_errors:
                break
        return out

    def _unheld(
        self, chunk: list[tuple[str, tuple[str, Mapping[str, Any]]]], out: BatchResult
    ) -> list[tuple[str, tuple[str, Mapping[str, Any]]]]:
        """The commands of ``chunk`` whose method may go; the others fail at once with the hold's error, as
        Bitrix would fail them (a held method's command errs, the batch's other commands run)."""
        sendable = []
        for key, (method, params) in chunk:
            try:
                LEDGER.check(webhook=self.portal, portal=self.portal, method=method)
            except OperatingLimitError as held:
                out.errors[key] = held
            else:
                sendable.append((key, (method, params)))
        return sendable

    def _marked(self, params: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        # An application's writes carry its auth_connector, each command of a batch too, so the portal does
        # not queue them as offline events (api-reference/events/offline-events.md "How to Avoid Cycles").
        connector = getattr(self.transport.auth, "auth_connector", "")
        return {**(params or {}), "auth_connector": connector} if connector else params


def _not_found(error: BitrixError, behaviour: PortalBehaviour) -> BitrixError:
    """`error` as a ``NotFoundError`` when it carries the code doctor saw this portal give for a missing
    order, though outside the documented families [docs/bitrix.md "Undocumented behaviours"]."""
    known = bool(error.code) and error.code.upper() in behaviour.not_found_codes
    if known and isinstance(error, PermanentError) and not isinstance(error, NotFoundError):
        fields = {k: v for k, v in vars(error).items() if k != "retry_after"}
        return NotFoundError(**fields)
    return error


def _command(method: str, params: Mapping[str, Any] | None) -> str:
    query = http_build_query(params or {})
    return f"{method}?{query}" if query else method


def _by_key(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {str(key): item for key, item in value.items()}
    if isinstance(value, list):
        return {str(index): item for index, item in enumerate(value)}
    return {}


def client_for(portal: str, *, priority: bool = False) -> BitrixClient:
    """A client for ``portal`` ('cms' or 'crm') configured from settings, with the shared rate limiter
    (``priority``: may use the slots kept for payments, see ``limiter_for``)."""
    setting = _PORTAL_SETTINGS.get(portal)
    if setting is None:
        raise ValueError(f"unknown portal {portal!r}; expected one of {sorted(_PORTAL_SETTINGS)}")
    portal = setting.split("_")[1].lower()  # a plain str even when given a TextChoices member
    base_url = getattr(settings, setting)
    if not base_url:
        # No webhook: the portal may be connected as an application (statussync.applications).
        from statussync.applications import application_client

        client: BitrixClient | None = application_client(portal=portal, priority=priority)
        if client is not None:
            client.behaviour = portal_behaviour(portal)
            return client
        raise ImproperlyConfigured(
            f"{setting} is not set: give the inbound webhook URL of the {portal} portal "
            "(https://<host>/rest/<user>/<code>/) in the environment"
        )
    return BitrixClient(
        portal=portal,
        base_url=base_url,
        timeout=settings.BXSYNC_REST_TIMEOUT,
        limiter=limiter_for(portal, priority=priority),
        behaviour=portal_behaviour(portal),
    )


def portal_behaviour(portal: str) -> PortalBehaviour:
    """What doctor last found `portal` to do (cached per process, see ``portal_behaviour_cached``)."""
    from statussync.doctor.quirks import portal_behaviour_cached

    return portal_behaviour_cached(portal=portal)

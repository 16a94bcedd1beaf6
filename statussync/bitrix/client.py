"""The only code in bxsync that speaks HTTP to Bitrix: inbound-webhook REST calls, batch and list paging.

The client never retries by itself: it classifies every failure (see ``errors``) and the job runner decides
when to try again. It does pace itself through a shared ``RateLimiter`` before every HTTP request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from redis.exceptions import RedisError

from phpquery import http_build_query
from statussync import metrics

from .errors import (
    BitrixError,
    PermanentError,
    RateLimitedError,
    TransientError,
    classify_error,
    redact,
)
from .ratelimit import RateLimiter, limiter_for

__all__ = ["BatchResult", "BitrixClient", "client_for", "redact"]

log = logging.getLogger("statussync.bitrix")

# [R: settings/how-to-call-rest-api/batch.md] "в один пакет входит не более 50 подзапросов"
BATCH_LIMIT = 50
# List methods answer 50 rows a page, whatever is asked [R: api-reference/crm/deals/crm-deal-list.md].
LIST_PAGE_SIZE = 50
# A renamed portal answers 302, and following it blindly turns the POST into a GET without the body, so we
# follow it ourselves [R: settings/how-to-call-rest-api/change-domen.md].
_REDIRECTS = frozenset({301, 302, 307, 308})
_HEADERS = {"Accept": "application/json", "User-Agent": "bxsync/0.1"}
_PORTAL_SETTINGS = {"cms": "BXSYNC_CMS_REST_URL", "crm": "BXSYNC_CRM_REST_URL"}


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
    """REST client for one portal's inbound webhook (``https://host/rest/<user>/<code>/``).

    ``calls`` counts HTTP requests made by this instance (a batch chunk is one, a followed redirect two).
    """

    def __init__(
        self,
        *,
        portal: str,
        base_url: str,
        timeout: float = 20.0,
        limiter: RateLimiter | None = None,
        session: requests.Session | None = None,
    ) -> None:
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"the {portal} REST URL must start with https://")  # the URL itself is a secret
        self.portal = portal
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.timeout = timeout
        self.limiter = limiter
        self.session = session if session is not None else requests.Session()
        self.calls = 0

    def __repr__(self) -> str:
        return f"<BitrixClient portal={self.portal!r} calls={self.calls}>"

    # --- single calls -------------------------------------------------------------------------------------

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """POST ``method`` with JSON ``params``; return the envelope ``{"result", "total", "next", "time"}``.

        Raises a ``BitrixError`` subclass on any failure (see ``errors``).
        """
        body = dict(params or {})
        url = f"{self.base_url}{method}.json"
        response = self._post(method, url, body)
        if response.status_code in _REDIRECTS:
            response = self._post(method, self._redirect_target(method, url, response), body)
            if response.status_code in _REDIRECTS:
                raise PermanentError(
                    portal=self.portal,
                    method=method,
                    http_status=response.status_code,
                    description="redirected twice; check the portal address",
                )
        return self._envelope(method, response)

    def result(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Like ``call`` but return only ``envelope["result"]``."""
        return self.call(method, params)["result"]

    # --- batch ----------------------------------------------------------------------------------------------

    def batch(
        self, commands: Mapping[str, tuple[str, Mapping[str, Any]]], *, halt: bool = False
    ) -> BatchResult:
        """Run ``{key: (method, params)}`` through ``batch``, 50 commands per HTTP request; merge the answers.

        Failed commands land in ``errors`` as classified exceptions; the batch request itself answers 200 even
        then [R: settings/how-to-call-rest-api/batch.md]. With ``halt=True`` Bitrix stops at the first failing
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
            except PermanentError as error:  # NotFoundError too
                out.errors[key] = error
            else:
                out.results[key] = envelope.get("result")
                if "total" in envelope:
                    out.totals[key] = int(envelope["total"])
                if "next" in envelope:
                    out.nexts[key] = int(envelope["next"])
            return out
        for start in range(0, len(items), BATCH_LIMIT):
            chunk = items[start : start + BATCH_LIMIT]
            methods = {key: method for key, (method, _) in chunk}
            # Sub-commands are "method?query" with PHP http_build_query encoding; inside a JSON body they are
            # plain strings, not encoded a second time [R: settings/how-to-call-rest-api/data-encoding.md].
            cmd = {key: _command(method, params) for key, (method, params) in chunk}
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
            chunk_errors = _by_key(payload.get("result_error"))
            for key, error in chunk_errors.items():
                error = error if isinstance(error, dict) else {"error": "", "error_description": str(error)}
                out.errors[key] = classify_error(
                    portal=self.portal,
                    method=methods.get(key, "batch"),
                    http_status=None,
                    code=error.get("error"),
                    description=redact(str(error.get("error_description") or ""), self.base_url),
                )
            if halt and chunk_errors:
                break
        return out

    # --- lists ----------------------------------------------------------------------------------------------

    def list_all(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        items_key: str | None = None,
        limit: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield every item of a list method, page by page (``start=0, 50, ...``), following ``next``.

        List methods return 50 items a page and ``next`` while more exist
        [R: settings/how-to-call-rest-api/list-methods-pecularities.md]. ``crm.deal.list`` returns a list as
        ``result``; ``sale.order.list`` returns ``{"orders": [...]}`` -> pass ``items_key`` (or let it be
        found when the dict has exactly one list). Stops after ``limit`` items. Errors raise while iterating.
        """
        base = dict(params or {})
        start = base.pop("start", 0)
        seen = 0
        if limit is not None and limit <= 0:
            return
        while True:
            envelope = self.call(method, {**base, "start": start})
            for item in self._items(method, envelope.get("result"), items_key):
                yield item
                seen += 1
                if limit is not None and seen >= limit:
                    return
            next_start = envelope.get("next")
            if next_start is None:
                return
            if int(next_start) <= int(start):
                raise PermanentError(
                    portal=self.portal, method=method, description=f"'next' did not advance: {next_start}"
                )
            start = int(next_start)

    def pages_by_id(
        self,
        method: str,
        params: Mapping[str, Any],
        *,
        id_field: str,
        after: int = 0,
        items_key: str | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield the pages of a list method in id order, each after the last id of the one before.

        The way Bitrix recommends for big scans: ``start=-1`` (no total to count) and a ``>ID`` filter moved
        past each page, instead of offsets that grow slower with every page
        [R: settings/performance/huge-data.md]. ``params`` carries the ``order`` by ``id_field`` ascending.
        A caller that stores each page's last id can resume a scan where it stopped.
        """
        base = dict(params)
        filters = dict(base.pop("filter", None) or {})
        while True:
            envelope = self.call(method, {**base, "filter": {**filters, f">{id_field}": after}, "start": -1})
            page = self._items(method, envelope.get("result"), items_key)
            if not page:
                return
            yield page
            last = int(page[-1][id_field])
            if last <= after:
                raise PermanentError(
                    portal=self.portal, method=method, description=f"'>{id_field}' did not advance"
                )
            after = last
            if len(page) < LIST_PAGE_SIZE:
                return

    def _items(self, method: str, result: Any, items_key: str | None) -> list[Any]:
        if isinstance(result, list) and (items_key is None or not result):
            return result  # an empty PHP array is [] even where a dict is documented
        if isinstance(result, dict):
            if items_key is not None and isinstance(result.get(items_key), list):
                return result[items_key]
            lists = [value for value in result.values() if isinstance(value, list)]
            if items_key is None and len(lists) == 1:
                return lists[0]
        raise PermanentError(
            portal=self.portal,
            method=method,
            description=f"cannot find the item list in the result (items_key={items_key!r})",
        )

    # --- HTTP -----------------------------------------------------------------------------------------------

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

    def _redirect_target(self, method: str, url: str, response: requests.Response) -> str:
        location = response.headers.get("Location", "")
        target = urljoin(url, location)
        if not location or (urlsplit(url).scheme == "https" and urlsplit(target).scheme != "https"):
            # Never send the webhook code in clear text, nor guess a target.
            where = redact(target, target) if location else "nowhere (no Location header)"
            raise PermanentError(
                portal=self.portal,
                method=method,
                http_status=response.status_code,
                description=f"refusing to follow the redirect to {where}",
            )
        log.info(
            "[%s] %s: portal answered HTTP %s, repeating the POST at %s; update the REST URL setting",
            self.portal,
            method,
            response.status_code,
            redact(target, target),  # the new address carries the webhook code too
        )
        return target

    def _envelope(self, method: str, response: requests.Response) -> dict[str, Any]:
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
                portal=self.portal,
                method=method,
                http_status=status,
                description=redact(f"non-JSON response: {snippet!r}", self.base_url),
            )
            if isinstance(failure, TransientError):
                failure.retry_after = retry_after
        elif "error" in body:
            # Error envelope {"error": CODE, "error_description": TEXT}; CODE may be "" or a number
            # [R: _includes/error-info.md; R: api-reference/sale/order/sale-order-update.md]. Some answers
            # carry it with HTTP 200, so the code decides, not only the status.
            failure = classify_error(
                portal=self.portal,
                method=method,
                http_status=status,
                code=body.get("error"),
                description=redact(str(body.get("error_description") or ""), self.base_url),
                retry_after=retry_after,
            )
        elif not 200 <= status < 300 or "result" not in body:
            failure = classify_error(
                portal=self.portal,
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


def _command(method: str, params: Mapping[str, Any] | None) -> str:
    query = http_build_query(params or {})
    return f"{method}?{query}" if query else method


def _by_key(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {str(key): item for key, item in value.items()}
    if isinstance(value, list):
        return {str(index): item for index, item in enumerate(value)}
    return {}


def _retry_after(response: requests.Response) -> float | None:
    # Whether Bitrix sends Retry-After is unconfirmed [R: settings/performance/limits.md]; honour it if sent.
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def client_for(portal: str, *, priority: bool = False) -> BitrixClient:
    """A client for ``portal`` ('cms' or 'crm') configured from settings, with the shared rate limiter
    (``priority``: may use the slots kept for payments, see ``limiter_for``)."""
    setting = _PORTAL_SETTINGS.get(portal)
    if setting is None:
        raise ValueError(f"unknown portal {portal!r}; expected one of {sorted(_PORTAL_SETTINGS)}")
    portal = setting.split("_")[1].lower()  # a plain str even when given a TextChoices member
    base_url = getattr(settings, setting, "")
    if not base_url:
        raise ImproperlyConfigured(
            f"{setting} is not set: give the inbound webhook URL of the {portal} portal "
            "(https://<host>/rest/<user>/<code>/) in the environment"
        )
    return BitrixClient(
        portal=portal,
        base_url=base_url,
        timeout=float(getattr(settings, "BXSYNC_REST_TIMEOUT", 20.0)),
        limiter=limiter_for(portal, priority=priority),
    )

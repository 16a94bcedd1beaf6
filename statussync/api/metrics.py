"""`GET /metrics`: bxsync's Prometheus metrics (statussync/metrics.py), for the operator's scraper only.

Counts of events, writes and REST requests say how busy the shop is; they are no secret, but no business of
the internet either. So the endpoint answers a scraper that sends `Authorization: Bearer
<BXSYNC_METRICS_TOKEN>`; with no token set, nobody, unless `BXSYNC_METRICS_LOOPBACK` says the web server is
bound to loopback with no proxy in front: then requests from this host (a Prometheus or an agent beside
bxsync). "Local" cannot be told from the request alone: nginx on this host forwards every client from
127.0.0.1 and adds no X-Forwarded-For unless configured to. No metric carries a webhook URL, a token or a
customer's data.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from bxsync_project.proxy import client_ip
from statussync.metrics import metrics_exposition

LOOPBACK = {"127.0.0.1", "::1"}


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The metrics in Prometheus's text format; 403 for a scraper that may not read them."""
    if not metrics_allowed(request):
        return HttpResponse("forbidden: see BXSYNC_METRICS_TOKEN\n", status=403, content_type="text/plain")
    body, content_type = metrics_exposition()
    return HttpResponse(body, content_type=content_type)


def metrics_allowed(request: HttpRequest) -> bool:
    """The right bearer token (compared in constant time) or, with none configured and the server declared
    bound to loopback (`BXSYNC_METRICS_LOOPBACK`), a request from this host that no proxy forwarded."""
    token = settings.BXSYNC_METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), token.encode())
    if not settings.BXSYNC_METRICS_LOOPBACK:
        return False
    forwarded = "HTTP_X_FORWARDED_FOR" in request.META and not settings.BXSYNC_BEHIND_PROXY
    return not forwarded and client_ip(request) in LOOPBACK

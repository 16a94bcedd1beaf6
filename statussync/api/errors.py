"""Every error of the API as JSON: DRF's exceptions, anything unexpected, and Django's own 400/404/500.

Bitrix's queue records whatever a handler answers and never re-sends the event
(https://apidocs.bitrix24.ru/api-reference/events/index.html), and monitors parse health answers: an HTML
error page helps neither.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

logger = logging.getLogger(__name__)

UNEXPECTED = "internal error; try again"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's handler with one body shape, `{"error": text}` (plus `fields` for an invalid input), and a JSON
    503 for an exception DRF does not handle, where DRF would let Django render an HTML 500."""
    response = drf_exception_handler(exc, context)
    if response is None:
        view = context.get("view")
        logger.error("unexpected error in %s", type(view).__name__, exc_info=exc)
        set_rollback()
        return Response({"error": UNEXPECTED}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    if isinstance(exc, ValidationError):
        response.data = {"error": "invalid event", "fields": response.data}
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"error": str(response.data["detail"])}
    else:
        response.data = {"error": str(response.data)}
    return response


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 400 (a disallowed Host header, a body Django itself refuses), as JSON under /api/."""
    if _is_api(request):
        return JsonResponse({"error": "bad request"}, status=status.HTTP_400_BAD_REQUEST)
    return defaults.bad_request(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"error": "not found"}, status=status.HTTP_404_NOT_FOUND)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """An exception outside the API views (a middleware): still JSON, and 503 as inside them."""
    if _is_api(request):
        return JsonResponse({"error": UNEXPECTED}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    return defaults.server_error(request)

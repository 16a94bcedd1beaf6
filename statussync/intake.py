"""Webhook endpoints: verify, parse, store, enqueue, answer. No outbound HTTP in the request.

Bitrix never re-sends an event and slows down its deliveries to slow handlers
[R: api-reference/events/index.md], so the request does the least that makes the event durable.
"""

from __future__ import annotations

import hmac
import json
import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, connection
from django.db.models import Min
from django.utils import timezone
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from statussync.bitrix.query import parse_bracket_query
from statussync.events import EventError, event_receive
from statussync.models import Job, JobState, PortalHealth, Side

logger = logging.getLogger(__name__)

MAX_FIELDS = 200
# A queue whose oldest due job waits longer than this has no live worker behind it.
STUCK_AFTER = timedelta(minutes=10)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with a JSON body for everything it handles (never an HTML page)."""
    response = drf_exception_handler(exc, context)
    if response is not None and not isinstance(response.data, dict):
        response.data = {"detail": response.data}
    return response


class _EventReceiveApi(APIView):
    """POST a Bitrix outgoing-webhook event exactly as Bitrix sends it (form-encoded, bracket keys)."""

    side: str = ""
    parser_classes: list = []  # the raw body is parsed here: bracket keys are un-flattened, not guessed

    def post(self, request: Request) -> Response:
        declared = request.META.get("CONTENT_LENGTH") or "0"
        if declared.isdigit() and int(declared) > settings.BXSYNC_MAX_EVENT_BYTES:
            return _error(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "body too large")
        try:
            body = request._request.body
        except RequestDataTooBig:
            return _error(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "body too large")
        if len(body) > settings.BXSYNC_MAX_EVENT_BYTES:
            return _error(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "body too large")
        try:
            payload = _parse(body, request.content_type or "")
        except ValueError as exc:
            return _error(status.HTTP_400_BAD_REQUEST, f"malformed body: {exc}")

        expected = _expected_token(self.side)
        auth = payload.get("auth")
        given = auth.get("application_token") if isinstance(auth, dict) else None
        # Compared in constant time; an unset token on our side refuses everything rather than accepting all.
        if (
            not expected
            or not isinstance(given, str)
            or not hmac.compare_digest(given.encode(), expected.encode())
        ):
            return _error(status.HTTP_403_FORBIDDEN, "wrong or missing application_token")

        try:
            receipt = event_receive(side=self.side, payload=payload)
        except EventError as exc:
            return _error(status.HTTP_400_BAD_REQUEST, str(exc))
        except Exception:
            # Not stored, so not a 200; and never an HTML 500 page for Bitrix's queue to record.
            logger.exception("could not store a %s event", self.side)
            return _error(status.HTTP_503_SERVICE_UNAVAILABLE, "could not store the event; try again")
        return Response({"status": receipt.status, "event": receipt.event, "id": receipt.entity_id})


class CmsEventReceiveApi(_EventReceiveApi):
    side = Side.CMS


class CrmEventReceiveApi(_EventReceiveApi):
    side = Side.CRM


class HealthApi(APIView):
    """Database, queue and each portal's last contact and error. Never calls the portals."""

    def get(self, request: Request) -> Response:
        report: dict[str, Any] = {}
        healthy = True
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            report["database"] = {"ok": True}
        except DatabaseError as exc:
            report["database"] = {"ok": False, "error": type(exc).__name__}
            return Response({"ok": False, **report}, status=status.HTTP_503_SERVICE_UNAVAILABLE)

        now = timezone.now()
        queues: dict[str, Any] = {}
        for queue in ("default", "payments"):
            pending = Job.objects.filter(queue=queue, state=JobState.PENDING)
            oldest_due = pending.filter(not_before__lte=now).aggregate(t=Min("not_before"))["t"]
            stuck = oldest_due is not None and now - oldest_due > STUCK_AFTER
            queues[queue] = {
                "pending": pending.count(),
                "running": Job.objects.filter(queue=queue, state=JobState.RUNNING).count(),
                "dead": Job.objects.filter(queue=queue, state=JobState.DEAD).count(),
                "oldest_due_seconds": int((now - oldest_due).total_seconds()) if oldest_due else 0,
                "ok": not stuck,
            }
            healthy &= not stuck
        report["queue"] = queues

        portals: dict[str, Any] = {}
        for side in (Side.CMS, Side.CRM):
            row = PortalHealth.objects.filter(portal=side).first()
            configured = bool(_rest_url(side)) and bool(_expected_token(side))
            auth_failed = bool(row and row.auth_failed)
            portals[side] = {
                "configured": configured,
                "last_contact": row.last_contact_at.isoformat() if row and row.last_contact_at else None,
                "last_error": row.last_error if row else "",
                "last_error_at": row.last_error_at.isoformat() if row and row.last_error_at else None,
                "auth_failed": auth_failed,
                "ok": configured and not auth_failed,
            }
            healthy &= configured and not auth_failed
        report["portals"] = portals
        return Response(
            {"ok": healthy, **report},
            status=status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE,
        )


def _parse(body: bytes, content_type: str) -> dict[str, Any]:
    text = body.decode("utf-8")  # UnicodeDecodeError is a ValueError: 400
    if content_type.startswith("application/json"):
        payload = json.loads(text)
        if not isinstance(payload, dict):
            raise ValueError("a JSON event must be an object")
        return payload
    if content_type and not content_type.startswith("application/x-www-form-urlencoded"):
        raise ValueError(f"unsupported content type {content_type.split(';')[0]}")
    if not text.strip():
        raise ValueError("empty body")
    if text.count("&") + 1 > MAX_FIELDS:
        raise ValueError("too many fields")
    return parse_bracket_query(text)


def _expected_token(side: str) -> str:
    return settings.BXSYNC_CMS_APP_TOKEN if side == Side.CMS else settings.BXSYNC_CRM_APP_TOKEN


def _rest_url(side: str) -> str:
    return settings.BXSYNC_CMS_REST_URL if side == Side.CMS else settings.BXSYNC_CRM_REST_URL


def _error(code: int, detail: str) -> Response:
    return Response({"error": detail}, status=code)

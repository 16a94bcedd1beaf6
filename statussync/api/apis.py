"""The endpoints: `<Entity><Action>Api` views that only parse, check and call a service or selector."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import MethodNotAllowed, ParseError, UnsupportedMediaType
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from statussync import metrics
from statussync.api import schema
from statussync.api.authentication import (
    ApplicationTokenAuthentication,
    CmsApplicationTokenAuthentication,
    CrmApplicationTokenAuthentication,
)
from statussync.api.parsers import BitrixFormParser, BitrixJSONParser
from statussync.applications import application_install, application_removed, application_wake_believed
from statussync.events import event_kind, event_receive
from statussync.health import health_live, health_report
from statussync.models import Side
from statussync.pull_wake import pull_wake


class JsonAlwaysNegotiation(DefaultContentNegotiation):
    """The answer is JSON whatever `Accept` says: a webhook sender or load balancer that asks for HTML
    should get the JSON status, not DRF's 406."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class _JsonApi(APIView):
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JsonAlwaysNegotiation

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # DRF parses and authenticates before it looks at the method; another method is a 405 whatever
        # its body holds (and OPTIONS is one of them: these endpoints describe themselves at /api/schema/).
        method = request.method or ""
        if method.lower() not in self.http_method_names:
            raise MethodNotAllowed(method)
        super().initial(request, *args, **kwargs)


class _EventReceiveApi(_JsonApi):
    """Receive one Bitrix outgoing-webhook event, exactly as Bitrix sends it; 200 once it is stored."""

    side: str = ""
    http_method_names = ["post"]
    parser_classes = [BitrixFormParser, BitrixJSONParser]
    authentication_classes: list[type[ApplicationTokenAuthentication]] = []
    # Refuses too if a subclass forgets its authentication class, rather than accepting every request.
    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        class DataSerializer(serializers.Serializer):
            class FieldsSerializer(serializers.Serializer):
                ID = serializers.CharField(required=False, allow_blank=True, max_length=32)

            FIELDS = FieldsSerializer(required=False)

        event = serializers.CharField()
        # Named like Serializer.data (the form's `data[...]` keys); DRF's metaclass makes it a declared field,
        # which the stubs cannot see.
        data = DataSerializer(required=False)  # type: ignore[assignment]
        ts = serializers.CharField(required=False, allow_blank=True, allow_null=True, default="")
        # Bitrix's own capture of an outgoing-webhook event has none: optional.
        event_handler_id = serializers.CharField(
            required=False, allow_blank=True, allow_null=True, default=""
        )

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            entity_id = ((attrs.get("data") or {}).get("FIELDS") or {}).get("ID") or ""
            return _event_values(
                side=self.context["side"],
                event=attrs["event"],
                entity_id=entity_id,
                ts=attrs.get("ts") or "",
                event_handler_id=attrs.get("event_handler_id") or "",
            )

    def perform_authentication(self, request: Request) -> None:
        # The token is inside the body, so the body is parsed first; a malformed or oversized body is a
        # 400 or 413 whatever token it carries.
        try:
            data = request.data
        except UnsupportedMediaType as exc:
            raise ParseError(f"unsupported content type {request.content_type.split(';')[0]!r}") from exc
        if not data:
            raise ParseError("malformed body: no event in it")
        super().perform_authentication(request)

    def post(self, request: Request) -> Response:
        values = _plain_event_values(request.data, side=self.side)
        if values is None:
            serializer = self.InputSerializer(data=request.data, context={"side": self.side})
            serializer.is_valid(raise_exception=True)
            values = serializer.validated_data
        try:
            receipt = event_receive(side=self.side, payload=request.data, **values)
        except Exception:
            metrics.count(metrics.EVENTS_UNSTORED, portal=self.side)
            raise  # the API's exception handler answers 503
        # The label is one of the events bxsync knows: a portal may send any name, and each name would be a
        # time series of its own.
        if receipt.event == "ONAPPUNINSTALL":  # only an application's token authenticates it
            application_removed(portal=self.side)
        event = receipt.event if event_kind(side=self.side, event=receipt.event) else "other"
        metrics.count(metrics.EVENTS_RECEIVED, portal=self.side, event=event, status=receipt.status)
        return Response({"status": receipt.status, "event": receipt.event, "id": receipt.entity_id})


def _event_values(*, side: str, event: str, entity_id: str, ts: str, event_handler_id: str) -> dict[str, str]:
    """The checks beyond the fields' types, and what `event_receive` is called with."""
    event = event.strip().upper()
    if not event:
        raise serializers.ValidationError({"event": "an event name is required"})
    if event_kind(side=side, event=event) and not (entity_id.isascii() and entity_id.isdigit()):
        raise serializers.ValidationError({"data[FIELDS][ID]": "a numeric id is required"})
    return {"event": event, "entity_id": entity_id, "ts": ts[:20], "event_handler_id": event_handler_id[:20]}


def _plain_event_values(data: Any, *, side: str) -> dict[str, str] | None:
    """The input serializer's result for a body of plain, well-formed strings, as Bitrix sends every event,
    without building the serializer (deep-copying its nested fields was a fifth of Django's time per webhook:
    docs/benchmarks.md "Webhook intake"); None for anything else, which the serializer checks and answers.
    The same rules as its fields: strings trimmed, `event` not blank, `data` and `data[FIELDS]` objects,
    `ID` at most 32 characters, `ts` and `event_handler_id` optional or null."""
    if not isinstance(data, dict):
        return None
    event, body, ts, handler = (
        data.get("event"),
        data.get("data", {}),
        data.get("ts"),
        data.get("event_handler_id"),
    )
    if not isinstance(event, str) or not event.strip() or not isinstance(body, dict):
        return None
    fields = body.get("FIELDS", {})
    entity_id = fields.get("ID", "") if isinstance(fields, dict) else None
    if not isinstance(entity_id, str) or len(entity_id.strip()) > 32:
        return None
    if not all(value is None or isinstance(value, str) for value in (ts, handler)):
        return None
    return _event_values(
        side=side,
        event=event.strip(),
        entity_id=entity_id.strip(),
        ts=(ts or "").strip(),
        event_handler_id=(handler or "").strip(),
    )


@extend_schema_view(post=extend_schema(**schema.event_receive_schema(Side.CMS)))
class CmsEventReceiveApi(_EventReceiveApi):
    side = Side.CMS
    authentication_classes = [CmsApplicationTokenAuthentication]


@extend_schema_view(post=extend_schema(**schema.event_receive_schema(Side.CRM)))
class CrmEventReceiveApi(_EventReceiveApi):
    side = Side.CRM
    authentication_classes = [CrmApplicationTokenAuthentication]


@extend_schema(exclude=True)  # the portal's own callback, not an endpoint for integrators
class AppInstallApi(_JsonApi):
    """The installation callback of a local application: the first token pair, posted by the portal when
    its administrator saves the application (settings/app-installation/local-apps/installation-callback.md).
    Believed only for a portal a manager set up, from its address, with a token that works there."""

    http_method_names = ["post"]
    parser_classes = [BitrixFormParser, BitrixJSONParser]
    authentication_classes: list = []
    permission_classes: list = []

    def post(self, request: Request, portal: str) -> Response:
        if portal not in Side.values:
            return Response({"status": "refused"}, status=status.HTTP_404_NOT_FOUND)
        try:
            application_install(portal=portal, auth=request.data.get("auth"))
        except PermissionError:
            return Response({"status": "refused"}, status=status.HTTP_403_FORBIDDEN)
        return Response({"status": "connected"})


@extend_schema(exclude=True)  # the portal's own notification, not an endpoint for integrators
class AppWakeApi(_JsonApi):
    """ONOFFLINEEVENT: the portal's offline queue has records (api-reference/events/on-offline-event.md);
    the puller reads it at once. The event carries no data, so a forged one costs at most a read, which
    the puller spaces out; with the application token known (the installation callback), it is checked."""

    http_method_names = ["post"]
    parser_classes = [BitrixFormParser, BitrixJSONParser]
    authentication_classes: list = []
    permission_classes: list = []

    def post(self, request: Request, portal: str) -> Response:
        auth = request.data.get("auth") if isinstance(request.data, dict) else None
        token = str((auth or {}).get("application_token") or "") if isinstance(auth, dict) else ""
        if portal not in Side.values or not application_wake_believed(portal=portal, application_token=token):
            return Response({"status": "refused"}, status=status.HTTP_403_FORBIDDEN)
        return Response({"status": "woken" if pull_wake(portal=portal) else "noted"})


class _HealthApi(_JsonApi):
    http_method_names = ["get", "head"]
    authentication_classes: list = []
    permission_classes: list = []


@extend_schema_view(get=extend_schema(**schema.HEALTH_SCHEMA))
class HealthApi(_HealthApi):
    """Database, cache, broker, queues and each portal as the workers recorded it (never calls a portal)."""

    # The admin's session, if any: staff see the portals' error texts. GET only, so no CSRF check applies.
    authentication_classes = [SessionAuthentication]

    def get(self, request: Request) -> Response:
        report = health_report()
        if not _staff(request):
            report = _states_only(report)
        return Response(schema.HealthSerializer(report).data, status=_health_status(report))


def _staff(request: Request) -> bool:
    """A staff member logged in to the admin."""
    return bool(request.user and request.user.is_authenticated and request.user.is_staff)


def _states_only(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the portals' error texts: a monitor needs states, times and counts; what a portal
    answered (which method, which code) is for staff."""
    portals = {side: {**portal, "last_error": ""} for side, portal in report.get("portals", {}).items()}
    return {**report, "portals": portals} if portals else report


@extend_schema_view(get=extend_schema(**schema.HEALTH_LIVE_SCHEMA))
class HealthLiveApi(_HealthApi):
    """The database only: for a load balancer, which must keep sending webhooks while a portal is down."""

    def get(self, request: Request) -> Response:
        report = health_live()
        return Response(schema.HealthLiveSerializer(report).data, status=_health_status(report))


def _health_status(report: dict[str, Any]) -> int:
    return status.HTTP_200_OK if report["ok"] else status.HTTP_503_SERVICE_UNAVAILABLE

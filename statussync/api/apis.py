"""The endpoints: `<Entity><Action>Api` views that only parse, check and call a service or selector."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, status
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
from statussync.events import event_kind, event_receive
from statussync.health import health_live, health_report
from statussync.models import Side


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
            event = attrs["event"].strip().upper()
            if not event:
                raise serializers.ValidationError({"event": "an event name is required"})
            entity_id = ((attrs.get("data") or {}).get("FIELDS") or {}).get("ID") or ""
            if event_kind(side=self.context["side"], event=event) and not (
                entity_id.isascii() and entity_id.isdigit()
            ):
                raise serializers.ValidationError({"data[FIELDS][ID]": "a numeric id is required"})
            return {
                "event": event,
                "entity_id": entity_id,
                "ts": (attrs.get("ts") or "")[:20],
                "event_handler_id": (attrs.get("event_handler_id") or "")[:20],
            }

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
        serializer = self.InputSerializer(data=request.data, context={"side": self.side})
        serializer.is_valid(raise_exception=True)
        try:
            receipt = event_receive(side=self.side, payload=request.data, **serializer.validated_data)
        except Exception:
            metrics.EVENTS_UNSTORED.labels(portal=self.side).inc()
            raise  # the API's exception handler answers 503
        # The label is one of the events bxsync knows: a portal may send any name, and each name would be a
        # time series of its own.
        event = receipt.event if event_kind(side=self.side, event=receipt.event) else "other"
        metrics.EVENTS_RECEIVED.labels(portal=self.side, event=event, status=receipt.status).inc()
        return Response({"status": receipt.status, "event": receipt.event, "id": receipt.entity_id})


@extend_schema_view(post=extend_schema(**schema.event_receive_schema(Side.CMS)))
class CmsEventReceiveApi(_EventReceiveApi):
    side = Side.CMS
    authentication_classes = [CmsApplicationTokenAuthentication]


@extend_schema_view(post=extend_schema(**schema.event_receive_schema(Side.CRM)))
class CrmEventReceiveApi(_EventReceiveApi):
    side = Side.CRM
    authentication_classes = [CrmApplicationTokenAuthentication]


class _HealthApi(_JsonApi):
    http_method_names = ["get", "head"]
    authentication_classes: list = []
    permission_classes: list = []


@extend_schema_view(get=extend_schema(**schema.HEALTH_SCHEMA))
class HealthApi(_HealthApi):
    """Database, cache, broker, queues and each portal as the workers recorded it (never calls a portal)."""

    def get(self, request: Request) -> Response:
        report = health_report()
        return Response(schema.HealthSerializer(report).data, status=_health_status(report))


@extend_schema_view(get=extend_schema(**schema.HEALTH_LIVE_SCHEMA))
class HealthLiveApi(_HealthApi):
    """The database only: for a load balancer, which must keep sending webhooks while a portal is down."""

    def get(self, request: Request) -> Response:
        report = health_live()
        return Response(schema.HealthLiveSerializer(report).data, status=_health_status(report))


def _health_status(report: dict[str, Any]) -> int:
    return status.HTTP_200_OK if report["ok"] else status.HTTP_503_SERVICE_UNAVAILABLE

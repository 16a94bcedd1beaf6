"""What `/api/schema/` says about the endpoints: request bodies, answers, and the serializers behind them.

Bitrix's form keys carry brackets (`data[FIELDS][ID]`), which OpenAPI can only name as flat properties; the
JSON variant of the same event is nested. The application token travels in the body, which OpenAPI security
schemes cannot express, so it is a required body property here and no security scheme is declared.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, inline_serializer
from rest_framework import serializers

from statussync.models import Side

EVENTS: dict[str, list[str]] = {
    Side.CMS: ["ONSALEORDERSAVED", "ONPAYMENTENTITYSAVED", "ONORDERDELETED"],
    Side.CRM: ["ONCRMDEALUPDATE", "ONCRMDEALADD", "ONCRMDEALDELETE", "ONCRMDEALMOVETOCATEGORY"],
}
PORTAL_NAMES: dict[str, str] = {Side.CMS: "shop", Side.CRM: "CRM"}
TOKEN_SETTINGS: dict[str, str] = {Side.CMS: "BXSYNC_CMS_APP_TOKEN", Side.CRM: "BXSYNC_CRM_APP_TOKEN"}


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="What was wrong, for a person.")
    # A field named like Serializer.fields: DRF's metaclass moves it into _declared_fields at class creation,
    # which the stubs cannot see; the name is the public error body's (docs/contract.md).
    fields = serializers.DictField(  # type: ignore[assignment]
        required=False, help_text="For an invalid event: the offending fields and what is wrong with each."
    )


class ReceiptSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["stored", "duplicate", "ignored"],
        help_text="`stored` (new event, its job queued), `duplicate` (seen before; the job is queued all "
        "the same) or `ignored` (an event type bxsync does not act on; stored, no job).",
    )
    event = serializers.CharField()
    id = serializers.CharField(help_text="`data[FIELDS][ID]`: a deal, order or payment id.")


def _event_fields(*, bracket_keys: bool) -> dict[str, serializers.Field]:
    id_field = serializers.RegexField(
        r"^[0-9]{1,32}$",
        required=False,
        help_text="The deal, order or payment id; required for the events bxsync acts on.",
    )
    common = {
        "event": serializers.CharField(help_text="The event code, e.g. ONCRMDEALUPDATE."),
        "ts": serializers.CharField(required=False, help_text="When the event left Bitrix's queue (Unix)."),
        "event_handler_id": serializers.CharField(required=False),
    }
    if bracket_keys:
        return {
            **common,
            "data[FIELDS][ID]": id_field,
            "auth[application_token]": serializers.CharField(
                help_text="The portal's outgoing-webhook application token."
            ),
            "auth[domain]": serializers.CharField(required=False),
            "auth[member_id]": serializers.CharField(required=False),
        }
    return {
        **common,
        "data": inline_serializer(
            "BitrixEventData",
            {"FIELDS": inline_serializer("BitrixEventFields", {"ID": id_field}, required=False)},
            required=False,
        ),
        "auth": inline_serializer(
            "BitrixEventAuth",
            {
                "application_token": serializers.CharField(
                    help_text="The portal's outgoing-webhook application token."
                ),
                "domain": serializers.CharField(required=False),
            },
        ),
    }


FORM_BODY = inline_serializer("BitrixEventForm", _event_fields(bracket_keys=True))
JSON_BODY = inline_serializer("BitrixEventJson", _event_fields(bracket_keys=False))

_ERRORS = {
    400: OpenApiResponse(ErrorSerializer, "Malformed body, unsupported content type or invalid event."),
    403: OpenApiResponse(ErrorSerializer, "Missing or wrong application token; nothing stored."),
    413: OpenApiResponse(ErrorSerializer, "Body larger than BXSYNC_MAX_EVENT_BYTES; nothing read."),
    503: OpenApiResponse(ErrorSerializer, "Unexpected failure; the event was not stored."),
}


def event_receive_schema(side: str) -> dict[str, Any]:
    """`extend_schema` arguments for one portal's webhook endpoint."""
    name = PORTAL_NAMES[side]
    return {
        "operation_id": f"{side}_event_receive",
        "summary": f"Receive an outgoing-webhook event of the {name} portal",
        "description": (
            f"Bitrix's outgoing webhook of the {name} portal posts here ({', '.join(EVENTS[side])}). "
            "The event and its job are stored before the 200: Bitrix never sends an event twice. "
            f"`auth[application_token]` must equal `{TOKEN_SETTINGS[side]}` (compared in constant time); "
            "with that setting unset every event is refused. Every answer is JSON; any other method "
            "answers 405."
        ),
        "tags": ["webhooks"],
        "request": {"application/x-www-form-urlencoded": FORM_BODY, "application/json": JSON_BODY},
        "responses": {200: OpenApiResponse(ReceiptSerializer, "Stored, a duplicate, or ignored."), **_ERRORS},
        "examples": [
            OpenApiExample(
                f"{EVENTS[side][0]}",
                value={
                    "event": EVENTS[side][0],
                    "data[FIELDS][ID]": "7405",
                    "ts": "1766047124",
                    "auth[application_token]": "the-portals-application-token",
                },
                request_only=True,
                media_type="application/x-www-form-urlencoded",
            )
        ],
    }


class CheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    error = serializers.CharField(required=False, help_text="The error's class name.")


class BrokerSerializer(CheckSerializer):
    kind = serializers.ChoiceField(choices=["orm", "redis"], help_text="`orm`: the database is the broker.")


class QueueSerializer(serializers.Serializer):
    pending = serializers.IntegerField()
    running = serializers.IntegerField()
    dead = serializers.IntegerField(help_text="Jobs in the dead-letter list.")
    oldest_due_seconds = serializers.IntegerField()
    ok = serializers.BooleanField(help_text="False when a due job has waited over 10 minutes.")


class QueuesSerializer(serializers.Serializer):
    default = QueueSerializer()
    payments = QueueSerializer()


class PortalSerializer(serializers.Serializer):
    configured = serializers.BooleanField(help_text="Its REST URL and application token are set.")
    failing = serializers.BooleanField(help_text="Its last call failed after its last success.")
    failing_since = serializers.DateTimeField(
        allow_null=True, help_text="The first failure after the last success."
    )
    last_contact = serializers.DateTimeField(allow_null=True, help_text="The last successful call.")
    last_error = serializers.CharField(
        allow_blank=True, help_text="The last failure (never a URL); empty unless a staff member asks."
    )
    last_error_at = serializers.DateTimeField(allow_null=True)
    auth_failed = serializers.BooleanField(help_text="Red until a call succeeds again.")
    moved_to = serializers.CharField(
        allow_null=True,
        help_text="The portal's new address (origin only) after it redirected bxsync: update its REST URL.",
    )
    last_outage_since = serializers.DateTimeField(
        allow_null=True, help_text="When the last outage that ended began (its first failure)."
    )
    recovered_at = serializers.DateTimeField(
        allow_null=True, help_text="When the portal answered again after that outage."
    )
    ok = serializers.BooleanField()


class PortalsSerializer(serializers.Serializer):
    cms = PortalSerializer(help_text="The shop portal.")
    crm = PortalSerializer(help_text="The CRM portal.")


class HealthSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    database = CheckSerializer()
    cache = CheckSerializer(required=False)
    broker = BrokerSerializer(required=False)
    queue = QueuesSerializer(required=False)
    portals = PortalsSerializer(required=False)


class HealthLiveSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    database = CheckSerializer()


HEALTH_SCHEMA: dict[str, Any] = {
    "operation_id": "health_report",
    "summary": "Health: database, cache, broker, queues and each portal",
    "description": (
        "Never calls the portals: each portal's state is what the workers recorded. A portal is failing "
        "when its last call failed after its last success (`failing_since`, `last_error`); an auth "
        "failure stays red until a call succeeds. With the database down only `ok` and `database` are "
        "reported. For a load balancer use /api/health/live/, which stays 200 during a portal outage."
    ),
    "tags": ["health"],
    "responses": {
        200: OpenApiResponse(HealthSerializer, "Everything is well."),
        503: OpenApiResponse(HealthSerializer, "Something is not: see each part's `ok`."),
    },
}

HEALTH_LIVE_SCHEMA: dict[str, Any] = {
    "operation_id": "health_live",
    "summary": "Liveness for load balancers: the database only",
    "description": (
        "200 while bxsync can store webhook events, whatever the portals do; 503 when the database "
        "does not answer."
    ),
    "tags": ["health"],
    "responses": {
        200: OpenApiResponse(HealthLiveSerializer, "The database answers."),
        503: OpenApiResponse(HealthLiveSerializer, "The database does not answer."),
    },
}

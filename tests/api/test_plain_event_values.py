"""The webhook's fast reading of a plain body (statussync.api.apis._plain_event_values) says exactly what the
input serializer says, or leaves the body to it."""

from __future__ import annotations

import pytest
from rest_framework import serializers

from statussync.api.apis import CrmEventReceiveApi, _plain_event_values
from statussync.api.parsers import BitrixFormParser
from tests.support.webhooks import event_body

BODIES = [
    {"event": "ONCRMDEALUPDATE", "data": {"FIELDS": {"ID": "7405"}}, "ts": "1700000000"},
    {"event": " oncrmdealupdate ", "data": {"FIELDS": {"ID": " 12 "}}, "ts": None, "event_handler_id": " 9 "},
    {"event": "ONCRMDEALUPDATE", "data": {"FIELDS": {"ID": "x"}}},
    {"event": "ONCRMDEALUPDATE", "data": {"FIELDS": {"ID": ""}}},
    {"event": "ONCRMDEALUPDATE"},
    {"event": "ONSOMETHINGELSE", "data": {"FIELDS": {}}},
    {"event": "ONSOMETHINGELSE", "ts": "  "},
    {"event": "ONCRMDEALUPDATE", "data": {"FIELDS": {"ID": "1" * 33}}},
    {"event": "ONCRMDEALUPDATE", "data": {"FIELDS": {"ID": " " + "1" * 32 + " "}}},
    {"event": "  "},
    {"event": ""},
    {"event": 5},
    {"event": "ONCRMDEALUPDATE", "data": None},
    {"event": "ONCRMDEALUPDATE", "data": "x"},
    {"event": "ONCRMDEALUPDATE", "data": {"FIELDS": ["1"]}},
    {"event": "ONCRMDEALUPDATE", "data": {"FIELDS": {"ID": 7}}},
    {"event": "ONCRMDEALUPDATE", "data": {"FIELDS": {"ID": "7"}}, "ts": 5},
    {"data": {"FIELDS": {"ID": "7"}}},
    {"event": "ONCRMDEALUPDATE", "ts": "1" * 40, "event_handler_id": "2" * 40, "extra": {"a": "b"}},
]


def serializer_says(body: dict) -> dict | str:
    serializer = CrmEventReceiveApi.InputSerializer(data=body, context={"side": "crm"})
    return dict(serializer.validated_data) if serializer.is_valid() else "invalid"


@pytest.mark.parametrize("body", BODIES)
def test_it_reads_a_body_as_the_input_serializer_does_or_leaves_it_to_it(body):
    try:
        plain = _plain_event_values(body, side="crm")
    except serializers.ValidationError:
        plain = "invalid"

    if plain is not None:
        assert plain == serializer_says(body)


@pytest.mark.parametrize("fixture", ["crm_deal_update", "crm_deal_add", "crm_deal_update_no_handler_id"])
def test_it_reads_every_body_bitrix_sends_without_the_serializer(fixture):
    body = BitrixFormParser().decode(event_body(fixture).decode())

    assert _plain_event_values(body, side="crm") == serializer_says(body)

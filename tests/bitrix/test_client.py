"""BitrixClient against mocked HTTP.

The bodies in fixtures/ copy the examples of the Bitrix REST docs (bitrix-tools/b24-rest-docs):
crm/deals/crm-deal-get.md and crm-deal-list.md, crm/universal/crm-item-get.md, sale/order/sale-order-list.md
and sale-order-update.md, sale/payment/sale-payment-get.md, settings/how-to-call-rest-api/batch.md and
_includes/system-errors.md. Only the 200040300020 description is ours: the docs give the code, not a text.
"""

import json
import logging
import pickle
import traceback
from unittest.mock import ANY

import pytest
import redis
import requests
import responses
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from responses import matchers

from statussync.bitrix import (
    AuthError,
    BatchResult,
    BitrixClient,
    BitrixError,
    DatabaseBucketStore,
    GcraLimiter,
    MemoryBucketStore,
    NotFoundError,
    OperatingLimitError,
    PermanentError,
    PortalClosedError,
    PortalMovedError,
    RateLimitedError,
    TransientError,
    classify_error,
    client_for,
    parse_bracket_query,
    redact,
)
from statussync.bitrix.moves import move_seen
from statussync.bitrix.transport import method_writes
from statussync.models import RateBucket

# --- single calls --------------------------------------------------------------------------------------


def test_it_returns_the_full_envelope(client, rsps, base_url, body):
    rsps.post(
        f"{base_url}crm.deal.get.json",
        json=body("crm_deal_get"),
        match=[
            matchers.json_params_matcher({"id": 410}),
            matchers.header_matcher({"Accept": "application/json", "User-Agent": "bxsync/0.1"}),
            matchers.request_kwargs_matcher({"timeout": 5.0}),
        ],
    )

    envelope = client.call("crm.deal.get", {"id": 410})

    assert envelope == body("crm_deal_get")
    assert envelope["result"]["STAGE_ID"] == "PREPARATION"
    assert client.calls == 1


def test_it_returns_only_the_result(client, rsps, base_url, body):
    rsps.post(f"{base_url}crm.deal.update.json", json=body("crm_deal_update"))

    assert client.result("crm.deal.update", {"id": 1, "fields": {"STAGE_ID": "WON"}}) is True


def test_it_adds_the_missing_trailing_slash(rsps, base_url, body):
    client = BitrixClient(portal="crm", base_url=base_url.rstrip("/"))
    rsps.post(f"{base_url}crm.deal.get.json", json=body("crm_deal_get"))

    client.call("crm.deal.get", {"id": 410})

    assert client.base_url == base_url


def test_it_sends_an_empty_json_object_without_params(client, rsps, base_url):
    rsps.post(f"{base_url}app.info.json", json={"result": {}}, match=[matchers.json_params_matcher({})])

    assert client.result("app.info") == {}


@pytest.mark.parametrize(
    ("status", "fixture", "expected", "code"),
    [
        pytest.param(
            503, "error_query_limit_exceeded", TransientError, "QUERY_LIMIT_EXCEEDED", id="503-limit"
        ),
        pytest.param(
            429, "error_operation_time_limit", OperatingLimitError, "OPERATION_TIME_LIMIT", id="429-time"
        ),
        pytest.param(503, "error_overload_limit", TransientError, "OVERLOAD_LIMIT", id="503-overload"),
        pytest.param(500, "error_internal_server_error", TransientError, "INTERNAL_SERVER_ERROR", id="500"),
        pytest.param(500, "error_portal_deleted", PortalClosedError, "PORTAL_DELETED", id="500-closed"),
        pytest.param(401, "error_no_auth_found", AuthError, "NO_AUTH_FOUND", id="401-no-auth"),
        pytest.param(401, "error_expired_token", AuthError, "expired_token", id="401-expired"),
        pytest.param(403, "error_insufficient_scope", AuthError, "insufficient_scope", id="403-scope"),
        pytest.param(
            403, "error_invalid_credentials", AuthError, "INVALID_CREDENTIALS", id="403-credentials"
        ),
        pytest.param(
            401, "error_invalid_credentials", AuthError, "INVALID_CREDENTIALS", id="401-credentials"
        ),
        pytest.param(400, "crm_deal_get_not_found", NotFoundError, "", id="400-deal-not-found"),
        pytest.param(400, "crm_deal_get_invalid_id", PermanentError, "", id="400-deal-bad-id"),
        pytest.param(400, "crm_deal_get_access_denied", AuthError, "", id="400-deal-access-denied"),
        pytest.param(400, "crm_item_get_not_found", NotFoundError, "NOT_FOUND", id="400-item-not-found"),
        pytest.param(400, "crm_item_get_access_denied", AuthError, "ACCESS_DENIED", id="400-item-denied"),
        pytest.param(
            400, "sale_order_update_not_found", NotFoundError, "200540400001", id="400-order-missing"
        ),
        pytest.param(
            400, "sale_payment_get_not_found", NotFoundError, "200640400001", id="400-payment-missing"
        ),
        # api-reference/sale/order/sale-order-get.md: its example says 200540400001, its table 201240400001.
        pytest.param(
            400, "sale_order_get_not_found", NotFoundError, "201240400001", id="400-order-get-missing"
        ),
        pytest.param(
            400, "sale_order_update_access_denied", AuthError, "200040300020", id="400-order-denied"
        ),
        pytest.param(400, "sale_order_list_error", PermanentError, "0", id="400-sale-code-0"),
        pytest.param(
            404, "error_method_not_found", PermanentError, "ERROR_METHOD_NOT_FOUND", id="404-method"
        ),
        pytest.param(
            200, "error_query_limit_exceeded", TransientError, "QUERY_LIMIT_EXCEEDED", id="200-error"
        ),
        pytest.param(200, "crm_deal_get_not_found", NotFoundError, "", id="200-not-found"),
    ],
)
def test_it_classifies_error_envelopes(client, rsps, base_url, body, status, fixture, expected, code):
    rsps.post(f"{base_url}crm.deal.get.json", json=body(fixture), status=status)

    with pytest.raises(BitrixError) as info:
        client.call("crm.deal.get", {"id": 410})

    error = info.value
    assert type(error) is expected
    assert (error.portal, error.method, error.http_status, error.code) == (
        "crm",
        "crm.deal.get",
        status,
        code,
    )
    assert error.description == body(fixture)["error_description"]
    assert client.calls == 1


@pytest.mark.parametrize(
    ("status", "code", "description", "expected"),
    [
        pytest.param(None, "QUERY_LIMIT_EXCEEDED", "Too many requests", TransientError, id="batch-sub-limit"),
        pytest.param(None, "", "Not found.", NotFoundError, id="trailing-period"),
        pytest.param(None, 200040300099, "", AuthError, id="sale-403-family"),
        pytest.param(400, 200540400002, "sale module absent", PermanentError, id="sale-module-absent"),
        # The sale pages' tables: every 2xxx40400001 is "<entity> not found", other 404s are not
        # (api-reference/sale/shipment/*: 201140400001; basket-items: 200140400006 "Module catalog ...").
        pytest.param(400, 201140400001, "Shipment not found", NotFoundError, id="sale-404-family"),
        pytest.param(400, 200140400006, "Module catalog does not exist", PermanentError, id="sale-404-other"),
        pytest.param(
            400, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded", PermanentError, id="batch"
        ),
        pytest.param(405, "ERROR_BATCH_METHOD_NOT_ALLOWED", "", PermanentError, id="batch-nested"),
        pytest.param(400, "INVALID_REQUEST", "Https required", PermanentError, id="https-required"),
        pytest.param(403, "allowed_only_intranet_user", "", AuthError, id="intranet-only"),
        pytest.param(403, "SOMETHING_NEW", "", AuthError, id="unknown-403"),
        pytest.param(503, "SOMETHING_NEW", "", TransientError, id="unknown-503"),
        pytest.param(None, "SOMETHING_NEW", "", PermanentError, id="unknown-no-status"),
    ],
)
def test_it_classifies_codes_and_statuses(status, code, description, expected):
    error = classify_error(portal="cms", method="m", http_status=status, code=code, description=description)

    assert type(error) is expected
    assert error.code == str(code)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (500, TransientError),
        (502, TransientError),
        (504, TransientError),
        (429, TransientError),
        (400, PermanentError),
        (404, PermanentError),
        (200, PermanentError),
    ],
)
def test_it_classifies_non_json_bodies_by_status(client, rsps, base_url, status, expected):
    rsps.post(f"{base_url}crm.deal.get.json", body="<html><h1>Bad Gateway</h1></html>", status=status)

    with pytest.raises(BitrixError) as info:
        client.call("crm.deal.get", {"id": 1})

    assert type(info.value) is expected
    assert info.value.http_status == status
    assert "non-JSON" in info.value.description


def test_it_treats_a_json_error_status_without_envelope_by_status(client, rsps, base_url):
    rsps.post(f"{base_url}crm.deal.get.json", json={"message": "upstream down"}, status=502)

    with pytest.raises(TransientError):
        client.call("crm.deal.get", {"id": 1})


def test_it_keeps_retry_after_when_sent(client, rsps, base_url, body):
    rsps.post(
        f"{base_url}crm.deal.get.json",
        json=body("error_query_limit_exceeded"),
        status=503,
        headers={"Retry-After": "7"},
    )

    with pytest.raises(TransientError) as info:
        client.call("crm.deal.get", {"id": 1})

    assert info.value.retry_after == 7.0


@pytest.mark.parametrize(
    "exc", [requests.exceptions.ReadTimeout("read timed out"), requests.exceptions.ConnectTimeout("slow")]
)
def test_it_raises_transient_on_timeout(client, rsps, base_url, exc):
    rsps.post(f"{base_url}crm.deal.get.json", body=exc)

    with pytest.raises(TransientError) as info:
        client.call("crm.deal.get", {"id": 1})

    assert info.value.http_status is None
    assert "timed out after 5s" in info.value.description
    assert client.calls == 1


def test_it_raises_transient_on_connection_error(client, rsps, base_url):
    rsps.post(f"{base_url}crm.deal.get.json", body=requests.ConnectionError("Connection refused"))

    with pytest.raises(TransientError) as info:
        client.call("crm.deal.get", {"id": 1})

    assert "connection failed" in info.value.description


def test_it_names_portal_method_status_and_code_in_str(client, rsps, base_url, body):
    rsps.post(f"{base_url}sale.order.update.json", json=body("sale_order_update_not_found"), status=400)

    with pytest.raises(NotFoundError) as info:
        client.call("sale.order.update", {"id": 300, "fields": {"statusId": "P"}})

    assert str(info.value) == ("[crm] sale.order.update: HTTP 400, error 200540400001: order is not exists")


def test_it_pickles_errors():
    error = NotFoundError(portal="cms", method="sale.order.get", http_status=400, code="200540400001")

    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes

    assert type(copy) is NotFoundError
    assert (copy.portal, copy.method, copy.http_status, copy.code) == (
        "cms",
        "sale.order.get",
        400,
        "200540400001",
    )
    assert str(copy) == str(error)


# --- the webhook code never leaks ----------------------------------------------------------------------


def test_it_never_leaks_the_webhook_code_from_a_connection_error(client, rsps, base_url, secret, caplog):
    # What requests really says: the path (with the code) in the message; add the full URL for good measure.
    message = (
        "HTTPSConnectionPool(host='shop.bitrix24.ru', port=443): Max retries exceeded with url: "
        f"/rest/7/{secret}/crm.deal.get.json (Caused by NewConnectionError('Failed to establish a new "
        f"connection: [Errno 111] Connection refused')) while calling {base_url}crm.deal.get.json"
    )
    rsps.post(f"{base_url}crm.deal.get.json", body=requests.ConnectionError(message))
    caplog.set_level(logging.DEBUG)

    with pytest.raises(TransientError) as info:
        client.call("crm.deal.get", {"id": 1})

    error = info.value
    rendered = [
        str(error),
        repr(error),
        *map(str, error.args),
        "".join(traceback.format_exception(error)),
        caplog.text,
        *(record.getMessage() for record in caplog.records),
    ]
    assert all(secret not in text for text in rendered)
    assert "/rest/7/***/crm.deal.get.json" in error.description
    assert "https://shop.bitrix24.ru/rest/***/crm.deal.get.json" in error.description
    assert error.__cause__ is None
    assert error.__context__ is None
    assert any(r.name == "statussync.bitrix" and "crm.deal.get" in r.getMessage() for r in caplog.records)


def test_it_never_leaks_the_webhook_code_from_a_proxy_page(client, rsps, base_url, secret, caplog):
    rsps.post(
        f"{base_url}crm.deal.get.json", body=f"<h1>502</h1> upstream {base_url}crm.deal.get.json", status=502
    )
    caplog.set_level(logging.DEBUG)

    with pytest.raises(TransientError) as info:
        client.call("crm.deal.get", {"id": 1})

    assert secret not in str(info.value)
    assert secret not in caplog.text


def test_it_redacts_the_base_url_and_the_bare_code(base_url, secret):
    text = f"POST {base_url}crm.deal.get.json failed; url: /rest/7/{secret}/batch.json; code {secret}"

    redacted = redact(text, base_url)

    assert redacted == (
        "POST https://shop.bitrix24.ru/rest/***/crm.deal.get.json failed; "
        "url: /rest/7/***/batch.json; code ***"
    )


def test_it_redacts_an_unusual_url_as_a_whole():
    text = "at https://h.example/hook/abc/x, url: /hook/abc/x"

    assert redact(text, "https://h.example/hook/abc/") == "at https://h.example/***/x, url: /***/x"


def test_it_keeps_the_url_out_of_configuration_errors(secret):
    with pytest.raises(ValueError, match="https://") as info:
        BitrixClient(portal="crm", base_url=f"shop.bitrix24.ru/rest/7/{secret}/")

    assert secret not in str(info.value)


# --- redirects (portal renamed) ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_it_repeats_a_read_once_at_the_new_address(client, rsps, base_url, secret, body, status, db):
    # settings/how-to-call-rest-api/change-domen.md: a renamed portal redirects; repeat the POST there.
    new_url = f"https://new-name.bitrix24.ru/rest/7/{secret}/crm.deal.get.json"
    rsps.post(f"{base_url}crm.deal.get.json", status=status, headers={"Location": new_url})
    rsps.post(new_url, json=body("crm_deal_get"), match=[matchers.json_params_matcher({"id": 410})])

    assert client.result("crm.deal.get", {"id": 410})["ID"] == "410"

    assert [call.request.method for call in rsps.calls] == ["POST", "POST"]
    assert client.calls == 2
    assert move_seen(portal="crm") == {"to": "https://new-name.bitrix24.ru", "confirmed": True, "at": ANY}


def test_it_never_resends_a_write_to_an_address_no_read_confirmed(client, rsps, base_url, secret, db):
    new_url = f"https://elsewhere.example.com/rest/7/{secret}/crm.deal.update.json"
    rsps.post(f"{base_url}crm.deal.update.json", status=302, headers={"Location": new_url})

    with pytest.raises(PortalMovedError) as moved:
        client.call("crm.deal.update", {"id": 123, "fields": {"STAGE_ID": "WON"}})

    assert isinstance(moved.value, TransientError)  # the job comes back, after its run's reads
    assert secret not in str(moved.value)
    assert client.calls == 1  # nothing sent to the new address
    assert move_seen(portal="crm")["confirmed"] is False


def test_it_resends_a_write_where_a_read_confirmed_the_portal(client, rsps, base_url, secret, body, db):
    new_base = f"https://new-name.bitrix24.ru/rest/7/{secret}/"
    params = {"id": 123, "fields": {"STAGE_ID": "C1:WON"}}
    for method, answer in (("crm.deal.get", "crm_deal_get"), ("crm.deal.update", "crm_deal_update")):
        rsps.post(f"{base_url}{method}.json", status=302, headers={"Location": f"{new_base}{method}.json"})
        rsps.post(f"{new_base}{method}.json", json=body(answer))

    client.call("crm.deal.get", {"id": 410})  # our webhook code answers there: the same portal
    assert client.result("crm.deal.update", params) is True

    assert client.calls == 4


def test_it_tells_a_write_from_a_read():
    assert method_writes("crm.deal.update", {})
    assert method_writes("sale.order.update", {})
    assert method_writes("crm.timeline.comment.add", {})
    assert not method_writes("crm.deal.list", {})
    assert not method_writes("sale.statusLang.list", {})
    assert method_writes("batch", {"cmd": {"a": "crm.deal.list?x=1", "b": "crm.deal.update?id=1"}})
    assert not method_writes("batch", {"cmd": ["crm.deal.get?id=1", "crm.deal.list"]})


def test_it_follows_a_relative_location(client, rsps, base_url, body):
    rsps.post(
        f"{base_url}crm.deal.get.json", status=302, headers={"Location": "/rest/7/other/crm.deal.get.json"}
    )
    rsps.post("https://shop.bitrix24.ru/rest/7/other/crm.deal.get.json", json=body("crm_deal_get"))

    assert client.result("crm.deal.get", {"id": 410})["ID"] == "410"


def test_it_does_not_follow_a_second_redirect(client, rsps, base_url, secret):
    new_url = f"https://new-name.bitrix24.ru/rest/7/{secret}/crm.deal.get.json"
    rsps.post(f"{base_url}crm.deal.get.json", status=302, headers={"Location": new_url})
    rsps.post(new_url, status=302, headers={"Location": f"{base_url}crm.deal.get.json"})

    with pytest.raises(PermanentError) as info:
        client.call("crm.deal.get", {"id": 1})

    assert "redirected twice" in info.value.description
    assert client.calls == 2


def test_it_refuses_a_redirect_to_plain_http(client, rsps, base_url, secret):
    rsps.post(
        f"{base_url}crm.deal.get.json",
        status=302,
        headers={"Location": f"http://new-name.bitrix24.ru/rest/7/{secret}/crm.deal.get.json"},
    )

    with pytest.raises(PermanentError) as info:
        client.call("crm.deal.get", {"id": 1})

    assert secret not in str(info.value)
    assert client.calls == 1


def test_it_refuses_a_redirect_without_location(client, rsps, base_url):
    rsps.post(f"{base_url}crm.deal.get.json", status=302)

    with pytest.raises(PermanentError, match="no Location"):
        client.call("crm.deal.get", {"id": 1})


# --- batch ---------------------------------------------------------------------------------------------


def test_it_runs_a_batch_with_results_and_errors(client, rsps, base_url, body):
    commands = {
        "u1": (
            "crm.deal.update",
            {"id": 123, "fields": {"STAGE_ID": "C1:WON"}, "params": {"REGISTER_SONET_EVENT": "N"}},
        ),
        "u2": ("crm.deal.update", {"id": 999, "fields": {"STAGE_ID": "C1:WON"}}),
        "u3": ("crm.deal.get", {"id": 0}),
        "o1": ("sale.order.update", {"id": 300, "fields": {"statusId": "P"}}),
        "list": ("crm.deal.list", {"filter": {"STAGE_ID": "C1:NEW"}, "select": ["ID", "STAGE_ID"]}),
    }
    expected_cmd = {
        "u1": "crm.deal.update?id=123&fields%5BSTAGE_ID%5D=C1%3AWON&params%5BREGISTER_SONET_EVENT%5D=N",
        "u2": "crm.deal.update?id=999&fields%5BSTAGE_ID%5D=C1%3AWON",
        "u3": "crm.deal.get?id=0",
        "o1": "sale.order.update?id=300&fields%5BstatusId%5D=P",
        "list": "crm.deal.list?filter%5BSTAGE_ID%5D=C1%3ANEW&select%5B0%5D=ID&select%5B1%5D=STAGE_ID",
    }
    rsps.post(
        f"{base_url}batch.json",
        json=body("batch_mixed"),
        match=[matchers.json_params_matcher({"halt": 0, "cmd": expected_cmd})],
    )

    result = client.batch(commands)

    assert result.results == {"u1": True, "list": [{"ID": "37", "STAGE_ID": "C1:NEW"}]}
    assert {key: type(error) for key, error in result.errors.items()} == {
        "u2": NotFoundError,
        "u3": PermanentError,
        "o1": NotFoundError,
    }
    assert result.errors["o1"].code == "200540400001"
    assert result.errors["o1"].method == "sale.order.update"
    assert result.errors["u2"].http_status is None
    assert result.totals == {"list": 120}
    assert result.nexts == {"list": 50}
    assert client.calls == 1


def test_it_encodes_sub_commands_as_the_docs_example():
    # [docs/bitrix.md "Parameter encoding"]: "crm.deal.update?id=123&fields[STAGE_ID]=C1:WON&..."
    documented = "id=123&fields[STAGE_ID]=C1:WON&params[REGISTER_SONET_EVENT]=N"
    ours = "id=123&fields%5BSTAGE_ID%5D=C1%3AWON&params%5BREGISTER_SONET_EVENT%5D=N"

    assert parse_bracket_query(ours) == parse_bracket_query(documented)


def test_it_splits_120_commands_into_3_requests(client, rsps, base_url):
    def reply(request):
        cmd = json.loads(request.body)["cmd"]
        results = {key: {"ID": command.split("=", 1)[1]} for key, command in cmd.items()}
        batch = {
            "result": results,
            "result_error": [],
            "result_total": [],
            "result_next": [],
            "result_time": [],
        }
        return 200, {}, json.dumps({"result": batch, "time": {}})

    rsps.add_callback(responses.POST, f"{base_url}batch.json", callback=reply)
    commands = {f"d{i}": ("crm.deal.get", {"id": i}) for i in range(120)}

    result = client.batch(commands)

    assert [len(json.loads(call.request.body)["cmd"]) for call in rsps.calls] == [50, 50, 20]
    assert result.results == {f"d{i}": {"ID": str(i)} for i in range(120)}
    assert result.errors == {}
    assert client.calls == 3


def test_it_stops_sending_chunks_after_an_error_when_halting(client, rsps, base_url):
    # Shape of the docs' "halt = 1" example: the first failing command, nothing after it.
    answer = {
        "result": {"d0": {"ID": "1"}},
        "result_error": {"d1": {"error": "", "error_description": "Not found"}},
        "result_total": [],
        "result_next": [],
        "result_time": [],
    }
    rsps.post(
        f"{base_url}batch.json",
        json={"result": answer, "time": {}},
        match=[matchers.json_params_matcher({"halt": 1}, strict_match=False)],
    )
    commands = {f"d{i}": ("crm.deal.get", {"id": i}) for i in range(60)}

    result = client.batch(commands, halt=True)

    assert client.calls == 1
    assert result.results == {"d0": {"ID": "1"}}
    assert list(result.errors) == ["d1"]
    assert isinstance(result.errors["d1"], NotFoundError)


def test_it_makes_no_request_for_an_empty_batch(client, rsps):
    assert client.batch({}) == BatchResult(results={}, errors={}, totals={}, nexts={})
    assert client.calls == 0


def test_it_reads_php_empty_arrays_in_a_batch_answer(client, rsps, base_url, body):
    # The docs' own example answers "result": [] and "result_total": [] when every command failed.
    rsps.post(f"{base_url}batch.json", json=body("batch_halt0_all_failed"))

    result = client.batch({"get_user": ("user.current", {}), "get_department": ("department.get", {})})

    assert result.results == {}
    assert result.totals == {}
    assert {key: type(error) for key, error in result.errors.items()} == {
        "get_user": AuthError,
        "get_department": AuthError,
    }
    assert result.errors["get_user"].code == "insufficient_scope"
    assert result.errors["get_user"].method == "user.current"


def test_it_maps_a_list_shaped_answer_to_numeric_keys(client, rsps, base_url):
    # PHP json_encode() writes an array keyed 0..n-1 as a JSON list.
    answer = {
        "result": [True, True],
        "result_error": [],
        "result_total": [],
        "result_next": [],
        "result_time": [],
    }
    rsps.post(f"{base_url}batch.json", json={"result": answer, "time": {}})

    result = client.batch({"0": ("crm.deal.update", {"id": 1}), "1": ("crm.deal.update", {"id": 2})})

    assert result.results == {"0": True, "1": True}


def test_it_raises_when_the_batch_request_itself_fails(client, rsps, base_url, body):
    rsps.post(f"{base_url}batch.json", json=body("error_query_limit_exceeded"), status=503)

    with pytest.raises(TransientError) as info:
        client.batch({"a": ("crm.deal.get", {"id": 1}), "b": ("crm.deal.get", {"id": 2})})

    assert info.value.method == "batch"


def test_it_calls_the_method_itself_for_a_batch_of_one(client, rsps, base_url, body):
    rsps.post(f"{base_url}crm.deal.get.json", json={"result": {"ID": "7"}, "time": {}})
    rsps.post(
        f"{base_url}sale.order.get.json",
        json={"error": 200540400001, "error_description": "order is not exists"},
        status=400,
    )

    found = client.batch({"d": ("crm.deal.get", {"id": 7})})
    missing = client.batch({"o": ("sale.order.get", {"id": 9})})

    assert found.results == {"d": {"ID": "7"}}
    assert isinstance(missing.errors["o"], NotFoundError)
    assert client.calls == 2
    rsps.post(f"{base_url}crm.deal.list.json", json=body("error_query_limit_exceeded"), status=503)
    with pytest.raises(TransientError):
        client.batch({"l": ("crm.deal.list", {})})


# --- list paging ---------------------------------------------------------------------------------------


def _page(template: dict, result, total: int, next_start: int | None) -> dict:
    page = {**template, "result": result, "total": total}
    page.pop("next", None)
    if next_start is not None:
        page["next"] = next_start
    return page


def test_it_pages_a_list_result_until_next_is_absent(client, rsps, base_url, body):
    template = body("crm_deal_list")
    row = template["result"][0]
    params = {"filter": {">DATE_MODIFY": "2024-09-01T00:00:00+03:00"}, "select": ["ID", "STAGE_ID"]}
    for start, next_start in ((0, 50), (50, 100), (100, None)):
        rows = [{**row, "ID": str(i)} for i in range(start + 1, min(start + 50, 120) + 1)]
        rsps.post(
            f"{base_url}crm.deal.list.json",
            json=_page(template, rows, 120, next_start),
            match=[matchers.json_params_matcher({**params, "start": start})],
        )

    deals = list(client.paging.list_all("crm.deal.list", params))

    assert [int(deal["ID"]) for deal in deals] == list(range(1, 121))
    assert client.calls == 3


@pytest.mark.parametrize("items_key", ["orders", None])
def test_it_pages_a_dict_shaped_result(client, rsps, base_url, body, items_key):
    template = body("sale_order_list")
    order = template["result"]["orders"][0]
    for start, next_start in ((0, 50), (50, 100), (100, None)):
        orders = [{**order, "id": i} for i in range(start + 1, min(start + 50, 120) + 1)]
        rsps.post(
            f"{base_url}sale.order.list.json",
            json=_page(template, {"orders": orders}, 120, next_start),
            match=[matchers.json_params_matcher({"filter": {"payed": "N"}, "start": start})],
        )

    orders = list(client.paging.list_all("sale.order.list", {"filter": {"payed": "N"}}, items_key=items_key))

    assert [o["id"] for o in orders] == list(range(1, 121))


def test_it_stops_paging_at_the_limit(client, rsps, base_url, body):
    template = body("crm_deal_list")
    for start in (0, 50):
        rows = [{"ID": str(i)} for i in range(start + 1, start + 51)]
        rsps.post(f"{base_url}crm.deal.list.json", json=_page(template, rows, 500, start + 50))

    deals = list(client.paging.list_all("crm.deal.list", limit=60))

    assert len(deals) == 60
    assert client.calls == 2


def test_it_yields_nothing_for_an_empty_php_array(client, rsps, base_url):
    rsps.post(f"{base_url}sale.order.list.json", json={"result": [], "total": 0, "time": {}})

    assert list(client.paging.list_all("sale.order.list", items_key="orders")) == []


def test_it_refuses_a_next_that_does_not_advance(client, rsps, base_url):
    rsps.post(f"{base_url}crm.deal.list.json", json={"result": [{"ID": "1"}], "total": 99, "next": 0})

    with pytest.raises(PermanentError, match="did not advance"):
        list(client.paging.list_all("crm.deal.list"))


def test_it_refuses_an_ambiguous_result(client, rsps, base_url):
    rsps.post(f"{base_url}x.list.json", json={"result": {"a": [], "b": []}, "total": 0})

    with pytest.raises(PermanentError, match="items_key"):
        list(client.paging.list_all("x.list"))


# --- rate limiter hook ---------------------------------------------------------------------------------


class CountingLimiter:
    def __init__(self, error: Exception | None = None) -> None:
        self.acquired = 0
        self.error = error

    def acquire(self) -> None:
        self.acquired += 1
        if self.error is not None:
            raise self.error


def test_it_acquires_the_limiter_once_per_http_request(rsps, base_url, body):
    limiter = CountingLimiter()
    client = BitrixClient(portal="crm", base_url=base_url, limiter=limiter)
    rsps.post(f"{base_url}crm.deal.get.json", json=body("crm_deal_get"))
    rsps.post(f"{base_url}batch.json", json=body("batch_ok"))

    client.call("crm.deal.get", {"id": 410})
    client.batch({f"d{i}": ("crm.deal.get", {"id": i}) for i in range(60)})

    assert limiter.acquired == 3 == client.calls


def test_it_raises_rate_limited_before_any_request(rsps, base_url):
    refusal = RateLimitedError(portal="crm", method="", description="local rate limit", retry_after=42.0)
    client = BitrixClient(portal="crm", base_url=base_url, limiter=CountingLimiter(refusal))

    with pytest.raises(RateLimitedError) as info:
        client.call("crm.deal.get", {"id": 1})

    assert (info.value.method, info.value.retry_after) == ("crm.deal.get", 42.0)
    assert isinstance(info.value, TransientError)
    assert client.calls == 0


def test_it_treats_an_unreachable_limiter_store_as_transient(rsps, base_url):
    limiter = CountingLimiter(redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379"))
    client = BitrixClient(portal="crm", base_url=base_url, limiter=limiter)

    with pytest.raises(TransientError, match="rate limiter unavailable"):
        client.call("crm.deal.get", {"id": 1})


def test_it_waits_for_the_limiter(rsps, base_url, body, clock):
    limiter = GcraLimiter(
        key="crm",
        rate=2.0,
        burst=2,
        max_wait=5.0,
        store=MemoryBucketStore(),
        clock=clock.time,
        sleep=clock.sleep,
    )
    client = BitrixClient(portal="crm", base_url=base_url, limiter=limiter)
    rsps.post(f"{base_url}crm.deal.get.json", json=body("crm_deal_get"))

    for _ in range(3):
        client.call("crm.deal.get", {"id": 410})

    assert clock.sleeps == [pytest.approx(0.5)]


# --- client_for ----------------------------------------------------------------------------------------


def test_it_builds_a_client_from_settings(settings, db):
    settings.BXSYNC_CRM_REST_URL = "https://b24.example.ru/rest/1/abc123"
    settings.BXSYNC_REST_TIMEOUT = 7.5
    settings.REDIS_URL = ""

    client = client_for("crm")

    assert (client.portal, client.base_url, client.timeout) == (
        "crm",
        "https://b24.example.ru/rest/1/abc123/",
        7.5,
    )
    assert isinstance(client.limiter, GcraLimiter)
    assert isinstance(client.limiter.store, DatabaseBucketStore)
    assert client.limiter.key == "b24.example.ru"  # the portal's bucket [docs/bitrix.md "Limits"]


@pytest.mark.django_db
def test_it_paces_real_requests_through_the_database_bucket(settings, rsps, body):
    settings.BXSYNC_CMS_REST_URL = "https://shop.example.ru/rest/1/abc123/"
    settings.REDIS_URL = ""
    rsps.post("https://shop.example.ru/rest/1/abc123/sale.order.get.json", json={"result": {"order": {}}})

    client_for("cms").call("sale.order.get", {"id": 1})

    assert RateBucket.objects.get(key="shop.example.ru").tat > 0


def test_it_accepts_a_text_choice_as_portal(settings, db):
    class Side(models.TextChoices):  # like statussync.models.Side
        CMS = "cms"

    settings.BXSYNC_CMS_REST_URL = "https://shop.example.ru/rest/1/abc123/"

    client = client_for(Side.CMS)

    assert type(client.portal) is str
    assert client.portal == "cms"


@pytest.mark.django_db  # without a webhook URL it looks for a portal connected as an application
def test_it_refuses_to_build_a_client_without_a_url(settings):
    settings.BXSYNC_CMS_REST_URL = ""

    with pytest.raises(ImproperlyConfigured, match="BXSYNC_CMS_REST_URL is not set"):
        client_for("cms")


def test_it_refuses_an_unknown_portal():
    with pytest.raises(ValueError, match="unknown portal"):
        client_for("erp")

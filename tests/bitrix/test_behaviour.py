"""The client adapts to what `bitrix doctor` found a portal to do where the docs leave it open
[docs/bitrix.md "Undocumented behaviours"]: one `PortalBehaviour` per portal, handed over by `client_for`."""

from __future__ import annotations

import pytest
from responses import matchers

from statussync.bitrix import BitrixClient, NotFoundError, PermanentError, client_for
from statussync.bitrix.behaviour import PortalBehaviour
from statussync.doctor.quirks import portal_quirks_store


@pytest.mark.parametrize(
    ("probed", "expected"),
    [
        ({}, PortalBehaviour()),
        (
            {"order_list_start_minus_one": False},
            PortalBehaviour(start_minus_one=False),
        ),
        ({"payment_list_array_filter": "ignored"}, PortalBehaviour(payment_array_filter=False)),
        ({"payment_list_array_filter": "refused"}, PortalBehaviour(payment_array_filter=False)),
        ({"payment_list_array_filter": "ok"}, PortalBehaviour()),
        (
            {"order_get_not_found_code": "201240400001"},
            PortalBehaviour(not_found_codes=frozenset({"201240400001"})),
        ),
        ({"datetime_offset_filter": "refused"}, PortalBehaviour(datetime_filter=False)),
        ({"datetime_offset_filter": "ignored"}, PortalBehaviour(datetime_filter=False)),
        ({"pipeline_move_changes_date_modify": False}, PortalBehaviour(move_changes_date_modify=False)),
        # A name of an older version is no answer: the default stays.
        ({"payment_list_order_array_filter": "refused"}, PortalBehaviour()),
    ],
)
def test_it_reads_each_stored_answer(probed, expected):
    assert PortalBehaviour.from_probed(probed) == expected


def test_it_pages_a_big_scan_with_start_zero_where_start_minus_one_is_refused(rsps, base_url):
    client = BitrixClient(portal="cms", base_url=base_url, behaviour=PortalBehaviour(start_minus_one=False))
    page = {"result": {"orders": [{"id": 5}]}, "total": 1, "time": {}}
    rsps.post(
        f"{base_url}sale.order.list.json",
        json=page,
        match=[matchers.json_params_matcher({"filter": {">id": 0}, "start": 0}, strict_match=False)],
    )

    pages = list(client.paging.pages_by_id("sale.order.list", {}, id_field="id", items_key="orders"))

    assert pages == [[{"id": 5}]]


def test_it_still_pages_with_start_minus_one_where_unprobed(rsps, base_url):
    client = BitrixClient(portal="cms", base_url=base_url)
    rsps.post(
        f"{base_url}sale.order.list.json",
        json={"result": {"orders": []}, "time": {}},
        match=[matchers.json_params_matcher({"start": -1}, strict_match=False)],
    )

    assert list(client.paging.pages_by_id("sale.order.list", {}, id_field="id", items_key="orders")) == []


def test_it_probes_an_outage_without_start_minus_one_where_refused(rsps, base_url):
    client = BitrixClient(portal="cms", base_url=base_url, behaviour=PortalBehaviour(start_minus_one=False))
    rsps.post(
        f"{base_url}sale.order.list.json",
        json={"result": {"orders": []}, "total": 0, "time": {}},
        match=[matchers.json_params_matcher({"start": 0}, strict_match=False)],
    )

    client.probe()


# Not a code of the documented family 2xxx40400001 (api-reference/sale/order/sale-order-get.md).
ODD_CODE = "ERROR_ORDER_NOT_FOUND"


def test_it_reads_the_not_found_code_doctor_saw_as_not_found(rsps, base_url):
    client = BitrixClient(
        portal="cms", base_url=base_url, behaviour=PortalBehaviour(not_found_codes=frozenset({ODD_CODE}))
    )
    rsps.post(
        f"{base_url}sale.order.get.json",
        status=400,
        json={"error": ODD_CODE.lower(), "error_description": "order not found"},
    )

    with pytest.raises(NotFoundError) as caught:
        client.call("sale.order.get", {"id": 9})
    assert (caught.value.code, caught.value.http_status) == (ODD_CODE.lower(), 400)


def test_it_leaves_that_code_permanent_where_doctor_never_saw_it(rsps, base_url):
    client = BitrixClient(portal="cms", base_url=base_url)
    rsps.post(
        f"{base_url}sale.order.get.json", status=400, json={"error": ODD_CODE, "error_description": "x"}
    )

    with pytest.raises(PermanentError) as caught:
        client.call("sale.order.get", {"id": 9})
    assert not isinstance(caught.value, NotFoundError)


def test_it_reads_that_code_as_not_found_inside_a_batch(rsps, base_url):
    client = BitrixClient(
        portal="cms", base_url=base_url, behaviour=PortalBehaviour(not_found_codes=frozenset({ODD_CODE}))
    )
    rsps.post(
        f"{base_url}batch.json",
        json={
            "result": {
                "result": {"b": {"order": {"id": 2}}},
                "result_error": {"a": {"error": ODD_CODE, "error_description": "order not found"}},
            },
            "time": {},
        },
    )

    out = client.batch({"a": ("sale.order.get", {"id": 1}), "b": ("sale.order.get", {"id": 2})})

    assert isinstance(out.errors["a"], NotFoundError)


def test_it_hands_each_client_what_doctor_stored_and_sees_a_new_run_at_once(db, settings):
    settings.BXSYNC_CMS_REST_URL = "https://shop.example.ru/rest/1/abc123"
    settings.REDIS_URL = ""
    assert client_for("cms").behaviour == PortalBehaviour()

    portal_quirks_store(portal="cms", found={"order_list_start_minus_one": False})

    assert client_for("cms").behaviour.start_minus_one is False


def test_it_does_not_read_the_database_for_each_client(db, settings, django_assert_num_queries):
    settings.BXSYNC_CMS_REST_URL = "https://shop.example.ru/rest/1/abc123"
    settings.REDIS_URL = ""
    client_for("cms")

    with django_assert_num_queries(0):
        client_for("cms")

"""Doctor's readings of the portals' answers, by tables of the response shapes the REST documentation shows
(each row names its page in bitrix24/b24restdocs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from statussync.bitrix import PermanentError
from statussync.doctor import interpret
from statussync.doctor.findings import Finding, verdict_of


@pytest.mark.parametrize(
    ("result", "needed", "missing"),
    [
        # api-reference/common/system/scope.md: "result": ["department", "entity", "log", "user"]
        (["department", "entity", "log", "user"], "crm", True),
        (["crm", "user"], "crm", False),
        (["sale"], "sale", False),
        ({"unexpected": "shape"}, "sale", True),
    ],
)
def test_it_reads_the_scopes_a_webhook_has(result, needed, missing):
    assert interpret.scopes_missing(result, needed=needed)[0] is missing


@pytest.mark.parametrize(
    ("result", "plan"),
    [
        # api-reference/common/system/app-info.md: LICENSE "de_ent10000", LICENSE_FAMILY "ent"
        ({"LICENSE": "de_ent10000", "LICENSE_TYPE": "ent10000", "LICENSE_FAMILY": "ent"}, (5.0, 250)),
        ({"LICENSE": "ru_pro100", "LICENSE_FAMILY": "pro"}, (2.0, 50)),
        ({"LICENSE": "de_basic"}, (2.0, 50)),
        ({}, None),
        (True, None),
    ],
)
def test_it_reads_the_plans_rest_limits(result, plan):
    found = interpret.plan_of(result)
    assert (found.rate, found.burst) == plan if plan else found is None


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        # api-reference/common/system/feature-get.md: {"value": "Y"}
        ({"value": "Y"}, True),
        ({"value": "N"}, False),
        ([], False),
    ],
)
def test_it_reads_a_feature(result, expected):
    assert interpret.feature_available(result) is expected


UF = "UF_CRM_ORDER_ID"


@pytest.mark.parametrize(
    ("result", "state"),
    [
        # api-reference/crm/deals/crm-deal-fields.md: user fields are {type, isMultiple, isDynamic: true, ...}
        ({UF: {"type": "string", "isMultiple": False, "isDynamic": True}}, "ok"),
        ({UF: {"type": "double", "isMultiple": False}}, "type"),
        ({UF: {"type": "string", "isMultiple": True}}, "multiple"),
        ({"TITLE": {"type": "string"}}, "missing"),
        ([], "missing"),
    ],
)
def test_it_reads_the_deal_order_field(result, state):
    assert interpret.order_field_verdict(result, field=UF).state == state


SENT = datetime(2024, 8, 5, 9, 2, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("result", "offset"),
    [
        # api-reference/common/system/server-time.md: "result": "2024-08-05T09:02:13+00:00"
        ("2024-08-05T09:02:13+00:00", 0.0),
        ("2024-08-05T12:02:13+03:00", 0.0),
        ("2024-08-05T09:04:13+00:00", 120.0),
        ("2024-08-05T09:02:13", None),  # no offset: not the documented form
        ("yesterday", None),
    ],
)
def test_it_measures_the_portals_clock_against_the_middle_of_the_call(result, offset):
    got = interpret.server_clock_offset(result, sent=SENT, received=SENT + timedelta(seconds=2))
    assert got == offset


def test_it_calls_one_second_noise_not_skew():
    assert not interpret.clock_outside(1.0, tolerance=0.0)
    assert not interpret.clock_outside(-2.0, tolerance=2.0)
    assert interpret.clock_outside(-2.5, tolerance=2.0)


def test_it_reads_the_events_an_application_is_bound_to():
    # api-reference/events/event-get.md: [{"event": "ONCRMLEADADD", "handler": "...", "offline": 0}]
    bound = [{"event": "ONCRMDEALUPDATE", "handler": "https://x/api/bitrix/crm/", "offline": 0}]
    needed = interpret.EVENTS_NEEDED["crm"]
    assert interpret.events_bound(bound, needed=needed) == ["ONCRMDEALADD", "ONCRMDEALDELETE"]


@pytest.mark.parametrize(
    ("code", "known"),
    [
        # api-reference/sale/order/sale-order-get.md: the example's 200540400001, the table's 201240400001
        ("200540400001", True),
        ("0", False),
    ],
)
def test_it_asks_the_client_whether_a_not_found_code_means_deleted(code, known):
    error = PermanentError(portal="cms", method="sale.order.get", http_status=400, code=code, description="x")
    assert interpret.not_found_code_known(error) is known


@pytest.mark.parametrize(
    ("order", "paid", "awaiting", "stuck"),
    [
        (["NEW", "PREPARATION", "PREPAYMENT_INVOICE", "WON"], "PREPAYMENT_INVOICE", {"N": "NEW"}, None),
        (["NEW", "PREPARATION", "PREPAYMENT_INVOICE", "WON"], "NEW", {"N": "NEW"}, ("N", "NEW")),
        (
            ["NEW", "PREPARATION", "PREPAYMENT_INVOICE"],
            "PREPARATION",
            {"N": "PREPAYMENT_INVOICE"},
            ("N", "PREPAYMENT_INVOICE"),
        ),
    ],
)
def test_it_finds_a_paid_stage_a_payment_cannot_reach(order, paid, awaiting, stuck):
    assert (
        interpret.paid_stage_reachable(stage_order=order, paid_stage=paid, awaiting_stages=awaiting) == stuck
    )


@pytest.mark.parametrize(
    ("levels", "verdict"),
    [(["ok", "note"], "healthy"), (["ok", "warning"], "warnings"), (["warning", "blocking"], "blocked")],
)
def test_it_gives_the_verdict_of_the_worst_finding(levels, verdict):
    findings = [Finding("x", "", level, "webhook_ok") for level in levels]
    assert verdict_of(findings) == verdict


def test_it_shows_the_fix_of_a_problem_and_none_of_a_pass():
    problem = Finding("scope", "crm", "blocking", "scope_missing", {"scope": "crm", "scopes": "user"})
    passed = Finding("scope", "crm", "ok", "scope_ok", {"scope": "crm", "scopes": "crm"})

    assert problem.fix == "Edit the inbound webhook and tick the crm scope; its URL stays the same."
    assert passed.fix == ""
    assert Finding.from_json({**problem.as_json(), "code": "gone_in_a_later_version"}) is None

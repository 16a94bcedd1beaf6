"""`bitrix doctor` against the sandbox portals: healthy as seeded, and each failure it names made to happen
with a sandbox switch (bitrix_sandbox/account.py)."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import pytest
from django.core.management import call_command

from statussync.doctor import doctor_report_latest, doctor_run, portal_quirks_get, roundtrip
from statussync.doctor.findings import BLOCKING, NOTE, WARNING
from statussync.mapping.store import mapping_import
from tests.support.mappings import DESIGN_EXAMPLE


def found(result, code: str) -> list:
    return [f for f in result.findings if f.code == code]


def blocking_codes(result) -> set[str]:
    return {f.code for f in result.findings if f.level == BLOCKING}


def test_it_finds_the_seeded_sandbox_healthy(sb):
    result = doctor_run()

    assert result.verdict == "healthy", [(f.code, f.message) for f in result.findings if f.level != "ok"]
    assert {"webhook_ok", "scope_ok", "admin_ok", "crm_read_ok", "field_ok", "mapping_ok", "clock_ok"} <= {
        f.code for f in result.findings
    }
    (field,) = found(result, "field_ok")
    assert field.params["filled"] == 3
    assert doctor_report_latest().verdict == "healthy"


def test_it_exits_zero_and_prints_a_stable_json_shape_when_healthy(sb, capsys):
    call_command("bitrix", "doctor", "--json")

    report = json.loads(capsys.readouterr().out)
    assert report["version"] == 1
    assert report["verdict"] == "healthy"
    assert report["blocking"] is False
    assert set(report["quirks"]) == {"cms", "crm"}
    first = report["findings"][0]
    assert set(first) == {"check", "portal", "level", "code", "params", "message", "fix"}


def test_it_exits_non_zero_when_the_crm_webhook_lacks_its_scope(sb, capsys):
    sb.set_account("crm", scopes=["user"])

    with pytest.raises(SystemExit) as exited:
        call_command("bitrix", "doctor")

    assert exited.value.code == 1
    out = capsys.readouterr().out
    assert "the webhook lacks the crm scope (it has: user)" in out
    assert "Edit the inbound webhook and tick the crm scope" in out
    assert out.rstrip().endswith("Bitrix doctor: syncing is blocked: 1 problem(s) to fix")


def test_it_says_the_shop_needs_an_administrator(sb):
    sb.set_account("shop", admin=False)

    result = doctor_run()

    assert "admin_needed" in blocking_codes(result)
    assert "200040300010" in found(result, "admin_needed")[0].message


def test_it_names_a_missing_deal_field_and_how_to_create_it(sb):
    sb.set_account("crm", order_field_listed=False)

    result = doctor_run()

    (missing,) = found(result, "field_missing")
    assert missing.level == BLOCKING
    assert "UF_CRM_ORDER_ID" in missing.message
    assert "BXSYNC_DEAL_ORDER_FIELD" in missing.fix


def test_it_warns_of_a_deal_field_that_is_not_a_string(sb):
    sb.set_account("crm", order_field_type="double")

    result = doctor_run()

    assert found(result, "field_type")[0].level == WARNING
    assert result.verdict == "warnings"


def test_it_names_a_mapped_stage_the_crm_deleted(sb):
    sb.set_account("crm", deleted_stages=["PREPARATION"])

    result = doctor_run()

    (missing,) = found(result, "stage_missing")
    assert missing.params == {"stage": "PREPARATION", "pipeline": 0}
    assert not found(result, "mapping_ok")


def test_it_names_a_paid_stage_a_payment_cannot_reach(sb):
    document = json.loads(json.dumps(DESIGN_EXAMPLE))
    document["pipelines"][0]["paid_stage"] = "NEW"  # where awaiting-payment orders' deals already are
    mapping_import(data=document)

    result = doctor_run()

    (stuck,) = found(result, "paid_stage_unreachable")
    assert stuck.params["status"] == "N"
    assert stuck.level == BLOCKING


def test_it_warns_of_a_clock_off_by_two_minutes(sb):
    sb.set_account("crm", clock_skew=120)

    result = doctor_run()

    (skew,) = found(result, "clock_skew")
    assert skew.portal == "crm"
    assert skew.params["seconds"] in ("+119", "+120", "+121")
    assert found(result, "clocks_apart")
    assert result.verdict == "warnings"


def test_it_says_a_wrong_webhook_code_and_an_unset_url(sb, settings):
    settings.BXSYNC_CMS_REST_URL = sb.shop_url.replace(sb.shop.webhook_code, "wrongcode")
    settings.BXSYNC_CRM_REST_URL = ""

    result = doctor_run()

    assert {"webhook_refused", "webhook_missing"} <= blocking_codes(result)
    assert "wrongcode" not in json.dumps([f.as_json() for f in result.findings])


def test_it_remembers_the_undocumented_answers_of_each_portal(sb):
    sb.set_account(
        "shop", start_minus_one="error", payment_array_filter="ignored", order_not_found_code=201240400001
    )

    doctor_run()

    quirks = portal_quirks_get(portal="cms")
    assert quirks["order_list_start_minus_one"] is False
    assert quirks["payment_list_array_filter"] == "ignored"
    assert quirks["order_get_not_found_code"] == "201240400001"
    assert quirks["datetime_offset_filter"] == "ok"
    assert portal_quirks_get(portal="crm") == {"datetime_offset_filter": "ok"}


def test_it_warns_when_a_portal_ignores_the_datetime_filter_reconciliation_reads(sb):
    sb.set_account("crm", datetime_offset_filter="ignored")

    result = doctor_run()

    assert found(result, "datetime_filter_ignored")[0].level == WARNING
    assert result.verdict == "warnings"
    assert portal_quirks_get(portal="crm")["datetime_offset_filter"] == "ignored"


def test_it_compares_the_plan_with_bxsyncs_pacing(sb, settings):
    sb.set_account("both", license="ru_ent250")

    result = doctor_run()

    assert {f.params["rate"] for f in found(result, "plan_rate_below")} == {"5"}
    settings.BXSYNC_RATE_PER_SECOND = 5
    sb.set_account("both", license="ru_basic")

    assert {f.params["rate"] for f in found(doctor_run(), "plan_rate_above")} == {"2"}


def test_it_renders_a_stored_report_in_the_readers_language(sb):
    from django.utils import translation

    sb.set_account("crm", scopes=["user"])
    doctor_run()

    with translation.override("ru"):
        (missing,) = found(doctor_report_latest(), "scope_missing")
        assert "crm" in missing.message
        assert missing.message != "the webhook lacks the crm scope (it has: user)"


@pytest.fixture
def events_to_bxsync(sb, live_server, settings):
    """The CRM's outgoing webhook pointed at a live bxsync, with the token bxsync expects."""
    settings.BXSYNC_CRM_APP_TOKEN = sb.crm_token
    sb.crm.configure_events(handler_url=f"{live_server.url}/api/bitrix/crm/")
    yield sb
    # Every event delivered before the test's tables are flushed: a post still writing would lock SQLite's
    # flush, and the next tests would find this one's rows.
    sb.crm.events.wait_idle(timeout=30)
    sb.crm.configure_events(handler_url="")


@pytest.fixture
def round_trip(events_to_bxsync, live_server, monkeypatch):
    """`doctor_run(round_trip=True, ...)` beside the live server, on either leg.

    On the embedded leg Django's live server answers in a thread that shares SQLite's in-memory test
    connection with the test's own, so a request's transaction and doctor's queries would interleave on that
    one connection. They take turns here: the server handles a request while doctor sleeps between its polls
    (the only time it waits for the server), never while doctor reads or writes. PostgreSQL gives each thread
    its own connection; the turns cost nothing there."""
    turn = threading.Lock()
    app = live_server.thread.httpd.get_app()

    def one_request(environ, start_response):
        with turn:
            response = app(environ, start_response)
            try:
                return list(response)  # the whole body, and its request_finished, within the turn
            finally:
                getattr(response, "close", lambda: None)()

    def sleep(seconds: float) -> None:
        turn.release()
        try:
            time.sleep(seconds)
        finally:
            turn.acquire()

    live_server.thread.httpd.set_app(one_request)
    monkeypatch.setattr(roundtrip, "time", SimpleNamespace(monotonic=time.monotonic, sleep=sleep))

    def run(**kwargs):
        with turn:
            return doctor_run(round_trip=True, **kwargs)

    return run


@pytest.mark.django_db(transaction=True)
def test_it_sends_a_test_event_round_trip_and_undoes_the_change(events_to_bxsync, round_trip):
    sb = events_to_bxsync
    deal = sb.crm.create_deal(title="test deal", emit=False)

    result = round_trip(deal_id=deal["ID"], timeout=10)

    (trip,) = found(result, "round_trip_ok")
    assert trip.params["deal"] == deal["ID"]
    after = sb.crm.get_deal(int(deal["ID"]))
    assert (after["COMMENTS"], after["CATEGORY_ID"], after["STAGE_ID"]) == ("", "0", deal["STAGE_ID"])
    assert portal_quirks_get(portal="crm")["pipeline_move_changes_date_modify"] is True


@pytest.mark.django_db(transaction=True)
def test_it_learns_that_a_pipeline_move_leaves_date_modify(events_to_bxsync, round_trip):
    sb = events_to_bxsync
    sb.set_account("crm", move_changes_date_modify=False)
    deal = sb.crm.create_deal(title="test deal", emit=False)

    result = round_trip(deal_id=deal["ID"], timeout=10)

    assert found(result, "move_date_modify_no")[0].level == NOTE
    assert portal_quirks_get(portal="crm")["pipeline_move_changes_date_modify"] is False


def test_it_blocks_when_the_test_event_never_arrives(sb):
    _order, deal_id = sb.seed(1, orders_without_deal=0, deals_without_order=0)[0]

    result = doctor_run(round_trip=True, deal_id=str(deal_id), timeout=0.5)

    assert "round_trip_lost" in blocking_codes(result)
    assert sb.crm.get_deal(deal_id)["COMMENTS"] == ""
    # A linked deal is not moved between pipelines.
    assert found(result, "quirk_unprobed")[0].params["why"] == "deal_linked"

"""The dashboard's portal check: Support read the newest report, Sync managers may run it again."""

from __future__ import annotations

import re
from datetime import timedelta
from unittest.mock import Mock

import pytest
from django.utils import timezone

from statussync.doctor import background
from statussync.doctor.background import (
    CHECK_STALE_SECONDS,
    CHECKING,
    doctor_check_run,
    doctor_check_start,
)
from statussync.doctor.findings import Finding
from statussync.doctor.run import DoctorResult, doctor_report_store
from statussync.models import DoctorReport
from statussync.tasks import doctor_check

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/dashboard/"
# doctor's stored names (statussync/bitrix/behaviour.py): a page says what they mean instead.
INTERNAL_NAME = re.compile(r"\b\w+_(minus_one|array_filter|found_code|offset_filter|date_modify)\b|>[YN]<")
AGAIN = "/admin/doctor/"


def stored_report() -> None:
    findings = [
        Finding("webhook", "cms", "ok", "webhook_ok"),
        Finding("scope", "crm", "blocking", "scope_missing", {"scope": "crm", "scopes": "user"}),
    ]
    doctor_report_store(result=DoctorResult(findings, timezone.now()))


def test_it_shows_support_the_newest_report_with_its_fix_and_no_button(support_client):
    stored_report()

    html = support_client.get(DASHBOARD).content.decode()

    assert "Bitrix doctor: syncing is blocked: 1 problem(s) to fix" in html
    assert "the webhook lacks the crm scope (it has: user)" in html
    assert "Fix: Edit the inbound webhook and tick the crm scope" in html
    assert 'action="/admin/doctor/"' not in html


def test_it_refuses_support_a_new_check(support_client):
    assert support_client.post(AGAIN).status_code == 403


def test_it_checks_again_in_the_background_saying_checking_then_the_new_verdict(
    settings, monkeypatch, django_capture_on_commit_callbacks, manager_client
):
    settings.BXSYNC_CMS_REST_URL = ""
    settings.BXSYNC_CRM_REST_URL = ""
    enqueued = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: enqueued.append(args))
    client = manager_client
    assert 'action="/admin/doctor/"' in client.get(DASHBOARD).content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(AGAIN, follow=True)

    html = response.content.decode()
    assert "Checking the portals in the background" in html
    assert "Checking… (started" in html
    assert 'action="/admin/doctor/"' not in html  # no second check while one runs
    assert "Bitrix doctor:" not in html  # nothing ran inside the request
    (check,) = DoctorReport.objects.all()
    assert enqueued == [("statussync.tasks.doctor_check", check.id)]

    doctor_check(check.id)  # the worker's task

    html = client.get(DASHBOARD).content.decode()
    assert "Checking…" not in html
    assert "BXSYNC_CMS_REST_URL is not set: bxsync cannot reach this portal" in html
    assert "Bitrix doctor: syncing is blocked: 3 problem(s) to fix" in html  # two webhooks, and no mapping
    assert 'action="/admin/doctor/"' in html


def test_it_starts_one_check_however_often_the_button_is_pressed(
    django_capture_on_commit_callbacks, manager_client
):
    client = manager_client

    client.post(AGAIN)
    html = client.post(AGAIN, follow=True).content.decode()

    assert "A check of the portals is already running." in html
    assert DoctorReport.objects.filter(verdict=CHECKING).count() == 1


def test_it_runs_a_check_once_though_its_task_comes_twice(settings):
    settings.BXSYNC_CMS_REST_URL = ""
    settings.BXSYNC_CRM_REST_URL = ""
    check, _ = doctor_check_start(base_url="", started_by="alice")

    assert doctor_check_run(report_id=check.id) is not None
    assert doctor_check_run(report_id=check.id) is None
    assert DoctorReport.objects.get().verdict == "blocked"


def test_it_gives_up_on_a_check_whose_task_never_came(manager_client):
    check, _ = doctor_check_start(base_url="", started_by="alice")
    DoctorReport.objects.filter(id=check.id).update(
        created_at=timezone.now() - timedelta(seconds=CHECK_STALE_SECONDS + 1)
    )

    html = manager_client.get(DASHBOARD).content.decode()

    assert "Checking…" not in html
    assert 'action="/admin/doctor/"' in html


def test_it_says_a_check_could_not_finish(monkeypatch, support_client):
    check, _ = doctor_check_start(base_url="", started_by="alice")
    monkeypatch.setattr(background, "doctor_run", Mock(side_effect=RuntimeError("database gone")))

    with pytest.raises(RuntimeError):
        doctor_check_run(report_id=check.id)

    html = support_client.get(DASHBOARD).content.decode()
    assert "could not finish" in html
    assert "Checking…" not in html


def test_it_says_when_the_portals_were_never_checked(support_client):
    html = support_client.get(DASHBOARD).content.decode()

    assert "The portals have not been checked yet." in html


def report_with_behaviours() -> None:
    findings = [
        Finding("plan", "cms", "note", "offline_events", {"available": "Y"}),
        Finding(
            "quirks",
            "crm",
            "note",
            "quirk_unprobed",
            {"quirk": "pipeline_move_changes_date_modify", "why": "needs_round_trip"},
        ),
    ]
    quirks = {
        "cms": {"order_list_start_minus_one": False, "payment_list_array_filter": "refused"},
        "crm": {"datetime_offset_filter": "ok", "pipeline_move_changes_date_modify": True},
    }
    doctor_report_store(result=DoctorResult(findings, timezone.now(), quirks))


def test_it_says_what_each_portal_does_in_words_and_never_its_stored_names(support_client):
    report_with_behaviours()

    html = support_client.get(DASHBOARD).content.decode()

    assert "A pipeline move changes the deal&#x27;s modification date: yes" in html
    assert "The shop lists orders without counting them (start=-1): no" in html
    assert "The shop filters payments by several ids at once: no, it refuses the filter" in html
    assert "offline events (for an application): available" in html
    assert "A pipeline move changes the deal&#x27;s modification date: not probed" in html
    assert INTERNAL_NAME.search(html) is None, INTERNAL_NAME.search(html)


def test_it_says_what_each_portal_does_in_russian(support_client):
    report_with_behaviours()

    html = support_client.get(DASHBOARD, HTTP_ACCEPT_LANGUAGE="ru").content.decode()

    assert "Перенос в другую воронку меняет дату изменения сделки: да" in html
    assert "офлайн-события (для приложения): доступны" in html
    assert INTERNAL_NAME.search(html) is None

"""The dashboard's portal check: Support read the newest report, Sync managers may run it again."""

from __future__ import annotations

import pytest
from django.utils import timezone

from statussync.doctor.findings import Finding
from statussync.doctor.run import DoctorResult, doctor_report_store

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/dashboard/"
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


def test_it_lets_a_manager_check_again_and_shows_the_new_verdict(manager_client, settings):
    settings.BXSYNC_CMS_REST_URL = ""
    settings.BXSYNC_CRM_REST_URL = ""
    assert 'action="/admin/doctor/"' in manager_client.get(DASHBOARD).content.decode()

    response = manager_client.post(AGAIN, follow=True)

    html = response.content.decode()
    assert "BXSYNC_CMS_REST_URL is not set: bxsync cannot reach this portal" in html
    assert "Bitrix doctor: syncing is blocked: 3 problem(s) to fix" in html  # two webhooks, and no mapping


def test_it_says_when_the_portals_were_never_checked(support_client):
    html = support_client.get(DASHBOARD).content.decode()

    assert "The portals have not been checked yet." in html

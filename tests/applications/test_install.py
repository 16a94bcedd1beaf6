"""The installation callback: the portal posts the first token pair when its administrator saves the local
application (settings/app-installation/local-apps/installation-callback.md). A public URL anyone can post
to: believed only for a portal a manager set up, from its address, with a token that works there."""

from __future__ import annotations

from django.test import Client

from phpquery import http_build_query
from statussync.applications import application_connect_start
from statussync.bitrix import client_for
from statussync.models import ConnectedPortal, ConnectionState

URL = "/api/bitrix/app/install/crm/"


def _keys_entered(sb) -> None:
    app = sb.crm.app
    application_connect_start(
        portal="crm", address=sb.crm.base_url, client_id=app.client_id, client_secret=app.client_secret
    )


def _post(auth: dict[str, str]) -> int:
    body = http_build_query({"event": "ONAPPINSTALL", "data": {"VERSION": "1"}, "auth": auth})
    return Client().post(URL, body, content_type="application/x-www-form-urlencoded").status_code


def _auth(sb, access: str, refresh: str) -> dict[str, str]:
    return {
        "access_token": access,
        "refresh_token": refresh,
        "client_endpoint": f"{sb.crm.base_url}/rest/",
        "member_id": sb.crm.app.member_id,
        "application_token": sb.crm.app.application_token,
    }


def test_it_connects_with_the_tokens_the_portal_posts_on_installation(sb) -> None:
    _keys_entered(sb)
    access, refresh, _ = sb.crm.app.tokens_issue()

    assert _post(_auth(sb, access, refresh)) == 200

    row = ConnectedPortal.objects.get(portal="crm")
    assert row.state == ConnectionState.CONNECTED
    assert len(row.bound_events) == 4
    assert client_for("crm").result("crm.deal.list", {"filter": {"ID": 0}}) == []


def test_it_refuses_a_token_that_does_not_work_on_the_portal(sb) -> None:
    _keys_entered(sb)

    assert _post(_auth(sb, "forged", "forged")) == 403

    assert ConnectedPortal.objects.get(portal="crm").state == ConnectionState.NEW


def test_it_refuses_tokens_of_another_address_or_an_unknown_portal(sb) -> None:
    access, refresh, _ = sb.crm.app.tokens_issue()
    assert _post(_auth(sb, access, refresh)) == 403  # nobody entered keys for the CRM
    _keys_entered(sb)

    assert _post({**_auth(sb, access, refresh), "client_endpoint": "https://evil.example/rest/"}) == 403
    assert Client().post("/api/bitrix/app/install/erp/", {}).status_code == 404


def test_it_is_posted_the_first_pair_by_the_sandbox_when_the_application_is_saved(sb, receiver) -> None:
    assert sb.crm.app_install_post(f"{receiver.url}/install") == 200

    [posted] = receiver.events("ONAPPINSTALL")
    assert sb.crm.app.token_check(posted.fields["auth[access_token]"]) is None
    assert posted.fields["auth[member_id]"] == sb.crm.app.member_id

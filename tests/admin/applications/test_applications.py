"""The admin's Connect: a Sync manager connects the CRM as an application through the browser's sign-in
round trip (settings/oauth/index.md); Support sees it and changes nothing; the secret is never shown."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import requests
from django.core.cache import cache

from statussync.models import ConnectedPortal, ConnectionState

URL = "/admin/statussync/connectedportal/"


def _form(sb, **changes: str) -> dict[str, str]:
    app = sb.crm.app
    return {
        "portal": "crm",
        "address": sb.crm.base_url,
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "intake_mode": "pull",
        "oauth_server": sb.crm.base_url,
        **changes,
    }


def _round_trip(client, response) -> object:
    """The browser follows Connect to the portal, signs in there and comes back with the code."""
    assert response.status_code == 302, response.content[:2000]
    at_portal = requests.get(response["Location"], allow_redirects=False, timeout=5)
    assert at_portal.status_code == 302
    back = urlsplit(at_portal.headers["Location"])
    return client.get(f"{back.path}?{back.query}")


def test_it_connects_the_crm_through_the_sign_in_round_trip(manager_client, sb) -> None:
    sb.crm.app.configure(redirect_uri=f"http://testserver{URL}connect/done/")
    page = manager_client.get(f"{URL}add/")
    assert f"http://testserver{URL}connect/done/".encode() in page.content  # what to paste in Bitrix

    done = _round_trip(manager_client, manager_client.post(f"{URL}add/", _form(sb)))

    assert done.status_code == 302
    row = ConnectedPortal.objects.get(portal="crm")
    assert row.state == ConnectionState.CONNECTED
    listing = manager_client.get(URL).content.decode()
    assert "ONCRMDEALMOVETOCATEGORY" in listing
    assert sb.crm.app.client_secret not in manager_client.get(f"{URL}{row.pk}/change/").content.decode()


def test_it_keeps_the_stored_secret_when_the_field_is_left_empty_and_disconnects(manager_client, sb) -> None:
    sb.crm.app.configure(redirect_uri=f"http://testserver{URL}connect/done/")
    _round_trip(manager_client, manager_client.post(f"{URL}add/", _form(sb)))
    row = ConnectedPortal.objects.get(portal="crm")

    again = _round_trip(
        manager_client, manager_client.post(f"{URL}{row.pk}/change/", _form(sb, client_secret=""))
    )
    assert again.status_code == 302
    assert ConnectedPortal.objects.get(pk=row.pk).state == ConnectionState.CONNECTED

    manager_client.post(f"{URL}{row.pk}/disconnect/")
    row.refresh_from_db()
    assert row.state == ConnectionState.DISCONNECTED
    assert "disconnected by" in row.state_reason
    assert sb.crm.app.info()["bindings"] == []


def test_it_says_so_when_the_sign_in_is_unknown(manager_client, sb) -> None:
    answer = manager_client.get(f"{URL}connect/done/?code=x&state=forged", follow=True)
    assert "unknown" in answer.content.decode()
    assert not ConnectedPortal.objects.filter(state=ConnectionState.CONNECTED).exists()


def test_it_shows_support_the_connection_but_lets_them_change_nothing(
    support_client, manager_client, sb
) -> None:
    sb.crm.app.configure(redirect_uri=f"http://testserver{URL}connect/done/")
    _round_trip(manager_client, manager_client.post(f"{URL}add/", _form(sb)))
    row = ConnectedPortal.objects.get(portal="crm")

    page = support_client.get(f"{URL}{row.pk}/change/")
    assert page.status_code == 200
    assert b'value="Connect"' not in page.content
    assert support_client.post(f"{URL}{row.pk}/change/", _form(sb)).status_code == 403
    assert support_client.post(f"{URL}{row.pk}/disconnect/").status_code == 403
    assert support_client.get(f"{URL}connect/done/?code=x&state=y").status_code == 403
    assert ConnectedPortal.objects.get(pk=row.pk).state == ConnectionState.CONNECTED


def test_it_shows_the_queue_depth_the_portal_counts_for_one_request_every_few_seconds(
    sb, manager_client
) -> None:
    cache.delete("bxsync:offline-depth:crm")
    client = manager_client
    sb.crm.app.configure(redirect_uri=f"http://testserver{URL}connect/done/")
    _round_trip(client, client.post(f"{URL}add/", _form(sb)))
    for _, deal_id in sb.seed(3, pipeline_share=0.0, orders_without_deal=0, deals_without_order=0):
        sb.crm.move_deal(deal_id, "PREPARATION")
    sb.reset_counters()

    listing = client.get(URL).content.decode()
    client.get(f"{URL}{ConnectedPortal.objects.get(portal='crm').pk}/change/")

    assert re.search(r'class="field-queue">3<', listing), listing
    assert sb.crm.metrics.get("rest_calls", "event.offline.list") == 1  # the second page used the cache
    assert sb.crm.app.depth() == 3  # reading the depth reserved nothing

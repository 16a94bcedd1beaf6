"""Helpers of the application-mode tests: the sign-in round trip against a sandbox portal, no browser."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import requests

from bitrix_sandbox.rest import Portal
from statussync.applications import application_connect_finish, application_connect_start
from statussync.models import ConnectedPortal, IntakeMode

CALLBACK = "http://testserver/admin/statussync/connectedportal/connect/done/"


def connect(
    portal: Portal, side: str, *, intake_mode: str = IntakeMode.PULL, events_url: str = ""
) -> ConnectedPortal:
    """What the manager's browser does: Connect, sign in on the portal, come back with the code."""
    portal.app.configure(redirect_uri=CALLBACK)
    url = application_connect_start(
        portal=side,
        address=portal.base_url,
        client_id=portal.app.client_id,
        client_secret=portal.app.client_secret,
        intake_mode=intake_mode,
        oauth_server=portal.base_url,  # the sandbox portal is its own authorization server
        events_url=events_url,
    )
    answer = requests.get(url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    query = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}
    return application_connect_finish(state=query["state"], code=query["code"])

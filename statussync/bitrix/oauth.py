"""OAuth 2.0 of a Bitrix24 local application: the authorization URL and the token endpoint.

The user signs in on the portal, ``https://<portal>/oauth/authorize/?client_id&state``, and comes back with
a one-time ``code``; the code and later each refresh token are exchanged at the authorization server's
``/oauth/token/`` for a new pair (settings/oauth/index.md, settings/oauth/auto-renewal.md). The access
token lives an hour; the refresh token is replaced on every renewal, so the old one must never be used
again. Cloud and on-premises differ: the cloud portal proxies ``/oauth/token/`` to ``oauth.bitrix.info``, a
self-hosted one may not, so renew at ``oauth.bitrix.info`` for both
(settings/cloud-and-on-premise/on-premise/index.md "Bitrix24 Authorization Server"); an isolated self-hosted
portal with its own provider (settings/cloud-and-on-premise/on-premise/custom-auth-provider.md) names its own.

Every value in these requests is a secret (the client secret, the code, the tokens): no message built here
carries the URL or the query.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests

from .errors import AuthError, TransientError

log = logging.getLogger("statussync.bitrix")

# What the authorization server answers when the grant is no good any more (settings/oauth/error-codes.md):
# the application removed, its keys changed, the refresh token used or expired, the payment due.
TOKEN_REFUSALS = frozenset({"invalid_client", "invalid_grant", "invalid_request", "payment_required"})


@dataclass(frozen=True)
class TokenPair:
    """The authorization server's answer, as bxsync keeps it."""

    access_token: str
    refresh_token: str
    client_endpoint: str
    member_id: str
    expires_in: int

    def __repr__(self) -> str:  # the tokens are secrets
        return f"<TokenPair for {self.member_id or '?'}>"


def authorize_url(*, address: str, client_id: str, state: str) -> str:
    """Where the browser goes to sign in on the portal and come back with a code (settings/oauth/index.md)."""
    return f"{address.rstrip('/')}/oauth/authorize/?{urlencode({'client_id': client_id, 'state': state})}"


def token_request(
    *, server: str, client_id: str, client_secret: str, grant: dict[str, str], timeout: float = 20.0
) -> TokenPair:
    """Exchange ``grant`` (``{"grant_type": "authorization_code", "code": ...}`` or
    ``{"grant_type": "refresh_token", "refresh_token": ...}``) for a new token pair.

    Raises ``AuthError`` when the server refuses (its ``error`` code kept), ``TransientError`` when it cannot
    be reached or answers 5xx.
    """
    params = {**grant, "client_id": client_id, "client_secret": client_secret}
    url = f"{server.rstrip('/')}/oauth/token/"
    try:
        response = requests.get(url, params=params, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        failure = TransientError(
            portal="oauth", method="oauth/token", description=f"{type(exc).__name__} (no answer)"
        )
    else:
        return _token_answer(response)
    log.info("%s", failure)  # raised outside the except block: the exception carries the query
    raise failure


def _token_answer(response: requests.Response) -> TokenPair:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if response.status_code >= 500 or not isinstance(body, dict):
        raise TransientError(
            portal="oauth", method="oauth/token", http_status=response.status_code, description="no JSON"
        )
    if "error" in body or not body.get("access_token"):
        code = str(body.get("error") or "")
        raise AuthError(
            portal="oauth",
            method="oauth/token",
            http_status=response.status_code,
            code=code,
            description=str(body.get("error_description") or "no token in the answer")[:200],
        )
    return TokenPair(
        access_token=str(body["access_token"]),
        refresh_token=str(body.get("refresh_token") or ""),
        client_endpoint=str(body.get("client_endpoint") or ""),
        member_id=str(body.get("member_id") or ""),
        expires_in=int(body.get("expires_in") or 3600),
    )

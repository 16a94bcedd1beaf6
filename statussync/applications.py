"""Portals connected as a Bitrix24 local application: connect, tokens, bound events, disconnect.

A Sync manager enters the portal's address and the application's client id and secret, the browser signs in
on the portal and comes back with a code (settings/oauth/index.md); bxsync keeps the tokens server-side, binds
the events it needs (api-reference/events/event-bind.md) and renews the pair when the portal says
``expired_token`` (settings/oauth/auto-renewal.md). A removed application or a revoked token disconnects the
portal with the reason; nothing is retried forever. The tokens and the client secret are never logged.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from statussync.bitrix import AuthError, BitrixClient, BitrixError, limiter_for
from statussync.bitrix.oauth import TokenPair, authorize_url, token_request
from statussync.events import EVENT_KINDS
from statussync.models import ConnectedPortal, ConnectionState, IntakeMode, Job, JobState

log = logging.getLogger("statussync.applications")

# The source key of bxsync's own changes: bound with the offline handlers and sent with every call, so the
# portal does not queue what bxsync itself wrote
# (api-reference/events/offline-events.md "How to Avoid Cycles").
AUTH_CONNECTOR = "bxsync"
# A refused token that will not come back by itself: an unknown token, a removed application
# (_includes/system-errors.md; the SDK's BitrixAPIInvalidToken).
_LOST_CODES = frozenset({"invalid_token", "no_auth_found", "wrong_client", "not_installed"})


class StoredTokens:
    """The ``TokenSource`` of one connected portal: signs calls, renews once for every process, gives up."""

    def __init__(self, connection: ConnectedPortal) -> None:
        self.connection_id = connection.pk
        self.portal = connection.portal
        self._access = connection.access_token
        pulls = connection.intake_mode == IntakeMode.PULL
        self.auth_connector = AUTH_CONNECTOR if pulls else ""

    def __repr__(self) -> str:
        return f"<StoredTokens {self.portal}>"

    def sign(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with ``auth`` (settings/oauth/index.md) and, pulling, the ``auth_connector``."""
        signed = {**body, "auth": self._access}
        if self.auth_connector:
            signed.setdefault("auth_connector", self.auth_connector)
        return signed

    def renew(self, *, stale: dict[str, Any]) -> None:
        """Renew after ``expired_token``: one renewal, whichever process asks first (``tokens_renew``)."""
        self._access = tokens_renew(connection_id=self.connection_id, stale=str(stale.get("auth") or ""))

    def refused(self, error: AuthError) -> None:
        """An unknown token or a removed application disconnects the portal; other refusals (a missing
        scope, a user without rights) only turn health red, as for a webhook."""
        if error.code.lower() in _LOST_CODES:
            application_lost(connection_id=self.connection_id, reason=f"{error.code}: {error.description}")


def application_client(*, portal: str, priority: bool = False, timeout: float | None = None) -> Any:
    """A ``BitrixClient`` for ``portal`` if it is connected as an application; None if it never was.

    A disconnected portal raises ``AuthError``: its jobs are held, as for a refused webhook, until a manager
    connects it again."""
    from django.conf import settings

    connection = ConnectedPortal.objects.filter(portal=portal).exclude(state=ConnectionState.NEW).first()
    if connection is None:
        return None
    if connection.state != ConnectionState.CONNECTED:
        raise AuthError(
            portal=portal, method="-", code="DISCONNECTED", description=connection.state_reason[:200]
        )
    return BitrixClient(
        portal=portal,
        base_url=connection.client_endpoint,
        timeout=timeout or float(getattr(settings, "BXSYNC_REST_TIMEOUT", 20.0)),
        limiter=limiter_for(portal, priority=priority),
        auth=StoredTokens(connection),
    )


def tokens_renew(*, connection_id: int, stale: str) -> str:
    """Renew the tokens of a connected portal, once for all processes; returns the access token to use.

    The row lock (PostgreSQL ``SELECT ... FOR UPDATE``; SQLite's write lock, taken at ``BEGIN IMMEDIATE``)
    makes the others wait; whoever then finds a token other than ``stale`` uses it without asking again:
    each refresh token is good for one renewal (settings/oauth/auto-renewal.md). A refusal disconnects the
    portal and raises ``AuthError``; an unreachable server raises ``TransientError`` and changes nothing.
    """
    refusal: AuthError | None = None
    with transaction.atomic():
        row = ConnectedPortal.objects.select_for_update().get(pk=connection_id)
        if row.state != ConnectionState.CONNECTED:
            refusal = AuthError(portal=row.portal, method="oauth/token", code="DISCONNECTED")
        elif row.access_token != stale:
            return row.access_token
        else:
            grant = {"grant_type": "refresh_token", "refresh_token": row.refresh_token}
            try:
                pair = token_request(
                    server=row.oauth_server,
                    client_id=row.client_id,
                    client_secret=row.client_secret,
                    grant=grant,
                )
            except AuthError as error:
                refusal = error
                _state_set(row, ConnectionState.DISCONNECTED, f"renewal refused: {error.code or error}")
            else:
                _tokens_keep(row, pair)
                log.info("[%s] application tokens renewed", row.portal)
                return row.access_token
    assert refusal is not None
    raise refusal


def application_connect_start(
    *,
    portal: str,
    address: str,
    client_id: str,
    client_secret: str = "",
    intake_mode: str = IntakeMode.PULL,
    oauth_server: str = "",
    events_url: str = "",
) -> str:
    """Keep the application's keys and return the portal's sign-in URL, with a fresh ``state``.

    An empty ``client_secret`` keeps the one stored (the admin never shows it back)."""
    row = ConnectedPortal.objects.filter(portal=portal).first() or ConnectedPortal(portal=portal)
    row.address = address.rstrip("/")
    row.client_id = client_id
    row.client_secret = client_secret or row.client_secret
    row.intake_mode = intake_mode
    row.events_url = events_url or row.events_url
    row.oauth_server = oauth_server or row.oauth_server or "https://oauth.bitrix.info/"
    row.oauth_state = secrets.token_urlsafe(24)
    row.save()
    return authorize_url(address=row.address, client_id=row.client_id, state=row.oauth_state)


def application_connect_finish(*, state: str, code: str) -> ConnectedPortal:
    """The browser is back with ``code``: exchange it (valid 30 s, settings/oauth/index.md), keep the
    tokens, bind the events, and release the jobs held while the portal was not connected.

    Raises ``ConnectedPortal.DoesNotExist`` for an unknown ``state`` and ``BitrixError`` if the exchange or
    the binding fails (the portal stays disconnected, with the reason)."""
    if not state:
        raise ConnectedPortal.DoesNotExist("no sign-in under way")
    row = ConnectedPortal.objects.get(oauth_state=state)
    row.oauth_state = ""
    grant = {"grant_type": "authorization_code", "code": code}
    try:
        pair = token_request(
            server=row.oauth_server, client_id=row.client_id, client_secret=row.client_secret, grant=grant
        )
    except BitrixError as error:
        _state_set(row, ConnectionState.DISCONNECTED, f"sign-in refused: {error.code or error}")
        raise
    _tokens_keep(row, pair)
    _state_set(row, ConnectionState.CONNECTED, "")
    from statussync.intake_pull import application_events_ensure

    try:
        application_events_ensure(connection=row)
    except BitrixError as error:
        _state_set(row, ConnectionState.DISCONNECTED, f"binding events failed: {error}")
        raise
    Job.objects.filter(state=JobState.PENDING).update(not_before=timezone.now())
    return row


class _InstallToken:
    """The ``TokenSource`` of a token to check: no renewal, no connection to disconnect."""

    def __init__(self, access_token: str) -> None:
        self._access = access_token

    def __repr__(self) -> str:
        return "<_InstallToken>"

    def sign(self, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "auth": self._access}

    def renew(self, *, stale: dict[str, Any]) -> None:
        raise AuthError(portal="-", method="oauth/token", code="expired_token")

    def refused(self, error: AuthError) -> None:
        """Nothing to disconnect: the caller refuses the callback."""


def application_install(*, portal: str, auth: Any) -> ConnectedPortal:
    """The installation callback: the portal posts the first token pair when the administrator saves the
    local application (settings/app-installation/local-apps/installation-callback.md).

    Anyone can post to a public URL, so the post is believed only for a portal whose keys a manager entered,
    from that portal's address, with a token that works there. Raises ``PermissionError`` otherwise."""
    row = ConnectedPortal.objects.filter(portal=portal).first()
    auth = auth if isinstance(auth, dict) else {}
    endpoint = urlsplit(str(auth.get("client_endpoint") or ""))
    if row is None or endpoint.netloc.lower() != urlsplit(row.address).netloc.lower():
        raise PermissionError("no such portal connection")
    access, refresh = str(auth.get("access_token") or ""), str(auth.get("refresh_token") or "")
    probe = BitrixClient(portal=portal, base_url=f"{row.address}/rest/", auth=_InstallToken(access))
    try:
        probe.result("event.get")
    except BitrixError as error:
        raise PermissionError(f"the token does not work on {portal}: {error.code}") from None
    row.application_token = str(auth.get("application_token") or "")[:64]
    pair = TokenPair(access, refresh, f"{row.address}/rest/", str(auth.get("member_id") or ""), 3600)
    _tokens_keep(row, pair)
    _state_set(row, ConnectionState.CONNECTED, "")
    from statussync.intake_pull import application_events_ensure

    application_events_ensure(connection=row)
    return row


def application_removed(*, portal: str) -> None:
    """``ONAPPUNINSTALL`` from the portal (api-reference/common/events/on-app-uninstall.md): disconnected."""
    row = ConnectedPortal.objects.filter(portal=portal).first()
    if row is not None:
        application_lost(connection_id=row.pk, reason="the application was removed from the portal")


def application_disconnect(*, portal: str, reason: str) -> None:
    """Disconnect on purpose: unbind bxsync's events (best effort), forget the tokens."""
    row = ConnectedPortal.objects.filter(portal=portal).first()
    if row is None:
        return
    if row.state == ConnectionState.CONNECTED:
        from statussync.intake_pull import application_events_unbind

        try:
            application_events_unbind(connection=row)
        except BitrixError as error:
            log.info("[%s] unbinding on disconnect failed: %s", portal, error)
    _state_set(ConnectedPortal.objects.get(pk=row.pk), ConnectionState.DISCONNECTED, reason)


def application_lost(*, connection_id: int, reason: str) -> None:
    """The portal refused bxsync for good (application removed, token revoked): disconnected, with why."""
    row = ConnectedPortal.objects.filter(pk=connection_id, state=ConnectionState.CONNECTED).first()
    if row is not None:
        log.warning("[%s] application disconnected: %s", row.portal, reason)
        _state_set(row, ConnectionState.DISCONNECTED, reason)


def application_wake_believed(*, portal: str, application_token: str) -> bool:
    """Whether an ONOFFLINEEVENT for ``portal`` may wake the puller: the portal is connected in pull mode
    and, where the application token is known, the event carries it (compared in constant time)."""
    row = ConnectedPortal.objects.filter(
        portal=portal, state=ConnectionState.CONNECTED, intake_mode=IntakeMode.PULL
    ).first()
    if row is None:
        return False
    return not row.application_token or secrets.compare_digest(
        row.application_token.encode(), application_token.encode()
    )


def pull_events(*, portal: str) -> list[str]:
    """The events bxsync binds on ``portal``: every event it reacts to (``events.EVENT_KINDS``), the
    application-only ``ONCRMDEALMOVETOCATEGORY`` included."""
    return sorted(EVENT_KINDS[portal])


def _tokens_keep(row: ConnectedPortal, pair: TokenPair) -> None:
    row.access_token = pair.access_token
    row.refresh_token = pair.refresh_token or row.refresh_token
    row.client_endpoint = pair.client_endpoint or f"{row.address}/rest/"
    row.member_id = pair.member_id or row.member_id
    row.renewed_at = timezone.now()
    row.save()


def _state_set(row: ConnectedPortal, state: str, reason: str) -> None:
    row.state = state
    row.state_reason = reason[:300]
    row.state_changed_at = timezone.now()
    if state == ConnectionState.DISCONNECTED:
        row.access_token = row.refresh_token = ""
    row.save()

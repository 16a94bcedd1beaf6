"""Intake in pull mode: the offline-event queue of a portal connected as an application, read into the same
table the webhook endpoints store into.

api-reference/events/offline-events.md: the portal keeps one record per changed object; ``event.offline.get``
with ``clear=0`` reserves a batch under a ``process_id``, ``event.offline.clear`` deletes what was handled,
``event.offline.error`` sets aside what cannot be (event-offline-get.md, -clear.md, -error.md). bxsync
stores every record (``events.event_receive``: the event row and its job, one transaction) before clearing
it, so a crash between the two only reads it again; the reserved batch's ``process_id`` is kept on the
portal's row and re-selected after a restart (``process_id`` parameter of ``event.offline.get``). Without
the ``rest_offline_extended`` feature, records are read and cleared at once and stored right after: a crash
in between loses them, and reconciliation finds those changes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.utils import timezone

from statussync.applications import AUTH_CONNECTOR, application_client, pull_events
from statussync.bitrix import BitrixClient, BitrixError, PermanentError
from statussync.events import event_kind, event_receive
from statussync.health import portal_contact_record
from statussync.models import ConnectedPortal, ConnectionState, IntakeMode

log = logging.getLogger("statussync.intake")

PULL_LIMIT = 50  # event.offline.get's default and largest page (event-offline-get.md)
# The admin's queue depth costs a request of the portal's budget: one per portal per this many seconds,
# however many pages are open.
QUEUE_DEPTH_SECONDS = 5
# ONOFFLINEEVENT's minTimeout: the portal posts it at most once in this many seconds
# (api-reference/events/on-offline-event.md "Notification Frequency"; 1 is its default).
WAKE_MIN_TIMEOUT = 1
WAKE_EVENT = "ONOFFLINEEVENT"


@dataclass(frozen=True)
class PullResult:
    """What one read of the queue did."""

    read: int = 0
    stored: int = 0
    failed: int = 0

    @property
    def full(self) -> bool:
        """A whole page came back: more is probably waiting, read again at once."""
        return self.read >= PULL_LIMIT


def application_events_ensure(*, connection: ConnectedPortal) -> list[str]:
    """Bind every event bxsync needs that the portal does not list (``event.get``), as offline handlers with
    bxsync's ``auth_connector``; note whether reserve-then-clear is available. Returns the bound events.

    Run on connect and at every start of the pull process: an application update drops its bindings
    (event-bind.md: "they must be set from scratch").
    """
    client = _client(connection)
    listed = client.result("event.get") or []
    if connection.intake_mode == IntakeMode.PUSH:
        bound = _online_bind(connection, client, listed)
    else:
        bound = {str(row.get("event", "")).upper() for row in listed if str(row.get("offline", "0")) == "1"}
        for event in pull_events(portal=connection.portal):
            if event not in bound:
                client.result(
                    "event.bind", {"event": event, "event_type": "offline", "auth_connector": AUTH_CONNECTOR}
                )
                bound.add(event)
        if connection.events_url:
            bound |= _wake_bind(connection, client, listed)
    feature = client.result("feature.get", {"CODE": "rest_offline_extended"}) or {}
    connection.offline_extended = str(feature.get("value", "")).upper() == "Y"
    connection.bound_events = sorted(bound)
    connection.save(update_fields=["offline_extended", "bound_events"])
    return connection.bound_events


def _online_bind(connection: ConnectedPortal, client: BitrixClient, listed: list[Any]) -> set[str]:
    """Push mode: online handlers at bxsync's event endpoint, ``ONAPPUNINSTALL`` too. Their events carry the
    application's token, which the portal gives only to the installation callback: without it every event
    would be refused, and Bitrix never sends one again."""
    if not connection.application_token or not connection.events_url:
        raise PermanentError(
            portal=connection.portal,
            method="event.bind",
            description="push needs bxsync's public address and the application token, which the portal "
            "sends only to the installation callback: use pull, or set the initial installation path",
        )
    handler = _handler(connection)
    bound = {str(row.get("event", "")).upper() for row in listed if row.get("handler") == handler}
    for event in [*pull_events(portal=connection.portal), "ONAPPUNINSTALL"]:
        if event not in bound:
            client.result("event.bind", {"event": event, "handler": handler})
            bound.add(event)
    return bound


def _wake_bind(connection: ConnectedPortal, client: BitrixClient, listed: list[Any]) -> set[str]:
    """Pull mode where bxsync is reachable: ONOFFLINEEVENT at bxsync's wake endpoint, so a change is read
    at once rather than at the next poll (api-reference/events/on-offline-event.md)."""
    handler = _wake_handler(connection)
    if any(str(r.get("event", "")).upper() == WAKE_EVENT and r.get("handler") == handler for r in listed):
        return {WAKE_EVENT}
    client.result(
        "event.bind", {"event": WAKE_EVENT, "handler": handler, "options": {"minTimeout": WAKE_MIN_TIMEOUT}}
    )
    return {WAKE_EVENT}


def _wake_handler(connection: ConnectedPortal) -> str:
    return f"{connection.events_url.rstrip('/')}/api/bitrix/app/wake/{connection.portal}/"


def _handler(connection: ConnectedPortal) -> str:
    return f"{connection.events_url.rstrip('/')}/api/bitrix/{connection.portal}/"


def application_events_unbind(*, connection: ConnectedPortal) -> None:
    """Unbind bxsync's handlers (on disconnect)."""
    client = _client(connection)
    for event in connection.bound_events or pull_events(portal=connection.portal):
        if connection.intake_mode == IntakeMode.PUSH:
            client.result("event.unbind", {"event": event, "handler": _handler(connection)})
        elif event == WAKE_EVENT:
            client.result("event.unbind", {"event": event, "handler": _wake_handler(connection)})
        else:
            client.result("event.unbind", {"event": event, "event_type": "offline"})
    connection.bound_events = []
    connection.save(update_fields=["bound_events"])


def offline_events_pull(*, portal: str) -> PullResult:
    """Read one page of ``portal``'s offline queue, store each record as an event, clear what was stored.

    Raises ``BitrixError`` when the portal cannot be read (the caller waits and tries again)."""
    connection = ConnectedPortal.objects.filter(
        portal=portal, state=ConnectionState.CONNECTED, intake_mode=IntakeMode.PULL
    ).first()
    if connection is None:
        return PullResult()
    client = _client(connection, priority=True)
    if not connection.offline_extended:
        answer = client.result("event.offline.get", {"limit": PULL_LIMIT, "auth_connector": AUTH_CONNECTOR})
        records = list((answer or {}).get("events") or [])
        stored = [r for r in records if _record_store(portal=portal, record=r)]
        return _pulled(connection, len(records), len(stored))
    params: dict[str, Any] = {"clear": 0, "limit": PULL_LIMIT, "auth_connector": AUTH_CONNECTOR}
    if connection.process_id:
        params["process_id"] = connection.process_id  # a batch reserved before a crash: read it again
    answer = client.result("event.offline.get", params) or {}
    records = list(answer.get("events") or [])
    process_id = str(answer.get("process_id") or "")
    if not records:
        if connection.process_id:
            ConnectedPortal.objects.filter(pk=connection.pk).update(process_id="")
        return _pulled(connection, 0, 0)
    if process_id != connection.process_id:
        connection.process_id = process_id
        ConnectedPortal.objects.filter(pk=connection.pk).update(process_id=process_id)
    stored = []
    failed: list[Any] = []
    for record in records:
        (stored if _record_store(portal=portal, record=record) else failed).append(record)
    if failed:
        message_ids = [str(r.get("MESSAGE_ID")) for r in failed]
        client.result("event.offline.error", {"process_id": process_id, "message_id": message_ids})
        log.warning("[%s] %d offline records could not be stored; marked as errors", portal, len(failed))
    if stored:
        client.result("event.offline.clear", {"process_id": process_id, "id": [str(r["ID"]) for r in stored]})
    ConnectedPortal.objects.filter(pk=connection.pk).update(process_id="")
    return _pulled(connection, len(records), len(stored))


def pull_round(*, checked: set[str], portals: set[str] | None = None) -> bool:
    """Read every portal connected in pull mode once (or those of ``portals``: the ones whose portal woke
    bxsync); True when a page came back full (read again now).

    A portal not in ``checked`` first has its bindings checked and repaired (``event.get``): at every start
    of the pull process, since an application update drops them."""
    more = False
    connected = ConnectedPortal.objects.filter(state=ConnectionState.CONNECTED, intake_mode=IntakeMode.PULL)
    if portals is not None:
        connected = connected.filter(portal__in=portals)
    for connection in connected:
        try:
            if connection.portal not in checked:
                application_events_ensure(connection=connection)
                checked.add(connection.portal)
            result = offline_events_pull(portal=connection.portal)
        except BitrixError as error:
            log.info("[%s] reading the offline queue failed: %s", connection.portal, error)
            portal_contact_record(portal=connection.portal, error=error)
            continue
        if result.read:
            portal_contact_record(portal=connection.portal)
        more = more or result.full
    return more


def _record_store(*, portal: str, record: Any) -> bool:
    """Store one offline record like a webhook's event; False for a record bxsync cannot read."""
    if not isinstance(record, dict):
        return False
    event = str(record.get("EVENT_NAME") or "").upper()
    data = record.get("EVENT_DATA")
    fields = data.get("FIELDS") if isinstance(data, dict) else None
    entity_id = str((fields or {}).get("ID") or "")
    if not event or (event_kind(side=portal, event=event) and not entity_id.isdigit()):
        return False
    event_receive(
        side=portal,
        event=event,
        entity_id=entity_id,
        ts=str(record.get("TIMESTAMP_X") or "")[:20],
        event_handler_id=f"offline:{record.get('ID', '')}",
        payload={"event": event, "data": data, "offline": {"id": record.get("ID")}},
    )
    return True


def offline_queue_depth(*, portal: str) -> int | None:
    """How many records wait in ``portal``'s offline queue (set-aside errors not counted); None when the
    portal is not connected in pull mode or cannot be read now.

    ``event.offline.list`` reads the queue without reserving anything and answers ``total`` with its first
    page (api-reference/events/event-offline-list.md). Asked only when someone looks (the admin), cached
    for ``QUEUE_DEPTH_SECONDS``; the last answer is kept on the portal's row for when the portal is away."""
    key = f"bxsync:offline-depth:{portal}"
    cached = cache.get(key)
    if cached is not None:
        return int(cached)
    connection = ConnectedPortal.objects.filter(
        portal=portal, state=ConnectionState.CONNECTED, intake_mode=IntakeMode.PULL
    ).first()
    if connection is None:
        return None
    try:
        answer = _client(connection).call(
            "event.offline.list", {"filter": {"ERROR": 0}, "auth_connector": AUTH_CONNECTOR}
        )
    except BitrixError as error:
        log.info("[%s] reading the offline queue's depth failed: %s", portal, error)
        return None
    depth = int(answer.get("total") or len(answer.get("result") or []))
    cache.set(key, depth, timeout=QUEUE_DEPTH_SECONDS)
    ConnectedPortal.objects.filter(pk=connection.pk).update(queue_depth=depth)
    return depth


def _pulled(connection: ConnectedPortal, read: int, stored: int) -> PullResult:
    ConnectedPortal.objects.filter(pk=connection.pk).update(last_pull_at=timezone.now())
    return PullResult(read=read, stored=stored, failed=read - stored)


def _client(connection: ConnectedPortal, *, priority: bool = False) -> BitrixClient:
    client = application_client(portal=connection.portal, priority=priority)
    assert client is not None  # the connection is there
    return client

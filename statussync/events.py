"""Storing Bitrix outgoing-webhook events and turning them into pending jobs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F

from statussync.jobs import job_request
from statussync.models import InboundEvent, JobKind, Side

# Which events mean work, and for what. Events carry only an id [R: api-reference/crm/deals/events/index.md];
# ONPAYMENTENTITYSAVED carries a *payment* id [R: api-reference/sale/events/index.md].
EVENT_KINDS: dict[str, dict[str, str]] = {
    Side.CMS: {
        "ONSALEORDERSAVED": JobKind.ORDER,
        "ONPAYMENTENTITYSAVED": JobKind.PAYMENT,
        "ONORDERDELETED": JobKind.ORDER,
    },
    Side.CRM: {
        "ONCRMDEALUPDATE": JobKind.DEAL,
        "ONCRMDEALADD": JobKind.DEAL,
        "ONCRMDEALDELETE": JobKind.DEAL,
        "ONCRMDEALMOVETOCATEGORY": JobKind.DEAL,
    },
}

# Never stored: credentials that come with app events [R: api-reference/events/index.md].
SECRET_AUTH_KEYS = {"application_token", "access_token", "refresh_token"}


class EventError(ValueError):
    """The body is well-formed but is not a usable Bitrix event (400)."""


@dataclass(frozen=True)
class EventReceipt:
    status: str  # stored, duplicate or ignored
    event: str
    entity_id: str


def event_receive(*, side: str, payload: dict[str, Any]) -> EventReceipt:
    """Store one event and request the job it implies. Duplicates are counted, and still make sure the
    entity is queued: re-reading it is harmless, and a real second change within one `ts` second must not
    be lost."""
    event = str(payload.get("event") or "").strip().upper()
    if not event:
        raise EventError("no 'event' field")
    data = payload.get("data")
    fields = data.get("FIELDS") if isinstance(data, dict) else None
    entity_id = str(fields.get("ID") or "").strip() if isinstance(fields, dict) else ""
    kind = EVENT_KINDS[side].get(event)
    if kind and (not entity_id or not entity_id.isdigit()):
        raise EventError("no numeric data[FIELDS][ID]")
    ts = str(payload.get("ts") or "")[:20]
    handler = str(payload.get("event_handler_id") or "")[:20]
    dedupe_key = f"{side}:{event}:{entity_id}:{ts}:{handler}"[:200]

    with transaction.atomic():
        status = "stored" if kind else "ignored"
        try:
            with transaction.atomic():
                InboundEvent.objects.create(
                    side=side,
                    event=event[:64],
                    entity_id=entity_id[:32],
                    ts=ts,
                    dedupe_key=dedupe_key,
                    payload=_without_secrets(payload),
                )
        except IntegrityError:
            InboundEvent.objects.filter(dedupe_key=dedupe_key).update(duplicates=F("duplicates") + 1)
            status = "duplicate"
        if kind:
            job_request(kind=kind, entity_id=entity_id, origin="event", event=event)
    return EventReceipt(status=status, event=event, entity_id=entity_id)


def _without_secrets(payload: dict[str, Any]) -> dict[str, Any]:
    clean = dict(payload)
    auth = clean.get("auth")
    if isinstance(auth, dict):
        clean["auth"] = {k: v for k, v in auth.items() if k not in SECRET_AUTH_KEYS}
    return clean

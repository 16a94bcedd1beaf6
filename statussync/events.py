"""Storing Bitrix outgoing-webhook events and turning them into pending jobs."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from statussync.jobs import job_requested, job_upsert
from statussync.models import InboundEvent, JobKind, Side
from statussync.sqlite_turns import sqlite_write_turn
from statussync.upsert import Upsert, upserts_atomic, upserts_run

# Which events mean work, and for what. Events carry only an id
# (https://apidocs.bitrix24.ru/api-reference/crm/deals/events/index.html); ONPAYMENTENTITYSAVED carries a
# *payment* id (https://apidocs.bitrix24.ru/api-reference/sale/events/index.html).
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

# Never stored: credentials that come with app events
# (https://apidocs.bitrix24.ru/api-reference/events/index.html).
SECRET_AUTH_KEYS = {"application_token", "access_token", "refresh_token"}


@dataclass(frozen=True)
class EventReceipt:
    status: str  # stored, duplicate or ignored
    event: str
    entity_id: str


def event_kind(*, side: str, event: str) -> str | None:
    """The kind of job `event` from `side` asks for, or None for an event bxsync ignores."""
    return EVENT_KINDS[side].get(event)


def event_receive(
    *,
    side: str,
    event: str,
    entity_id: str,
    ts: str = "",
    event_handler_id: str = "",
    payload: dict[str, Any],
) -> EventReceipt:
    """Store one event and request the job it implies; `payload` is the whole body, stored without secrets.

    The caller has validated the event (the API's input serializer): `event` upper-case, `entity_id` numeric
    for every event that means work. Duplicates are counted, and still make sure the entity is queued:
    re-reading it is harmless, and a real second change within one `ts` second must not be lost.
    """
    kind = event_kind(side=side, event=event)
    dedupe_key = f"{side}:{event}:{entity_id}:{ts}:{event_handler_id}"[:200]

    upserts = [
        _event_upsert(
            side=side,
            event=event[:64],
            entity_id=entity_id[:32],
            ts=ts[:20],
            dedupe_key=dedupe_key,
            payload=_without_secrets(payload),
        )
    ]
    if kind:
        upserts.append(job_upsert(kind=kind, entity_id=entity_id, origin="event", event=event))
    # One statement on PostgreSQL, atomic by itself: one round trip instead of four with BEGIN and COMMIT.
    # On SQLite, the web processes take their turns at the write lock in the kernel, not in SQLite's sleeps.
    with sqlite_write_turn(), nullcontext() if upserts_atomic() else transaction.atomic():
        duplicates = upserts_run(upserts)[0]
        if kind:
            job_requested(kind=kind)
    status = ("stored" if kind else "ignored") if duplicates == 0 else "duplicate"
    return EventReceipt(status=status, event=event, entity_id=entity_id)


def _event_upsert(
    *, side: str, event: str, entity_id: str, ts: str, dedupe_key: str, payload: dict[str, Any]
) -> Upsert:
    """Insert the event, or count a duplicate of it, in one statement; it returns the duplicates, 0 if new.

    INSERT ... ON CONFLICT rather than insert, catch the IntegrityError and update: no savepoint, and one
    round trip per event (the intake profile in docs/benchmarks.md).
    """
    row = {
        "side": side,
        "event": event,
        "entity_id": entity_id,
        "ts": ts,
        "received_at": timezone.now(),
        "dedupe_key": dedupe_key,
        "duplicates": 0,
        "payload": payload,
    }
    return Upsert(
        model=InboundEvent,
        row=row,
        conflict="(dedupe_key)",
        update="duplicates = {table}.duplicates + 1",
        returning="duplicates",
    )


def _without_secrets(payload: dict[str, Any]) -> dict[str, Any]:
    clean = dict(payload)
    auth = clean.get("auth")
    if isinstance(auth, dict):
        clean["auth"] = {k: v for k, v in auth.items() if k not in SECRET_AUTH_KEYS}
    return clean

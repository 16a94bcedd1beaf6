"""A link with a whole story, made the way production makes it: events through `event_receive` (what the
webhook endpoints call), decisions by a worker pass against the sandbox portals."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from bitrix_sandbox import Sandbox
from statussync.events import event_receive
from statussync.models import Link
from tests.support.sandbox import new_pair, pay, run_worker

_ts = itertools.count(1_766_000_000)


def receive(side: str, event: str, entity_id: str, *, ts: str | None = None) -> str:
    """Bitrix posts `event` about `entity_id`; returns the event's `ts` (to send it again as a duplicate)."""
    ts = ts or str(next(_ts))
    event_receive(
        side=side,
        event=event,
        entity_id=entity_id,
        ts=ts,
        event_handler_id="7",
        payload={"event": event, "data": {"FIELDS": {"ID": entity_id}}, "ts": ts},
    )
    return ts


@dataclass
class Story:
    order_id: str
    deal_id: str
    payment_id: str

    @property
    def link(self) -> Link:
        return Link.objects.get(order_id=self.order_id)


def link_story(sb: Sandbox) -> Story:
    """First sight → the shop moves the order (sent twice) → the deal follows → its echo → the customer pays
    → the deal moves to the paid stage → its echo → a manager drags the deal back to NEW, which is blocked."""
    order_id, deal_id = new_pair(sb)
    receive("cms", "ONSALEORDERSAVED", order_id)
    run_worker()  # first sight: N ↔ NEW agree

    sb.shop.set_order_status(int(order_id), "P")
    ts = receive("cms", "ONSALEORDERSAVED", order_id)
    receive("cms", "ONSALEORDERSAVED", order_id, ts=ts)  # Bitrix sends it again: a duplicate
    run_worker()  # applied: deal NEW → PREPARATION
    receive("crm", "ONCRMDEALUPDATE", deal_id)
    run_worker()  # the echo

    payment_id = pay(sb, order_id)
    receive("cms", "ONPAYMENTENTITYSAVED", payment_id)
    run_worker("payments")  # payment: deal → PREPAYMENT_INVOICE
    receive("crm", "ONCRMDEALUPDATE", deal_id)
    run_worker()  # its echo

    sb.crm.move_deal(int(deal_id), "NEW")
    receive("crm", "ONCRMDEALUPDATE", deal_id)
    run_worker()  # blocked: NEW would put the paid order back to N
    return Story(order_id=order_id, deal_id=deal_id, payment_id=payment_id)

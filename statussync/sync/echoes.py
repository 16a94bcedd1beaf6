"""Echoes known without reading: the event of bxsync's own write, taken for what it is from the write's
read-back instead of reading both sides again.

Events carry only an id [docs/bitrix.md "Events"], so an echo costs a read like any change. But bxsync knows
what it wrote and, from the read-back in the same `batch` call, what the portal saved. Each confirmed write
leaves one token on its link (`Link.echo_expected`, the side written); the first job of that side holding a
single update event takes the token and ends as an echo, unread. Why this is safe:

- one write, one token: a human change right after bxsync's write that reaches us first takes the token, and
  then the real echo is read like any event, and finds the change;
- a job that coalesced two events, a manager's choice, a payment, any other event kind: read as always;
- any run that reads the link clears its token, so a token never outlives the read that made it moot, and it
  expires after ECHO_WINDOW_SECONDS;
- the one case it cannot tell: a human change right after the write whose event wins the race while
  the echo itself never arrives. Bitrix sends each event once and may lose one; reconciliation reads that
  change within BXSYNC_RECONCILE_MINUTES (docs/reliability.md "15. Echoes known without reading").
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from django.utils import timezone

from statussync.models import JobKind, Link, Outcome, Side
from statussync.reasons import why

if TYPE_CHECKING:
    from .items import Item
    from .run import SyncRun

# The events a write of bxsync's fires (sale.order.update, crm.deal.update)
# [docs/bitrix.md "Events"]: only these can be echoes.
# Keyed by str: a job's `kind` is read back from the database as a plain str.
ECHO_EVENTS: dict[str, str] = {JobKind.ORDER: "ONSALEORDERSAVED", JobKind.DEAL: "ONCRMDEALUPDATE"}
_SIDE_OF_KIND: dict[str, Side] = {JobKind.ORDER: Side.CMS, JobKind.DEAL: Side.CRM}
# Bitrix delivers an event within seconds; past this the token is stale and the event is read.
ECHO_WINDOW_SECONDS = 300


def echoes_recognise(run: SyncRun) -> None:
    """Settle each item that is the expected echo of bxsync's last write to its link, taking the token."""
    oldest = timezone.now() - timedelta(seconds=ECHO_WINDOW_SECONDS)
    for item in run.live():
        side = _echo_side(item)
        link = item.link
        if side is None or link is None or link.echo_expected != side:
            continue
        if link.last_write_at is None or link.last_write_at < oldest:
            continue
        # Compare-and-set: two runs holding one echo each (a duplicate delivery) take one token between them.
        if Link.objects.filter(id=link.id, echo_expected=side).update(echo_expected=""):
            link.echo_expected = ""
            item.settle(Outcome.ECHO, why("echo_known", value=link.last_write_value))


def _echo_side(item: Item) -> str | None:
    """The side whose echo `item` may be: one job, of one update event, that an event asked for."""
    if item.wins or len(item.jobs) != 1:
        return None
    job = item.jobs[0]
    if job.origin != "event" or job.events_coalesced != 1 or ECHO_EVENTS.get(job.kind) != job.event:
        return None
    return _SIDE_OF_KIND[job.kind]

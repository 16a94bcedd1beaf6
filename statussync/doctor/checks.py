"""The checks of `bitrix doctor`, one function each: call the portals (read-only), read the answers with
`interpret`, and add findings to the `Visit`.

Every call goes through bxsync's Bitrix client (`statussync.bitrix`), paced by the shared rate limiter like
the sync's own. A portal whose webhook does not answer is skipped by the checks after `webhook_check`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from django.utils import timezone

from statussync import portals
from statussync.bitrix import AuthError, BitrixClient, BitrixError, client_for
from statussync.mapping.store import mapping_export
from statussync.models import InboundEvent, Side

from . import interpret
from .findings import BLOCKING, NOTE, OK, WARNING, Finding

# Keyed by str: the checks are given a side as a plain str (a Side member hashes and compares as its value).
SETTING: dict[str, str] = {Side.CMS: "BXSYNC_CMS_REST_URL", Side.CRM: "BXSYNC_CRM_REST_URL"}
TOKEN_SETTING: dict[str, str] = {Side.CMS: "BXSYNC_CMS_APP_TOKEN", Side.CRM: "BXSYNC_CRM_APP_TOKEN"}
HANDLER: dict[str, str] = {Side.CMS: "bitrix-cms", Side.CRM: "bitrix-crm"}
SIDES = (Side.CMS, Side.CRM)
DEAL_ENTITY_TYPE_ID = 2  # [docs/bitrix.md "Stages and pipelines"]


@dataclass
class Visit:
    """One doctor run: the clients of the portals that answer, what was found, and the clocks' offsets."""

    clients: dict[str, BitrixClient] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    clock_offsets: dict[str, float] = field(default_factory=dict)

    def add(self, check: str, portal: str, level: str, code: str, **params: Any) -> None:
        self.findings.append(Finding(check, portal, level, code, params))

    def answering(self) -> list[Side]:
        return [side for side in SIDES if side in self.clients]


def handler_url(side: str) -> str:
    """The path bxsync receives a portal's events on (the outgoing webhook's handler)."""
    return reverse(HANDLER[side])


def webhook_check(visit: Visit, side: str) -> None:
    """The inbound webhook is set and answers (`scope`, which every webhook may call)."""
    try:
        client = client_for(side)
    except ImproperlyConfigured:
        visit.add("webhook", side, BLOCKING, "webhook_missing", setting=SETTING[side])
        return
    try:
        result = client.result("scope", {})
    except AuthError as error:
        visit.add("webhook", side, BLOCKING, "webhook_refused", setting=SETTING[side], error=said(error))
        return
    except BitrixError as error:
        visit.add("webhook", side, BLOCKING, "webhook_unreachable", setting=SETTING[side], error=said(error))
        return
    visit.add("webhook", side, OK, "webhook_ok")
    needed = interpret.SCOPE_NEEDED[side]
    missing, scopes = interpret.scopes_missing(result, needed=needed)
    if missing:
        # Every later check of this portal would fail for the same reason: one finding says it.
        visit.add("scope", side, BLOCKING, "scope_missing", scope=needed, scopes=", ".join(scopes) or "—")
        return
    visit.clients[side] = client
    visit.add("scope", side, OK, "scope_ok", scope=needed, scopes=", ".join(scopes))


def rights_check(visit: Visit, side: str) -> None:
    """The shop's user is an administrator (`user.admin`, then a `sale.order.list` to be sure); the CRM's
    user reads deals. Write rights show only on a write (see `round_trip_check`)."""
    client = visit.clients[side]
    if side == Side.CMS:
        try:
            client.result("sale.order.list", {"select": ["id"], "order": {"id": "asc"}, "start": 0})
            admin = interpret.is_admin(client.result("user.admin", {}))
            error = "user.admin: false"
        except BitrixError as exc:
            admin, error = False, said(exc)
        if admin:
            visit.add("rights", side, OK, "admin_ok")
        else:
            visit.add("rights", side, BLOCKING, "admin_needed", error=error)
        return
    try:
        client.call("crm.deal.list", {"select": ["ID"], "order": {"ID": "ASC"}, "start": -1})
    except BitrixError as exc:
        visit.add("rights", side, BLOCKING, "crm_read_refused", error=said(exc))
        return
    visit.add("rights", side, OK, "crm_read_ok")


def plan_check(visit: Visit, side: str) -> None:
    """The plan's REST limits (`app.info`, where a webhook gets an answer) against bxsync's pacing, and
    whether offline events are available (`feature.get`), for connecting as an application."""
    client = visit.clients[side]
    try:
        plan = interpret.plan_of(client.result("app.info", {}))
    except BitrixError:
        plan = None
    ours = float(settings.BXSYNC_RATE_PER_SECOND)
    if plan is None:
        visit.add("plan", side, NOTE, "plan_unknown")
    else:
        params = {"license": plan.license, "rate": f"{plan.rate:g}", "burst": plan.burst, "ours": f"{ours:g}"}
        if ours > plan.rate:
            visit.add("plan", side, WARNING, "plan_rate_above", **params)
        elif ours < plan.rate:
            visit.add("plan", side, NOTE, "plan_rate_below", **params)
        else:
            visit.add("plan", side, OK, "plan", **params)
    try:
        offline = interpret.feature_available(client.result("feature.get", {"CODE": "rest_offline_extended"}))
    except BitrixError:
        return
    visit.add("plan", side, NOTE, "offline_events", available="Y" if offline else "N")


def clock_check(visit: Visit, side: str) -> None:
    """The portal's clock against bxsync's (`server.time`)."""
    sent = timezone.now()
    try:
        result = visit.clients[side].result("server.time", {})
    except BitrixError:
        return
    offset = interpret.server_clock_offset(result, sent=sent, received=timezone.now())
    if offset is None:
        return
    visit.clock_offsets[side] = offset
    # Beyond the conflict tolerance the "latest" policy may misjudge which change came last
    # [docs/contract.md "Behaviour" 5].
    tolerance = float(settings.BXSYNC_CONFLICT_TOLERANCE_SECONDS)
    seconds = f"{offset:+.0f}" if interpret.clock_outside(offset, tolerance=tolerance) else f"{tolerance:g}"
    if interpret.clock_outside(offset, tolerance=tolerance):
        visit.add("clock", side, WARNING, "clock_skew", seconds=seconds)
    else:
        visit.add("clock", side, OK, "clock_ok", seconds=seconds)


def clocks_apart_check(visit: Visit) -> None:
    """The two portals' clocks against each other: what the "latest" policy compares."""
    if len(visit.clock_offsets) < 2:
        return
    apart = abs(visit.clock_offsets[Side.CMS] - visit.clock_offsets[Side.CRM])
    tolerance = float(settings.BXSYNC_CONFLICT_TOLERANCE_SECONDS)
    if interpret.clock_outside(apart, tolerance=tolerance):
        visit.add("clock", "", WARNING, "clocks_apart", seconds=f"{apart:.0f}", tolerance=f"{tolerance:g}")


def deal_field_check(visit: Visit) -> None:
    """The deal order field exists as a single string (`crm.deal.fields`), and how many deals fill it."""
    client = visit.clients[Side.CRM]
    name = portals.deal_order_field()
    try:
        verdict = interpret.order_field_verdict(client.result("crm.deal.fields", {}), field=name)
    except BitrixError:
        return
    if verdict.state == "missing":
        visit.add("deal_field", Side.CRM, BLOCKING, "field_missing", field=name)
        return
    if verdict.state == "multiple":
        visit.add("deal_field", Side.CRM, BLOCKING, "field_multiple", field=name)
        return
    if verdict.state == "type":
        visit.add("deal_field", Side.CRM, WARNING, "field_type", field=name, type=verdict.type)
    # "!FIELD": "" is "not empty" [docs/bitrix.md "Lists"]; `total` counts them (50 rows a page at most).
    envelope = client.call("crm.deal.list", {"filter": {f"!{name}": ""}, "select": ["ID"], "start": 0})
    filled = int(envelope.get("total") or 0)
    if filled:
        visit.add("deal_field", Side.CRM, OK, "field_ok", field=name, type=verdict.type, filled=filled)
    else:
        visit.add("deal_field", Side.CRM, WARNING, "field_empty", field=name)


def events_check(visit: Visit, side: str, *, base_url: str = "") -> None:
    """The events bxsync needs are subscribed (`event.get`: applications only; a webhook is told how to
    check), and when the last one arrived."""
    needed = interpret.EVENTS_NEEDED[side]
    handler = (base_url.rstrip("/") + handler_url(side)) if base_url else handler_url(side)
    try:
        result = visit.clients[side].result("event.get", {})
    except BitrixError:
        visit.add("events", side, NOTE, "events_unverifiable", handler=handler, events=", ".join(needed))
    else:
        missing = interpret.events_bound(result, needed=needed)
        if missing:
            visit.add("events", side, BLOCKING, "events_unbound", events=", ".join(missing), handler=handler)
        else:
            visit.add("events", side, OK, "events_bound", events=", ".join(needed))
    last = (
        InboundEvent.objects.filter(side=side).order_by("-received_at").values_list("received_at", flat=True)
    )
    when = last.first()
    if when is None:
        visit.add("events", side, NOTE, "events_none", handler=handler, setting=TOKEN_SETTING[side])
    else:
        visit.add(
            "events", side, OK, "events_last", when=timezone.localtime(when).strftime("%Y-%m-%d %H:%M:%S")
        )


def said(error: BitrixError) -> str:
    """What the portal said, without the webhook URL (the client's errors never carry it)."""
    return f"{error.code or error.http_status or '-'}: {error.description or '-'}"[:200]


def shop_statuses(client: BitrixClient) -> set[str]:
    """The shop's order statuses (`sale.status.list`, type O) [docs/bitrix.md "The shop"]."""
    rows = client.paging.list_all("sale.status.list", {"filter": {"type": "O"}}, items_key="statuses")
    return {str(row["id"]) for row in rows if row.get("id")}


def crm_stages(client: BitrixClient) -> dict[int, list[dict[str, Any]]]:
    """Each pipeline's `crm.status.list` rows by pipeline id (`crm.category.list`, then each one's stages)."""
    categories = client.paging.list_all(
        "crm.category.list", {"entityTypeId": DEAL_ENTITY_TYPE_ID}, items_key="categories"
    )
    ids = sorted({int(c.get("id") or 0) for c in categories} | {0})
    answer = client.batch({f"p{pid}": portals.stage_list(pid) for pid in ids})
    if answer.errors:
        raise next(iter(answer.errors.values()))
    return {pid: list(answer.results.get(f"p{pid}") or []) for pid in ids}


def mapping_document() -> Mapping[str, Any]:
    """The stored mapping, as `statusmap export` prints it."""
    return mapping_export()

"""What doctor found: findings as codes with parameters, rendered in the reader's language, and the verdict.

A finding is stored and sent as a code and its parameters, like the audit's reasons (`statussync.reasons`):
the command renders it in the active language, and the admin renders a stored report in its reader's. Each
code has a message (what was found) and, for anything short of "ok", a fix (what to do about it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext


def gettext_noop(message: str) -> str:
    """Mark `message` for translation without translating it (makemessages finds this name)."""
    return message


OK, NOTE, WARNING, BLOCKING = "ok", "note", "warning", "blocking"
LEVELS = (OK, NOTE, WARNING, BLOCKING)

# code -> (message, fix). The English texts are the msgids; `{name}` is a parameter of the finding.
TEXTS: dict[str, tuple[str, str]] = {
    # The webhook itself.
    "webhook_missing": (
        gettext_noop("{setting} is not set: bxsync cannot reach this portal"),
        gettext_noop(
            "Create an inbound webhook on the portal (Developer resources → Other → Inbound webhook) and "
            "put its URL in {setting}."
        ),
    ),
    "webhook_refused": (
        gettext_noop("the portal refuses the webhook: {error}"),
        gettext_noop(
            "Copy the webhook's URL again into {setting}: its code may have been changed or the webhook "
            "deleted. A free plan without REST access and a closed portal answer the same way."
        ),
    ),
    "webhook_unreachable": (
        gettext_noop("the portal does not answer: {error}"),
        gettext_noop(
            "Check the host in {setting}, the network between bxsync and the portal, and run again."
        ),
    ),
    "webhook_ok": (gettext_noop("the webhook answers"), ""),
    # Scopes and rights.
    "scope_ok": (gettext_noop("the webhook has the {scope} scope"), ""),
    "scope_missing": (
        gettext_noop("the webhook lacks the {scope} scope (it has: {scopes})"),
        gettext_noop("Edit the inbound webhook and tick the {scope} scope; its URL stays the same."),
    ),
    "admin_ok": (gettext_noop("the webhook's user is an administrator, as the sale.* methods need"), ""),
    "admin_needed": (
        gettext_noop("the webhook's user is not an administrator: the shop refuses it ({error})"),
        gettext_noop(
            "The shop's REST methods need an administrator: create the webhook as one, or make its user one."
        ),
    ),
    "crm_read_ok": (gettext_noop("the webhook's user reads deals (write rights show only on a write)"), ""),
    "crm_read_refused": (
        gettext_noop("the webhook's user may not read deals: {error}"),
        gettext_noop(
            "Give the webhook's user the right to read and change deals of every mapped pipeline "
            "(CRM → Settings → Access permissions)."
        ),
    ),
    # The plan.
    "plan": (gettext_noop("plan {license}: Bitrix allows {rate} requests a second, {burst} at once"), ""),
    "plan_unknown": (
        gettext_noop("the plan could not be read (app.info does not answer this webhook)"),
        gettext_noop(
            "Nothing to do unless the portal is on Enterprise: then set BXSYNC_RATE_PER_SECOND=5 and "
            "BXSYNC_RATE_BURST=250."
        ),
    ),
    "plan_rate_above": (
        gettext_noop(
            "bxsync paces itself at {ours} requests a second, above the {rate} plan {license} allows"
        ),
        gettext_noop("Set BXSYNC_RATE_PER_SECOND={rate} and BXSYNC_RATE_BURST={burst}."),
    ),
    "plan_rate_below": (
        gettext_noop("plan {license} allows {rate} requests a second; bxsync paces itself at {ours}"),
        gettext_noop("Set BXSYNC_RATE_PER_SECOND={rate} and BXSYNC_RATE_BURST={burst} to use it."),
    ),
    "offline_events": (gettext_noop("offline events (for an application): {available}"), ""),
    # The deal field.
    "field_ok": (gettext_noop("the deal field {field} exists ({type}); {filled} deals have it filled"), ""),
    "field_missing": (
        gettext_noop("the deal field {field} does not exist: bxsync cannot find which deal is an order's"),
        gettext_noop(
            "Create a string field for deals (CRM → Settings → Custom fields) and put its code in "
            "BXSYNC_DEAL_ORDER_FIELD."
        ),
    ),
    "field_multiple": (
        gettext_noop("the deal field {field} holds several values"),
        gettext_noop("Use a single-value string field for the order id."),
    ),
    "field_type": (
        gettext_noop("the deal field {field} is of type {type}, not a string"),
        gettext_noop("A string field holds any order number; a field of this type may refuse or alter some."),
    ),
    "field_empty": (
        gettext_noop("no deal has {field} filled: bxsync links no order to a deal yet"),
        gettext_noop("Fill the field with the order's id when a deal is made for an order (a robot can)."),
    ),
    # The mapping.
    "mapping_empty": (
        gettext_noop("no mapping is loaded: bxsync writes nothing"),
        gettext_noop("Import one: manage.py statusmap import mapping.json."),
    ),
    "mapping_ok": (
        gettext_noop("the mapping's {statuses} statuses and {stages} stages exist on the portals"),
        "",
    ),
    "status_missing": (
        gettext_noop("the mapping uses order status {status}, which the shop does not list"),
        gettext_noop("Create the status in the shop, or change the rules that use it (statusmap import)."),
    ),
    "pipeline_missing": (
        gettext_noop("the mapping uses pipeline {pipeline}, which the CRM does not list"),
        gettext_noop("The pipeline was deleted: remove it from the mapping or map the one that replaced it."),
    ),
    "stage_missing": (
        gettext_noop("the mapping uses stage {stage} of pipeline {pipeline}, which the CRM does not list"),
        gettext_noop(
            "The stage was deleted or its id changed: choose a stage the pipeline has (statusmap import)."
        ),
    ),
    "stage_no_rule": (
        gettext_noop(
            "in pipeline {pipeline}, a deal moved to {stages} changes nothing in the shop: bxsync records "
            "it as unmapped and lists it in the admin"
        ),
        gettext_noop(
            "If a move there should set an order status, add a rule for it; otherwise nothing to do."
        ),
    ),
    "paid_stage_missing": (
        gettext_noop("pipeline {pipeline}'s paid stage {stage} is not one of its stages"),
        gettext_noop("Set paid_stage to a stage of the pipeline: payments cannot move deals otherwise."),
    ),
    "paid_stage_failure": (
        gettext_noop("pipeline {pipeline}'s paid stage {stage} is a failure stage"),
        gettext_noop("Choose an in-progress stage as paid_stage."),
    ),
    "paid_stage_unreachable": (
        gettext_noop(
            "in pipeline {pipeline}, awaiting-payment status {status} maps to {from_stage}, which is not "
            "before the paid stage {stage}: a payment would not move the deal"
        ),
        gettext_noop(
            "Choose a paid stage later in the pipeline than the stages of awaiting-payment statuses."
        ),
    ),
    # Events.
    "events_unverifiable": (
        gettext_noop(
            "a webhook cannot list the events the portal sends (event.get serves applications only)"
        ),
        gettext_noop(
            "Check the outgoing webhook (Developer resources → Other → Outgoing webhook): handler "
            "{handler}, events {events} ticked. Or run bitrix doctor --round-trip."
        ),
    ),
    "events_bound": (gettext_noop("the portal sends {events} to bxsync"), ""),
    "events_unbound": (
        gettext_noop("the portal does not send {events} to bxsync"),
        gettext_noop("Subscribe to them (handler {handler}) and run again."),
    ),
    "events_last": (gettext_noop("the last event from this portal arrived at {when}"), ""),
    "events_none": (
        gettext_noop("no event from this portal has arrived yet"),
        gettext_noop(
            "Check the outgoing webhook's handler URL ({handler}) and that {setting} holds its application "
            "token: events with another token are refused."
        ),
    ),
    "round_trip_ok": (
        gettext_noop("a test change on deal {deal} came back as an event in {seconds} s, and was undone"),
        "",
    ),
    "round_trip_lost": (
        gettext_noop("a test change on deal {deal} sent no event to bxsync within {seconds} s (undone)"),
        gettext_noop(
            "Check the outgoing webhook: handler {handler}, ONCRMDEALUPDATE ticked, its application token "
            "in BXSYNC_CRM_APP_TOKEN, and that the portal can reach bxsync's address."
        ),
    ),
    "round_trip_failed": (
        gettext_noop("the test change on deal {deal} failed: {error}"),
        gettext_noop("Name a deal the webhook may change with --deal, and run again."),
    ),
    "round_trip_skipped": (
        gettext_noop("no test event was sent"),
        gettext_noop(
            "Run bitrix doctor --round-trip --deal <id of a test deal> to check that events arrive."
        ),
    ),
    # Clocks.
    "clock_ok": (gettext_noop("the portal's clock is within {seconds} s of bxsync's"), ""),
    "clock_skew": (
        gettext_noop("the portal's clock is {seconds} s off bxsync's"),
        gettext_noop("Set the clocks by NTP, on bxsync's host and on a boxed portal's server."),
    ),
    "clocks_apart": (
        gettext_noop(
            "the shop's and the CRM's clocks are {seconds} s apart, more than the {tolerance} s the "
            "'latest' conflict policy tolerates: it may pick the older change"
        ),
        gettext_noop("Set both servers' clocks by NTP, or give the pipelines another conflict policy."),
    ),
    # The undocumented points (see docs/bitrix.md "Undocumented behaviours").
    "start_minus_one_ok": (gettext_noop("sale.order.list accepts start=-1 (no count)"), ""),
    "start_minus_one_refused": (
        gettext_noop("sale.order.list refuses start=-1: {error}"),
        gettext_noop(
            "Nothing to do: bxsync reads this shop's lists with start=0, which makes the portal count the "
            "rows for every page (slower on a big shop)."
        ),
    ),
    "payment_filter_ok": (gettext_noop("sale.payment.list filters by a list of payments (=id)"), ""),
    "payment_filter_ignored": (
        gettext_noop("sale.payment.list ignores a filter by a list of payments (=id)"),
        gettext_noop("Nothing to do: bxsync reads this shop's payments one by one, a request each."),
    ),
    "payment_filter_refused": (
        gettext_noop("sale.payment.list refuses a filter by a list of payments (=id): {error}"),
        gettext_noop("Nothing to do: bxsync reads this shop's payments one by one, a request each."),
    ),
    "not_found_code_known": (
        gettext_noop("sale.order.get answers {error_code} for a missing order: bxsync reads it as deleted"),
        "",
    ),
    "not_found_code_unknown": (
        gettext_noop(
            "sale.order.get answers {error_code} for a missing order, a code the documentation does not "
            "give: bxsync now reads it as deleted on this portal"
        ),
        gettext_noop(
            "Nothing to do; if the shop gives this code for anything but a missing order, report it to "
            "bxsync's maintainers."
        ),
    ),
    "datetime_filter_ok": (gettext_noop("{method} filters by a date with an offset ({example})"), ""),
    "datetime_filter_ignored": (
        gettext_noop("{method} ignores a filter by a date with an offset ({example})"),
        gettext_noop(
            "Reconciliation reads this portal's changes newest first without the filter, which takes more "
            "requests; report it to bxsync's maintainers."
        ),
    ),
    "datetime_filter_refused": (
        gettext_noop("{method} refuses a filter by a date with an offset ({example}): {error}"),
        gettext_noop(
            "Reconciliation reads this portal's changes newest first without the filter, which takes more "
            "requests; report it to bxsync's maintainers."
        ),
    ),
    "move_date_modify_yes": (gettext_noop("a pipeline move changes the deal's DATE_MODIFY"), ""),
    "move_date_modify_no": (
        gettext_noop("a pipeline move leaves the deal's DATE_MODIFY as it was"),
        gettext_noop(
            "Nothing to do: reconciliation also reads the deals whose stage changed (MOVED_TIME) on this "
            "portal. Installed as an application, bxsync is told of a move at once."
        ),
    ),
    "quirk_unprobed": (gettext_noop("{quirk}: not probed ({why})"), ""),
}

# Each probed point as the reader would ask it, and its answers in words (the panel's "What the portals do",
# and `quirk` of quirk_unprobed): the stored names are bxsync's, never shown.
POINTS: dict[str, str] = {
    "order_list_start_minus_one": gettext_noop("The shop lists orders without counting them (start=-1)"),
    "payment_list_array_filter": gettext_noop("The shop filters payments by several ids at once"),
    "order_get_not_found_code": gettext_noop("The error the shop gives for a missing order"),
    "datetime_offset_filter": gettext_noop("Lists filter by a change date with a time zone"),
    "pipeline_move_changes_date_modify": gettext_noop("A pipeline move changes the deal's modification date"),
    # Older reports name the payment probe this way.
    "sale.payment.list orderId[]": gettext_noop("The shop filters payments by several ids at once"),
}
ANSWERS: dict[Any, str] = {
    True: gettext_noop("yes"),
    False: gettext_noop("no"),
    "ok": gettext_noop("yes"),
    "ignored": gettext_noop("no, it ignores the filter"),
    "refused": gettext_noop("no, it refuses the filter"),
    "Y": gettext_noop("available"),
    "N": gettext_noop("not available"),
}

# Reasons a point was not probed (`why` of quirk_unprobed), shown as they are.
WHY: dict[str, str] = {
    "no_orders": gettext_noop("the shop has no order to probe with"),
    "no_payments": gettext_noop("the shop has no payment to probe with"),
    "needs_round_trip": gettext_noop(
        "it needs a write: run with --round-trip --deal <id of an unlinked deal>"
    ),
    "deal_linked": gettext_noop("the test deal is linked to an order"),
    "one_pipeline": gettext_noop("the CRM has one pipeline"),
    "failed": gettext_noop("the probe failed"),
}


@dataclass(frozen=True)
class Finding:
    """One thing doctor found on a portal (`portal` '' for both): a code, its parameters and its level."""

    check: str
    portal: str
    level: str
    code: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.code in TEXTS, self.code
        assert self.level in LEVELS, self.level

    @property
    def message(self) -> str:
        """What was found, in the active language."""
        return _render(TEXTS[self.code][0], self.params)

    @property
    def fix(self) -> str:
        """What to do about it, in the active language ('' when nothing)."""
        text = TEXTS[self.code][1]
        return _render(text, self.params) if text and self.level != OK else ""

    def as_json(self) -> dict[str, Any]:
        """The finding in the report's JSON shape (docs/bitrix.md "What doctor checks")."""
        return {
            "check": self.check,
            "portal": self.portal,
            "level": self.level,
            "code": self.code,
            "params": self.params,
            "message": self.message,
            "fix": self.fix,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding | None:
        """A stored finding, or None for a code this version no longer knows."""
        if data.get("code") not in TEXTS or data.get("level") not in LEVELS:
            return None
        return cls(
            str(data["check"]), str(data["portal"]), data["level"], data["code"], data.get("params") or {}
        )


def _render(text: str, params: dict[str, Any]) -> str:
    shown = dict(params)
    if "why" in shown and shown["why"] in WHY:
        shown["why"] = gettext(WHY[shown["why"]])
    if shown.get("quirk") in POINTS:
        shown["quirk"] = gettext(POINTS[shown["quirk"]])
    if shown.get("available") in ANSWERS:
        shown["available"] = gettext(ANSWERS[shown["available"]])
    try:
        return gettext(text).format(**shown)
    except (KeyError, IndexError, ValueError):
        return text.format_map(_Missing(shown))


class _Missing(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def verdict_of(findings: Iterable[Finding]) -> str:
    """'blocked' when anything blocks syncing, 'warnings' when something needs a look, else 'healthy'."""
    levels = {f.level for f in findings}
    if BLOCKING in levels:
        return "blocked"
    return "warnings" if WARNING in levels else "healthy"

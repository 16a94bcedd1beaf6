"""How the admin shows things: statuses and stages as "name (code)" (from statussync.mapping.catalog, a code a
portal dropped said to be missing), codes that may wrap, moments as "5 minutes ago", orders and deals with a
link to their page in the portal, and mapping problems. Every admin page takes these from here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.humanize.templatetags.humanize import naturaltime
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext

from statussync.mapping import catalog
from statussync.mapping.validate import Problem


def wrappable(code: str) -> str:
    """A code that may break after its underscores (PREPAYMENT_INVOICE), not in the middle of a word."""
    parts = code.split("_")
    return format_html_join(mark_safe("_<wbr>"), "{}", ((part,) for part in parts))


def ago(moment: datetime) -> str:
    """ "now", or "5 minutes ago", in the reader's language (django.contrib.humanize)."""
    return str(naturaltime(moment))


def problem_text(problem: Problem, *, rule_name: Callable[[int], str] | None = None) -> str:
    """A mapping problem for the admin's forms: codes as "name (code)", other rules as "the rule on row n" (or
    what `rule_name` says)."""
    return problem.message(
        for_form=True, rule_name=rule_name, status=catalog.status_label, stage=catalog.stage_label
    )


# --- The order and the deal in their portals ----------------------------------------------------------------
# Built from the portal's scheme and host only: the inbound-webhook URL's path holds its secret code, which
# must never reach a page. Page paths:
# - a deal card in Bitrix24: /crm/deal/details/<id>/ (the CRM's own links use it, e.g. its mobile app's
#   `redirectUrl: /crm/deal/details/${entityId}/`);
# - an order in the shop's admin (module sale): /bitrix/admin/sale_order_view.php?ID=<id>, where the sale
#   module's own order editor sends a user who may only view (`LocalRedirect("/bitrix/admin/
#   sale_order_view.php?ID=".$ID."&lang=".LANGUAGE_ID)`); without `lang` the admin uses its default language.


def portal_root(rest_url: str) -> str:
    """`scheme://host[:port]` of a portal's REST URL, without credentials or path; "" when unset."""
    parts = urlsplit(rest_url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def order_page_url(order_id: str) -> str:
    """The order's page in the shop's admin, or "" when the shop is not configured."""
    root = portal_root(settings.BXSYNC_CMS_REST_URL)
    return f"{root}/bitrix/admin/sale_order_view.php?ID={order_id}" if root and order_id else ""


def deal_page_url(deal_id: str) -> str:
    """The deal's card in the CRM, or "" when the CRM is not configured."""
    root = portal_root(settings.BXSYNC_CRM_REST_URL)
    return f"{root}/crm/deal/details/{deal_id}/" if root and deal_id else ""


def portal_anchor(url: str, text: str, title: str) -> str:
    if not url:
        return ""
    return format_html(
        ' <a class="bxsync-portal" href="{}" target="_blank" rel="noopener noreferrer" title="{}">'
        "{}&nbsp;↗</a>",
        url,
        title,
        text,
    )


def order_html(order_id: str) -> str:
    """An order id with a link to its page in the shop."""
    return format_html(
        "{}{}",
        order_id,
        portal_anchor(order_page_url(order_id), gettext("shop"), gettext("Open in the shop")),
    )


def deal_html(deal_id: str) -> str:
    """A deal id with a link to its card in the CRM."""
    return format_html(
        "{}{}", deal_id, portal_anchor(deal_page_url(deal_id), gettext("CRM"), gettext("Open in the CRM"))
    )

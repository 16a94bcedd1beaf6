"""Search anywhere: an order or deal id typed into the admin's header leads to that link's timeline.

The active link first, else the most recently closed one. The same number can be an order in the shop and a
deal in the CRM (the portals count separately): the order wins, and the page says where the deal is. With
no link at all, the audit list filtered by that id shows what bxsync did with it.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext

from statussync.models import Link, LinkState

from .audit import id_query

# More links than this for one id would be a very long history; the newest are the ones that matter.
LINKS_LOOKED_AT = 20


def link_find(*, kind: str | None, entity_id: str) -> tuple[Link | None, list[Link]]:
    """The link an order or deal id leads to, and the other links that id has a role in (the same number
    as a deal when the order was found, or the order's older links are not among them). `kind` is "order",
    "deal" or None for either."""
    roles = Q()
    if kind in (None, "order"):
        roles |= Q(order_id=entity_id)
    if kind in (None, "deal"):
        roles |= Q(deal_id=entity_id)
    candidates = list(Link.objects.filter(roles).order_by("-id")[:LINKS_LOOKED_AT])
    if not candidates:
        return None, []

    def preference(link: Link) -> tuple:
        # Active before closed; the order's role before the deal's; then the latest.
        closed_at = link.closed_at.timestamp() if link.closed_at else 0.0
        return (link.state != LinkState.ACTIVE, link.order_id != entity_id, -closed_at, -link.id)

    candidates.sort(key=preference)
    best = candidates[0]
    # The same number in the other role, active: worth a word (not the order's own closed history).
    others = [
        link
        for link in candidates[1:]
        if link.state == LinkState.ACTIVE and (link.order_id == entity_id) != (best.order_id == entity_id)
    ]
    return best, others


def find_view(request):
    """`?q=<id>`: to the link's timeline, or to the audit entries that name the id."""
    user = request.user
    can_links = user.has_perm("statussync.view_link")
    can_audit = user.has_perm("statussync.view_auditentry")
    if not (can_links or can_audit):
        raise PermissionDenied
    text = request.GET.get("q", "").strip()
    audit_url = reverse("admin:statussync_auditentry_changelist")
    if not text:
        return HttpResponseRedirect(reverse("admin:index"))
    named = id_query(text)
    if named is not None and can_links:
        kind, entity_id = named
        link, others = link_find(kind=kind, entity_id=entity_id)
        if link is not None:
            for other in others:
                messages.info(
                    request,
                    format_html(
                        gettext('{id} is also {role}: <a href="{url}">order {order} ↔ deal {deal}</a>.'),
                        id=entity_id,
                        role=gettext("a deal") if other.deal_id == entity_id else gettext("an order"),
                        url=reverse("admin:statussync_link_change", args=[other.id]),
                        order=other.order_id,
                        deal=other.deal_id,
                    ),
                )
            return HttpResponseRedirect(reverse("admin:statussync_link_change", args=[link.id]))
        messages.info(
            request,
            gettext("No order or deal %(id)s is linked; here is everything the audit log says about it.")
            % {"id": entity_id},
        )
    if not can_audit:
        return HttpResponseRedirect(
            reverse("admin:statussync_link_changelist") + "?" + urlencode({"q": text})
        )
    return HttpResponseRedirect(audit_url + "?" + urlencode({"q": text}))

"""The client's address, through the TLS proxy when there is one (BXSYNC_BEHIND_PROXY)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """REMOTE_ADDR, or behind proxies the address the outermost of our `BXSYNC_PROXY_COUNT` proxies saw.

    Each proxy appends the address it received the request from to X-Forwarded-For, so only the last
    `BXSYNC_PROXY_COUNT` entries are ours; anything to their left is whatever the client chose to send.
    """
    remote = request.META.get("REMOTE_ADDR", "")
    if not settings.BXSYNC_BEHIND_PROXY:
        return remote
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
    count = max(settings.BXSYNC_PROXY_COUNT, 1)
    return forwarded[-count] if len(forwarded) >= count else remote

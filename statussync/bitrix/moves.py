"""A portal that moved to a new address: where it went, and whether that address is confirmed yet.

A cloud portal can be renamed at any time; its old address then answers with a redirect to the new one
(settings/how-to-call-rest-api/change-domen.md) [docs/bitrix.md "Calling the REST API"]. bxsync follows it for
reads. A write is re-sent only to an address a read already confirmed: a successful answer there through the
same webhook code proves it is the same portal (the code is the portal's secret), where a write blindly
re-sent could land anywhere a redirect points. Until an operator updates the REST URL, the move is recorded in
the cache (shared by every process) for the health report and the dashboard.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import urlsplit

from django.core.cache import cache
from django.utils import timezone

log = logging.getLogger("statussync.bitrix")

_lock = threading.Lock()
_confirmed: set[tuple[str, str]] = set()  # (webhook, new base URL): confirmed by a read, in this process


def _key(portal: str) -> str:
    return f"bxsync:portal-moved:{portal}"


def origin(url: str) -> str:
    """``https://host[:port]`` of a URL: what may be shown of it (the path holds the webhook code)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def move_confirmed(*, portal: str, new_base: str) -> bool:
    """Whether a read already succeeded at ``new_base`` (in this process)."""
    with _lock:
        return (portal, new_base) in _confirmed


def move_trusted(portal: str, base_url: str, new_base: str) -> bool:
    """Whether a write may follow a redirect to ``new_base``: it stays on the configured address, or a read
    through our webhook code already succeeded there (the code is the portal's secret: the same portal)."""
    return origin(new_base) == origin(base_url) or move_confirmed(portal=portal, new_base=new_base)


def move_record(*, portal: str, new_base: str, confirmed: bool) -> None:
    """Remember that ``portal`` answers at ``new_base`` now; tell the health report (only the new origin)."""
    if confirmed:
        with _lock:
            _confirmed.add((portal, new_base))
    try:
        cache.set(
            _key(portal),
            {"to": origin(new_base), "confirmed": confirmed, "at": timezone.now().isoformat()},
            timeout=7 * 24 * 3600,
        )
    except Exception as exc:  # the cache is down: the calls themselves go on, the note waits
        log.warning("could not record that the %s portal moved: %s", portal, type(exc).__name__)


def move_seen(*, portal: str) -> dict[str, Any] | None:
    """``{"to": origin, "confirmed": bool, "at": iso}`` when ``portal`` was seen answering elsewhere."""
    try:
        seen = cache.get(_key(portal))
    except Exception:
        return None
    return seen if isinstance(seen, dict) else None


def moves_seen() -> dict[str, dict[str, Any]]:
    """``move_seen`` of both portals in one cache read: ``{"cms": {...}, ...}``, only those that moved."""
    try:
        seen = cache.get_many([_key("cms"), _key("crm")])
    except Exception:
        return {}
    return {key.rsplit(":", 1)[1]: value for key, value in seen.items() if isinstance(value, dict)}


def moves_forget(*, shared: bool = True) -> None:
    """Forget every move: this process's confirmations and, with ``shared``, the cache's notes (tests)."""
    with _lock:
        _confirmed.clear()
    if shared:
        cache.delete_many([_key("cms"), _key("crm")])

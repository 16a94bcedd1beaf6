"""Reading a whole list method: page by page with ``start``, or in id order with ``>ID`` for big scans."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .behaviour import DOCUMENTED, PortalBehaviour
from .errors import PermanentError

# List methods answer 50 rows a page, whatever is asked [docs/bitrix.md "Lists"].
LIST_PAGE_SIZE = 50


# One REST call's envelope: `BitrixClient.call`.
Call = Callable[[str, Mapping[str, Any] | None], dict[str, Any]]


class ListPaging:
    """Read whole list methods of one portal through its client's ``call`` (``BitrixClient.paging``)."""

    def __init__(
        self, *, call: Call, portal: str, behaviour: Callable[[], PortalBehaviour] = lambda: DOCUMENTED
    ) -> None:
        self.call = call
        self.portal = portal
        self.behaviour = behaviour  # the client's, read at each scan (client_for may hand a newer one)

    def list_all(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        items_key: str | None = None,
        limit: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield every item of a list method, page by page (``start=0, 50, ...``), following ``next``.

        List methods return 50 items a page and ``next`` while more exist
        [docs/bitrix.md "Calling the REST API"]. ``crm.deal.list`` returns a list as
        ``result``; ``sale.order.list`` returns ``{"orders": [...]}`` -> pass ``items_key`` (or let it be
        found when the dict has exactly one list). Stops after ``limit`` items. Errors raise while iterating.
        """
        base = dict(params or {})
        start = base.pop("start", 0)
        seen = 0
        if limit is not None and limit <= 0:
            return
        while True:
            envelope = self.call(method, {**base, "start": start})
            for item in self._items(method, envelope.get("result"), items_key):
                yield item
                seen += 1
                if limit is not None and seen >= limit:
                    return
            next_start = envelope.get("next")
            if next_start is None:
                return
            if int(next_start) <= int(start):
                raise PermanentError(
                    portal=self.portal, method=method, description=f"'next' did not advance: {next_start}"
                )
            start = int(next_start)

    def pages_by_id(
        self,
        method: str,
        params: Mapping[str, Any],
        *,
        id_field: str,
        after: int = 0,
        items_key: str | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield the pages of a list method in id order, each after the last id of the one before.

        The way Bitrix recommends for big scans: ``start=-1`` (no total to count) and a ``>ID`` filter moved
        past each page, instead of offsets that grow slower with every page
        [docs/bitrix.md "Lists"]. ``params`` carries the ``order`` by ``id_field`` ascending.
        A caller that stores each page's last id can resume a scan where it stopped. On a portal that doctor
        found refusing ``start=-1`` each page asks ``start=0``: the ``>ID`` filter still moves the pages on.
        """
        base = dict(params)
        filters = dict(base.pop("filter", None) or {})
        start = self.behaviour().list_start
        while True:
            page_filter = {**filters, f">{id_field}": after}
            envelope = self.call(method, {**base, "filter": page_filter, "start": start})
            page = self._items(method, envelope.get("result"), items_key)
            if not page:
                return
            yield page
            last = int(page[-1][id_field])
            if last <= after:
                raise PermanentError(
                    portal=self.portal, method=method, description=f"'>{id_field}' did not advance"
                )
            after = last
            if len(page) < LIST_PAGE_SIZE:
                return

    def _items(self, method: str, result: Any, items_key: str | None) -> list[Any]:
        if isinstance(result, list) and (items_key is None or not result):
            return result  # an empty PHP array is [] even where a dict is documented
        if isinstance(result, dict):
            items = result.get(items_key) if items_key is not None else None
            if isinstance(items, list):
                return items
            lists = [value for value in result.values() if isinstance(value, list)]
            if items_key is None and len(lists) == 1:
                return lists[0]
        raise PermanentError(
            portal=self.portal,
            method=method,
            description=f"cannot find the item list in the result (items_key={items_key!r})",
        )

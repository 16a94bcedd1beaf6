"""A batch plan: REST commands for one portal, each tied to the items it serves and to its answer's handler.

The plan makes up the `batch` keys itself and resolves them itself, so no caller encodes meaning in a key.
It sends its commands 50 to a `batch` call [docs/bitrix.md "Batch"], however many items they serve. A handler
may plan further commands (the next page of a list, a check of an id a list did not return): they go in a
further round of the same `run`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from statussync import portals
from statussync.bitrix import BitrixClient, BitrixError
from statussync.bitrix.client import BATCH_LIMIT

from .items import Item

Contact = Callable[[str, BitrixError | None], None]

logger = logging.getLogger(__name__)


@dataclass
class _Step:
    command: portals.Command
    items: list[Item]
    on_answer: Callable[[Any, int | None], None]  # the result, and `next` when a list has more rows
    on_error: Callable[[BitrixError], None]
    guarded: bool = False  # a write: not sent once one of its items is no longer live


@dataclass
class BatchPlan:
    """Commands for one portal; `run` sends them as `batch` calls and hands each answer to its handler."""

    client: BitrixClient
    steps: list[_Step] = field(default_factory=list)
    # When the plan's first call left (before its wait for a rate-limit slot): every answer the plan hands
    # on was read after it, a list's later pages and the single reads of a later round too. A handler
    # stamps its item's read with it; the events that came before it are covered by the read (covered.py).
    sent_at: datetime | None = None

    def add(
        self,
        command: portals.Command,
        *,
        items: list[Item],
        on_result: Callable[[Any], None],
        on_error: Callable[[BitrixError], None] | None = None,
        guarded: bool = False,
    ) -> str:
        """Plan `command` for `items`. Its error goes to `on_error`, by default failing each of the items.
        A `guarded` command (a write) is dropped if one of its items stops being live before it is sent.

        Returns the command's key in its `batch` call: a later command of the same call may name its answer
        as `$result[key][field]` (settings/how-to-call-rest-api/batch.md "Linked Calls"). A plan's first 50
        commands go in one call; past them, the caller keeps a command and its reference in one call."""
        key = _key(len(self.steps))
        self.steps.append(
            _Step(
                command,
                items,
                lambda result, _next: on_result(result),
                on_error or (lambda error: _fail_all(items, error)),
                guarded,
            )
        )
        return key

    def add_list(
        self,
        read: portals.ListRead,
        *,
        items: list[Item],
        on_rows: Callable[[list[dict[str, Any]]], None],
        on_error: Callable[[BitrixError], None] | None = None,
    ) -> None:
        """Plan a list read; `on_rows` gets every row it finds, however many pages that takes (a page holds 50
        rows [docs/bitrix.md "Lists"]: 50 orders may be named by more deals than that)."""
        found: list[dict[str, Any]] = []
        failed = on_error or (lambda error: _fail_all(items, error))

        def page(read: portals.ListRead) -> _Step:
            return _Step(read.command(), items, lambda result, more: got(read, result, more), failed)

        def got(read: portals.ListRead, result: Any, more: int | None) -> None:
            rows = read.rows(result)
            found.extend(rows)
            if more is not None and rows:
                self.steps.append(page(read.after(rows[-1])))  # sent in the next round of this run
            else:
                on_rows(found)

        self.steps.append(page(read))

    def run(self, *, contact: Contact, before_send: Callable[[], None] | None = None) -> None:
        """Send the plan, 50 commands a call, then what its handlers planned, until nothing is left.
        `before_send` runs before each call (a write round renews its locks there). A failure of a whole call
        fails every item that had a command in it or in a later call."""
        sent = 0
        while sent < len(self.steps):
            start, sent = sent, len(self.steps)
            for first in range(start, sent, BATCH_LIMIT):
                if before_send is not None:
                    before_send()
                numbered = [
                    (n, step)
                    for n, step in enumerate(self.steps[first : min(first + BATCH_LIMIT, sent)], first)
                    if not step.guarded or all(item.live for item in step.items)
                ]
                failure = self._send(numbered, contact=contact)
                if failure is not None:
                    # What this call's handlers could not plan, and every later command, fail with it.
                    for step in self.steps[first + BATCH_LIMIT :]:
                        _fail_all(step.items, failure)
                    return

    def _send(self, numbered: list[tuple[int, _Step]], *, contact: Contact) -> BitrixError | None:
        """One `batch` call; its answers to their handlers. Returns the error of the call itself, if any."""
        if not numbered:
            return None  # and no contact with the portal to report
        keys = {_key(n): step for n, step in numbered}
        for step in keys.values():
            for item in step.items:
                item.calls += 1
        if self.sent_at is None:
            self.sent_at = timezone.now()
        try:
            answer = self.client.batch({key: step.command for key, step in keys.items()})
        except BitrixError as exc:
            contact(self.client.portal, exc)
            for step in keys.values():
                _fail_all(step.items, exc)
            return exc
        contact(self.client.portal, None)
        for key, step in keys.items():
            try:
                if key in answer.errors:
                    step.on_error(answer.errors[key])
                elif key in answer.results:
                    step.on_answer(answer.results[key], answer.nexts.get(key))
            except Exception as exc:
                # An answer we cannot handle (an unexpected shape, a bug) fails only the items it serves.
                logger.exception("could not handle the answer to %s", step.command[0])
                _fail_all(step.items, exc)
        return None


def _key(n: int) -> str:
    """The `batch` key of a plan's n-th command: the same in every call, so `$result[...]` names it."""
    return f"c{n}"


def _fail_all(items: list[Item], error: Exception) -> None:
    for item in items:
        item.fail(error)

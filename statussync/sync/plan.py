"""A batch plan: REST commands for one portal, each tied to the items it serves and to its answer's handler.

The plan makes up the `batch` keys itself and resolves them itself, so no caller encodes meaning in a key.
One plan is one `batch` round trip (more when it holds over 50 commands), however many items it serves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from statussync import portals
from statussync.bitrix import BitrixClient, BitrixError

from .items import Item

Contact = Callable[[str, BitrixError | None], None]

logger = logging.getLogger(__name__)


@dataclass
class _Step:
    command: portals.Command
    items: list[Item]
    on_result: Callable[[Any], None]
    on_error: Callable[[BitrixError], None]


@dataclass
class BatchPlan:
    """Commands for one portal; `run` sends them as `batch` calls and hands each answer to its handler."""

    client: BitrixClient
    steps: list[_Step] = field(default_factory=list)

    def add(
        self,
        command: portals.Command,
        *,
        items: list[Item],
        on_result: Callable[[Any], None],
        on_error: Callable[[BitrixError], None] | None = None,
    ) -> None:
        """Plan `command` for `items`. Its error goes to `on_error`, by default failing each of the items."""
        self.steps.append(
            _Step(command, items, on_result, on_error or (lambda error: _fail_all(items, error)))
        )

    def run(self, *, contact: Contact) -> None:
        """Send the plan. A failure of the whole call fails every item that had a command in it."""
        if not self.steps:
            return  # and no contact with the portal to report
        keys = {f"c{n}": step for n, step in enumerate(self.steps)}
        for step in self.steps:
            for item in step.items:
                item.calls += 1
        try:
            answer = self.client.batch({key: step.command for key, step in keys.items()})
        except BitrixError as exc:
            contact(self.client.portal, exc)
            for step in self.steps:
                _fail_all(step.items, exc)
            return
        contact(self.client.portal, None)
        for key, step in keys.items():
            try:
                if key in answer.errors:
                    step.on_error(answer.errors[key])
                elif key in answer.results:
                    step.on_result(answer.results[key])
            except Exception as exc:
                # An answer we cannot handle (an unexpected shape, a bug) fails only the items it serves.
                logger.exception("could not handle the answer to %s", step.command[0])
                _fail_all(step.items, exc)


def _fail_all(items: list[Item], error: Exception) -> None:
    for item in items:
        item.fail(error)

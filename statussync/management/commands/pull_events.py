"""`manage.py pull_events [--once]`: read the offline-event queues of portals connected as applications in
pull mode (statussync/intake_pull.py), every BXSYNC_PULL_SECONDS, or at once when the portal's
ONOFFLINEEVENT wakes it (statussync/pull_wake.py), until stopped. `make run` starts it."""

from __future__ import annotations

import os
import signal
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from statussync.intake_pull import WAKE_MIN_TIMEOUT, pull_round
from statussync.pull_wake import WAKE_SOCKET_ENV, PullWaiter

# Wake-ups closer than this share one read: anyone can post to a public address, and a flood of them must
# not spend the portal's budget (a real one comes at most once per minTimeout, on-offline-event.md).
WAKE_MIN_GAP = 0.5


class Command(BaseCommand):
    help = "Read the offline-event queues of the portals connected in pull mode, until stopped."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="read each queue once and exit")

    def handle(self, *args, once: bool = False, **options):
        checked: set[str] = set()
        if once:
            pull_round(checked=checked)
            return
        stop = threading.Event()
        waiter = PullWaiter(os.environ.get(WAKE_SOCKET_ENV, ""))

        def stopping(*_):
            stop.set()
            waiter.interrupt()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stopping)
        # A portal is silent for minTimeout after a wake-up: what it queues meanwhile sends none, so each
        # woken portal is read once more when that time is up.
        follow_up: dict[str, float] = {}
        reading: set[str] | None = None  # None: every portal
        polled = 0.0
        try:
            while not stop.is_set():
                close_old_connections()  # a long-running process: drop a connection the database closed
                started = time.monotonic()
                if reading is None:
                    polled = started
                if pull_round(checked=checked, portals=reading):
                    continue  # a full page: more is waiting, read on at once
                if not waiter.listening:
                    stop.wait(settings.BXSYNC_PULL_SECONDS)
                    continue
                poll_at = polled + settings.BXSYNC_PULL_SECONDS
                woken = waiter.wait(min([poll_at, *follow_up.values()]) - time.monotonic()) - {""}
                now = time.monotonic()
                follow_up.update(dict.fromkeys(woken, now + WAKE_MIN_TIMEOUT))
                due = {portal for portal, at in follow_up.items() if at <= now}
                for portal in due:
                    del follow_up[portal]
                reading = None if now >= poll_at else woken | due
                if woken and not stop.is_set():
                    stop.wait(max(0.0, WAKE_MIN_GAP - (now - started)))
        finally:
            waiter.close()

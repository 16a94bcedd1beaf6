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
        woken = False
        try:
            while not stop.is_set():
                close_old_connections()  # a long-running process: drop a connection the database closed
                started = time.monotonic()
                more = pull_round(checked=checked)
                if more:  # a full page: more is waiting, read on at once
                    continue
                # After a wake-up the portal stays silent for minTimeout: what arrives meanwhile is read
                # when that time is up, not a whole interval later.
                interval = settings.BXSYNC_PULL_SECONDS
                if woken:
                    interval = min(interval, WAKE_MIN_TIMEOUT)
                if not waiter.listening:
                    stop.wait(interval)
                    continue
                woken = waiter.wait(interval)
                if woken and not stop.is_set():
                    stop.wait(max(0.0, WAKE_MIN_GAP - (time.monotonic() - started)))
        finally:
            waiter.close()

"""`manage.py pull_events [--once]`: read the offline-event queues of portals connected as applications in
pull mode (statussync/intake_pull.py), every BXSYNC_PULL_SECONDS, until stopped. `make run` starts it."""

from __future__ import annotations

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from statussync.intake_pull import pull_round


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
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.is_set():
            close_old_connections()  # a long-running process: drop a connection the database closed
            more = pull_round(checked=checked)
            # A full page: more is waiting, read on at once; else wait the interval (or a stop).
            stop.wait(0 if more else settings.BXSYNC_PULL_SECONDS)

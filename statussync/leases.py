"""Leases kept alive by a heartbeat while the work holding them is alive.

Jobs, order locks and background operations are claimed with a short lease (BXSYNC_JOB_LEASE_SECONDS) so
that the work of a process that died — killed, out of memory, its host gone — is taken over within seconds,
not minutes. A run that is alive keeps its leases by renewing them from a thread of its own every
HEARTBEAT_SECONDS, whatever its main thread is waiting for (a REST call, the rate limiter). Fencing is
unchanged: a renewal extends only what still carries the holder's token, and every write checks it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

from django.db import connections

logger = logging.getLogger(__name__)

# How often a live holder renews. The system check bxsync.W001 asks for a lease of three beats or more, so it
# survives renewals that come late or fail (a database busy for a few seconds).
HEARTBEAT_SECONDS = 5.0


@contextlib.contextmanager
def heartbeat(
    *, renew: Callable[[], object], every: float = HEARTBEAT_SECONDS, what: str = ""
) -> Iterator[None]:
    """Call `renew` every `every` seconds from a thread while the block runs; stop when it ends.

    A renewal that fails (the database busy or briefly away) is logged and tried again at the next beat: the
    lease outlasts a few missed beats, and if it does run out the work is fenced like any other stale run."""
    stop = threading.Event()
    every = HEARTBEAT_SECONDS

    def beat() -> None:
        try:
            while not stop.wait(every):
                try:
                    renew()
                except Exception as exc:  # the class name only: a connection error can name hosts
                    logger.warning("could not renew the lease of %s: %s", what or "a run", type(exc).__name__)
        finally:
            # This thread's own database connection ends with it.
            connections.close_all()

    thread = threading.Thread(target=beat, name=f"heartbeat {what}".strip(), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every + 30)

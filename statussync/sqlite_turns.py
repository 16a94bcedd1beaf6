"""On SQLite, the web processes take turns at the database's one write lock through a lock of the kernel's.

Every webhook is a write transaction (`BEGIN IMMEDIATE`, two upserts, `COMMIT`), and the web server has
several processes. When one finds the write lock taken, SQLite's default busy handler sleeps and tries again,
1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50 then 100 ms at a time (`sqliteDefaultBusyCallback`,
https://www.sqlite.org/c3ref/busy_timeout.html leaves the schedule to the implementation; it is in
src/main.c): at 1,000 webhooks a second two processes collide all the time, and the loser sleeps while the
lock is free again within a fraction of a millisecond, so its answer waits milliseconds to a tenth of a
second for nothing (the p99 of `bench/intake_bench.py` on the embedded leg). Waiting in `flock(2)` instead,
a waiter wakes the moment the holder lets go. The workers keep SQLite's own waiting: their transactions are
few and short beside the webhooks'.

PostgreSQL has no such lock (a webhook is one statement), and nothing is done there.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from django.db import connection

_process_lock = threading.Lock()  # flock(2) does not exclude threads sharing one open file
_files: dict[str, int] = {}


def _lock_file(database: str) -> int:
    """This process's descriptor of the lock file beside `database`, opened once."""
    fd = _files.get(database)
    if fd is None:
        fd = os.open(f"{database}-writers.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        _files[database] = fd
    return fd


@contextmanager
def _turn(database: str) -> Iterator[None]:
    with _process_lock:
        fd = _lock_file(database)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def sqlite_write_turn() -> AbstractContextManager[None]:
    """Hold this while a webhook writes, on an SQLite file; does nothing on any other database (and on an
    in-memory SQLite, which only this process sees)."""
    if connection.vendor != "sqlite":
        return nullcontext()
    database = str(connection.settings_dict["NAME"])
    if not database or database == ":memory:" or database.startswith("file:"):
        return nullcontext()
    return _turn(database)

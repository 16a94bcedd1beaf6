"""The web processes take turns at SQLite's write lock in the kernel (statussync/sqlite_turns.py): a writer
waits exactly as long as another process holds its turn, not to the end of one of SQLite's sleeps."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import time
from contextlib import nullcontext

from statussync import sqlite_turns

HELD_SECONDS = 0.5


def _hold_a_turn(path: str, held, released_at) -> None:
    """Another web process: takes its turn, keeps it half a second, says when it let go."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    held.set()
    time.sleep(HELD_SECONDS)
    released_at.value = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process of the machine
    fcntl.flock(fd, fcntl.LOCK_UN)


def test_it_waits_for_another_process_turn_and_takes_it_the_moment_it_ends(tmp_path):
    database = str(tmp_path / "bxsync.sqlite3")
    context = multiprocessing.get_context("spawn")
    held, released_at = context.Event(), context.Value("d", 0.0)
    other = context.Process(target=_hold_a_turn, args=(f"{database}-writers.lock", held, released_at))
    other.start()
    try:
        assert held.wait(30)
        asked = time.monotonic()
        with sqlite_turns._turn(database):
            took = time.monotonic()
    finally:
        other.join(10)

    assert took - asked > HELD_SECONDS / 2  # it waited for the other's turn
    assert 0 <= took - released_at.value < 0.1  # and was woken when it ended


def test_it_does_nothing_on_a_database_other_processes_cannot_share():
    # The test database: PostgreSQL on the scaled leg, an in-memory SQLite on the embedded one.
    assert isinstance(sqlite_turns.sqlite_write_turn(), nullcontext)

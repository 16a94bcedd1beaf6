"""Waking the puller: the portal's ONOFFLINEEVENT reaches the web server, the puller reads the queue at once.

api-reference/events/on-offline-event.md: where bxsync is reachable, the portal posts ONOFFLINEEVENT to an
online handler when records appear in the offline queue, at most once per ``minTimeout`` seconds. The web
server and the puller are separate processes of one `manage.py serve` (statussync/runner.py), so the
web server passes the news on by a datagram on a Unix socket that `serve` names for its children
(``BXSYNC_PULL_WAKE_SOCKET``, one per instance, by port). A datagram lost (no puller, a full buffer) costs
nothing: the puller also polls every BXSYNC_PULL_SECONDS. Each host's web server wakes its own puller.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import tempfile
from pathlib import Path

WAKE_SOCKET_ENV = "BXSYNC_PULL_WAKE_SOCKET"


def pull_wake_socket_path(*, port: int) -> Path:
    """Where the puller of the instance serving on ``port`` listens (the temporary folder, as the metrics)."""
    return Path(tempfile.gettempdir()) / f"bxsync-pull-{port}.sock"


def pull_wake(*, portal: str) -> bool:
    """Tell this host's puller that ``portal``'s queue has records; False if no puller heard it."""
    path = os.environ.get(WAKE_SOCKET_ENV, "")
    if not path:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setblocking(False)
        try:
            sender.sendto(portal.encode()[:16], path)
        except OSError:  # no puller listening yet, or its buffer is full: it is waking anyway
            return False
    return True


class PullWaiter:
    """The puller's end: waits up to an interval, or until a wake-up arrives."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._socket: socket.socket | None = None
        if path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # a predecessor's, killed before it could remove it
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.bind(path)
            os.chmod(path, 0o600)  # only bxsync's own user wakes it
            self._socket.setblocking(False)

    @property
    def listening(self) -> bool:
        """Whether a wake-up can reach this puller."""
        return self._socket is not None

    def wait(self, seconds: float) -> set[str]:
        """Sleep up to ``seconds``; the portals whose wake-ups came meanwhile (empty after the whole wait).
        Every wake-up waiting is taken: one read of a portal serves all of its."""
        if self._socket is None:
            raise RuntimeError("not listening")
        ready, _, _ = select.select([self._socket], [], [], max(0.0, seconds))
        woken: set[str] = set()
        while ready:
            try:
                woken.add(self._socket.recv(64).decode(errors="replace"))
            except BlockingIOError:
                break
        return woken

    def interrupt(self) -> None:
        """Cut a wait short (a stop signal): a datagram to ourselves, naming no portal."""
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.sendto(b"", self.path)

    def close(self) -> None:
        """Stop listening and remove the socket file."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

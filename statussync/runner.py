"""Runs the web server and every worker process in the foreground, and stops them all together.

`make run` and `make demo` share this. One child exiting stops the rest and ends with an error, so the
operator's supervisor (systemd, a container runtime) sees the failure and restarts the whole service.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from django.conf import settings

from statussync.pull_wake import WAKE_SOCKET_ENV, pull_wake_socket_path

logger = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 20
PR_SET_PDEATHSIG = 1  # <sys/prctl.h>
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # not Linux: children may outlive a runner that is killed outright
    _LIBC = None


def _die_with_parent() -> None:
    """Children run in their own session, so Ctrl+C in a terminal reaches only us and we stop them in order
    (a django-q2 cluster whose workers get the signal at the same time as its sentinel takes long to stop).
    So that they do not outlive us if we are killed outright, ask Linux to send them SIGTERM then."""
    # Only a libc call here: this runs between fork and exec, possibly in a process with threads (the demo).
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def service_commands(*, host: str, port: int) -> dict[str, tuple[list[str], dict[str, str]]]:
    """The processes bxsync needs: a production WSGI server, one django-q2 cluster per queue, the puller."""
    python = sys.executable
    manage = str(Path(settings.BASE_DIR) / "manage.py")
    return {
        # granian: HTTP parsed and connections kept in Rust, the WSGI app in each process's threads; against
        # gunicorn's sync worker it took a third off the CPU a webhook costs
        # (docs/decisions.md "The web server: granian"). No access log: it cost a tenth of that CPU again,
        # every event is stored with its time anyway, and the TLS proxy in front keeps one (docs/deploy.md).
        "web": (
            [
                python,
                "-m",
                "granian",
                "--interface",
                "wsgi",
                "--http",
                "1",
                "--host",
                host,
                "--port",
                str(port),
                "--workers",
                str(settings.BXSYNC_WEB_WORKERS),
                "--blocking-threads",
                str(settings.BXSYNC_WEB_THREADS),
                # A stop lets requests in flight finish for up to 10 s, as gunicorn's graceful timeout did.
                "--workers-kill-timeout",
                "10",
                "bxsync_project.wsgi:application",
            ],
            {"BXSYNC_PROCESS": "web"},
        ),
        "worker": ([python, manage, "qcluster"], {}),
        # Q_CLUSTER_NAME only on this process: a web process inheriting it would route every task to the
        # payments queue: django-q2's broker names its queue after Q_CLUSTER_NAME
        # (https://django-q2.readthedocs.io/en/master/cluster.html#multiple-queues).
        "payments": ([python, manage, "qcluster"], {"Q_CLUSTER_NAME": "payments"}),
        # Reads the offline-event queues of portals connected as applications in pull mode; idle otherwise.
        "pull": ([python, manage, "pull_events"], {}),
    }


def metrics_dir_default(*, port: int) -> Path:
    """The metrics folder of the instance on `port` when PROMETHEUS_MULTIPROC_DIR names none."""
    return Path(tempfile.gettempdir()) / f"bxsync-metrics-{port}"


def metrics_dir_reset(*, port: int) -> Path:
    """The folder where every process of this instance keeps its Prometheus counters, emptied: the web
    server's and the workers' processes are separate, and prometheus-client's multiprocess mode adds up their
    files at each scrape (https://prometheus.github.io/client_python/multiprocess/). One per instance (by
    port, so two on one host stay apart), and emptied at each start, as that guide requires: counters
    start at zero with the service, which Prometheus's rate() expects of a restart."""
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    folder = Path(configured) if configured else metrics_dir_default(port=port)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700, parents=True)
    return folder


def services_run(
    *,
    host: str,
    port: int,
    extra_env: Mapping[str, str] | None = None,
    log_file: Path | None = None,
    on_tick: Callable[[], None] | None = None,
) -> int:
    """Start every process; when one exits or we are told to stop, stop all. Returns the exit code.

    The children log to our console, as a supervisor expects (`make run`), or, with `log_file`, append to that
    file (`make demo`, whose console shows a summary instead). `on_tick` is called about five times a second
    while the services run.
    """
    metrics_dir = metrics_dir_reset(port=port)
    env = {**os.environ, **(extra_env or {}), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    # The web server's ONOFFLINEEVENT wakes this instance's puller through it (statussync/pull_wake.py).
    env.setdefault(WAKE_SOCKET_ENV, str(pull_wake_socket_path(port=port)))
    env.pop("Q_CLUSTER_NAME", None)
    children: dict[str, subprocess.Popen] = {}
    stopping = False
    # Append mode: every child writes at the end, so their lines interleave instead of overwriting.
    output = open(log_file, "a", buffering=1) if log_file is not None else None  # noqa: SIM115 - closed below

    def stop(signum, _frame):
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for name, (cmd, own_env) in service_commands(host=host, port=port).items():
            children[name] = subprocess.Popen(  # noqa: S603 - our own argv
                cmd,
                env={**env, **own_env},
                cwd=settings.BASE_DIR,
                stdout=output,
                stderr=subprocess.STDOUT if output is not None else None,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            logger.info("started %s (pid %s)", name, children[name].pid)
        code = 0
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    logger.error("%s exited with %s; stopping everything", name, child.returncode)
                    code = 1
                    stopping = True
                    break
            if on_tick is not None and not stopping:
                on_tick()
            time.sleep(0.2)
        return code
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in children.values():
            try:
                child.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # ours, in the temporary folder
            shutil.rmtree(metrics_dir, ignore_errors=True)
        if output is not None:
            output.close()

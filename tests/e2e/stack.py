"""The end-to-end stack: the sandbox portals, and bxsync as `make run` starts it — `manage.py serve`, which
runs the web server (granian) and two real `qcluster` processes — on a database of its own.

Tests (tests/e2e/) and benchmarks (bench/) act as humans on the sandbox and watch the other portal, the
sandbox's counters and bxsync's database.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import redis
import requests

from bitrix_sandbox import CrmConfig, Sandbox, SandboxConfig, ShopConfig
from statussync.pull_wake import pull_wake_socket_path
from statussync.runner import metrics_dir_default
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
MAPPING = ROOT / "docs" / "mapping.demo.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The scaled stacks' servers (.ci/test-legs moves them with the same variables).
PG_SERVER = os.environ.get("BXSYNC_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
REDIS_SERVER = os.environ.get("BXSYNC_TEST_REDIS", "redis://127.0.0.1:6379")


@dataclass
class Stack:
    sandbox: Sandbox
    url: str
    database_url: str
    env: dict[str, str]
    kind: str = "embedded"  # or "scaled"
    port: int = 0
    log_path: Path | None = None
    server: subprocess.Popen | None = None
    # The environment it was started with: a test may restart it with another (test_chaos.served_with).
    started_env: dict[str, str] = field(default_factory=dict)

    def health(self) -> dict[str, Any]:
        """bxsync's /api/health/ report (200 or 503 alike)."""
        return requests.get(f"{self.url}/api/health/", timeout=10).json()

    def forgive_refused_events(self) -> None:
        """Forget the events bxsync refused so far (a test that stopped it on purpose)."""
        self.sandbox.reset_counters()

    def serve(self) -> None:
        """Start `manage.py serve` (the web server and the qclusters); wait until it answers /api/health/."""
        assert self.log_path is not None
        with self.log_path.open("a") as log:
            self.server = subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "manage.py"),
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def healthy() -> bool:
            if self.server is not None and self.server.poll() is not None:
                raise RuntimeError(f"manage.py serve exited: {self.log_path.read_text()[-4000:]}")
            try:
                return requests.get(f"{self.url}/api/health/live/", timeout=2).status_code == 200
            except requests.RequestException:
                # Not listening yet, or a worker still loading Django on a busy machine: not yet healthy.
                return False

        wait_for(healthy, timeout=60, what="bxsync to answer /api/health/live/")

    def serve_as_started(self) -> None:
        """Restart it with the environment it was started with, if a test restarted it with another: done
        before the next test rather than after the changed one, so a module's last test skips a restart."""
        if self.env == self.started_env:
            return
        self.stop()
        self.env.clear()
        self.env.update(self.started_env)
        self.serve()

    def stop(self) -> None:
        """Stop bxsync as an operator would (SIGTERM: everything stops cleanly)."""
        if self.server is None:
            return
        self.server.send_signal(signal.SIGTERM)
        try:
            self.server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.kill()
        self.server = None

    def kill(self) -> None:
        """SIGKILL every bxsync process at once — the web server, the workers, `serve` itself — as a power cut
        or the OOM killer would: nothing gets to finish, release or record anything."""
        if self.server is None:
            return
        for pid in [*_descendants(self.server.pid), self.server.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.server.wait()
        self.server = None

    def discard(self) -> None:
        """Done with it: SIGKILL, not the operator's SIGTERM, whose clean stop (the qclusters' own, about 3 s)
        nobody looks at, as its database is dropped next; and the files a clean stop would have removed."""
        self.kill()
        shutil.rmtree(metrics_dir_default(port=self.port), ignore_errors=True)
        pull_wake_socket_path(port=self.port).unlink(missing_ok=True)

    @contextmanager
    def another_instance(self, workdir: Path) -> Iterator[Stack]:
        """A second `manage.py serve` on a port of its own against the same database, Redis and portals: a
        second host of a scaled deployment. Stopped when the block ends."""
        port = free_port()
        other = Stack(
            sandbox=self.sandbox,
            url=f"http://127.0.0.1:{port}",
            database_url=self.database_url,
            env=self.env,
            kind=self.kind,
            port=port,
            log_path=workdir / f"serve-{port}.log",
        )
        other.serve()
        try:
            yield other
        finally:
            other.stop()

    def query(self, sql: str, *params: Any) -> list[tuple]:
        """Read bxsync's database over a separate connection (`?` placeholders)."""
        if self.database_url.startswith("sqlite"):
            # WAL lets us read beside the workers.
            with sqlite3.connect(self.database_url.removeprefix("sqlite:///"), timeout=10) as conn:
                return conn.execute(sql, params).fetchall()
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return conn.execute(sql.replace("?", "%s"), params).fetchall()

    def idle(self) -> bool:
        """No event on its way and no job pending or running, and no event emitted while we looked.

        Every write bxsync makes emits an event (its echo), so an unchanged count of emitted events across
        "events delivered, no jobs, events delivered" means no job was midway through a write.
        """
        before = self._events_emitted()
        if not self.sandbox.wait_events_idle(timeout=0.05):
            return False
        busy = self.query("SELECT count(*) FROM statussync_job WHERE state IN ('pending', 'running')")[0][0]
        if busy:
            return False
        return self.sandbox.wait_events_idle(timeout=0.05) and self._events_emitted() == before

    def wait_idle(self, timeout: float = 60.0) -> None:
        wait_for(self.idle, timeout=timeout, what="bxsync to finish its work")

    def _events_emitted(self) -> int:
        counters = self.sandbox.counters()
        return sum(sum(portal.get("events", {}).get("emitted", {}).values()) for portal in counters.values())

    def seed_linked(self, n: int, *, pipeline_share: float = 0.0) -> list[tuple[int, int]]:
        """`n` new order/deal pairs, linked by a reconciliation (as a first `make run` would)."""
        pairs = self.sandbox.seed(
            n, pipeline_share=pipeline_share, orders_without_deal=0, deals_without_order=0
        )
        self.manage("reconcile")
        linked = {
            int(o) for (o,) in self.query("SELECT order_id FROM statussync_link WHERE state = 'active'")
        }
        missing = {o for o, _ in pairs} - linked
        if missing:
            raise AssertionError(f"reconcile did not link orders {sorted(missing)}")
        self.sandbox.advance_clock(5)  # later human changes are whole seconds after creation
        return pairs

    def application_connect(self, portal: Any, side: str, *, reachable: bool = True) -> None:
        """Connect ``portal`` as an application in pull mode, as a manager does in the admin: Connect, the
        browser's sign-in on the portal, back with the code. ``reachable``: bxsync's address given, so the
        portal wakes the puller (ONOFFLINEEVENT)."""
        portal.app.configure(redirect_uri=f"{self.url}/admin/statussync/connectedportal/connect/done/")
        start = _APPLICATION_CONNECT.format(
            side=side,
            address=portal.base_url,
            client_id=portal.app.client_id,
            secret=portal.app.client_secret,
            events_url=self.url if reachable else "",
        )
        sign_in = self.manage("shell", "-c", start).stdout.strip().splitlines()[-1]
        back = requests.get(sign_in, allow_redirects=False, timeout=5).headers["Location"]
        query = {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}
        finish = (
            "from statussync.applications import application_connect_finish as f; f(state={!r}, code={!r})"
        )
        self.manage("shell", "-c", finish.format(query["state"], query["code"]))

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=check,
        )


_APPLICATION_CONNECT = """
from statussync.applications import application_connect_start
print(application_connect_start(portal={side!r}, address={address!r}, client_id={client_id!r},
      client_secret={secret!r}, oauth_server={address!r}, events_url={events_url!r}))
"""


@contextmanager
def running_stack(
    kind: str,
    workdir: Path,
    delivery_workers: int = 1,
    *,
    one_portal: bool = False,
    portal_rate: float = 20,
    **env_overrides: str,
) -> Iterator[Stack]:
    """`embedded`: SQLite and the django-q2 ORM broker, as `make run` does by default. `scaled`: PostgreSQL,
    Redis as cache, rate-limiter store and broker — the scale-out configuration. `delivery_workers`: how many
    events each sandbox portal posts at once (Bitrix posts in parallel to a fast handler). `one_portal`: the
    shop and the CRM on one Bitrix24, one leaky bucket for both; `portal_rate`: its drain per second (Bitrix
    cloud: 2)."""
    template = _template(kind)
    port = free_port()
    web = f"http://127.0.0.1:{port}"
    sandbox = Sandbox(
        SandboxConfig(
            seed=11,
            shop=ShopConfig(
                handler_url=f"{web}/api/bitrix/cms/",
                rate=portal_rate,
                burst=50,
                delivery_workers=delivery_workers,
            ),
            crm=CrmConfig(
                handler_url=f"{web}/api/bitrix/crm/",
                rate=portal_rate,
                burst=50,
                delivery_workers=delivery_workers,
            ),
            one_portal=one_portal,
        )
    ).start()
    if kind == "embedded":
        database_url, backends = f"sqlite:///{workdir / 'bxsync.sqlite3'}", {}
        _sqlite_copy(template, workdir / "bxsync.sqlite3")
    else:
        database_url, backends = _scaled_backends(template)
    env = {
        **os.environ,
        **sandbox.env(),
        **backends,
        "DATABASE_URL": database_url,
        "SECRET_KEY": "e2e-secret-key-not-for-production-0123456789abcdef",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "BXSYNC_RATE_PER_SECOND": "20",
        "BXSYNC_RATE_BURST": "50",
        "BXSYNC_RETRY_BASE_SECONDS": "0.5",
        # A portal outage of a minute is waited out in seconds, not at the production cap of ten minutes.
        "BXSYNC_RETRY_MAX_SECONDS": "5",
        # Work left by a killed worker comes back in 20 s, as in production (the default): a live run keeps
        # its claims by its 5 s heartbeat, and the system check asks for three beats to a lease.
        "BXSYNC_JOB_LEASE_SECONDS": "20",
        "BXSYNC_RATE_MAX_WAIT": "2",
        "BXSYNC_REST_TIMEOUT": "3",
        "Q_POLL": "0.1",
        "BXSYNC_WEB_WORKERS": "2",
        # The stack's server listens on 127.0.0.1 with no proxy in front: /metrics for this host, no token.
        "BXSYNC_METRICS_LOOPBACK": "true",
        # Tests reconcile on demand; a scheduled pass in the middle of one would recover the events a test
        # drops on purpose before it looks (the template's first pass is a day away too, see _template).
        "BXSYNC_RECONCILE_MINUTES": "1440",
        **env_overrides,
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if not backends:
        env["REDIS_URL"] = ""  # empty rather than unset, so a .env cannot fill it in
    stack = Stack(
        sandbox=sandbox,
        url=web,
        database_url=database_url,
        env=env,
        kind=kind,
        port=port,
        log_path=workdir / "serve.log",
        started_env=dict(env),
    )
    try:
        stack.serve()
        yield stack
    finally:
        stack.discard()
        sandbox.stop()
        if kind == "scaled":
            _scaled_backends_drop(database_url, backends["REDIS_URL"])


_DATABASES = itertools.count()
_REDIS_DATABASES = itertools.count()


def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, deepest first (from /proc: `serve` runs its children in sessions of their
    own, so a process group would not reach them)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    stack = list(children.get(pid, []))
    while stack:
        child = stack.pop()
        found.append(child)
        stack.extend(children.get(child, []))
    return found[::-1]


# A migrated database with the demo mapping, made once per process and kind: each stack starts from a copy
# (a file copy, or PostgreSQL's CREATE DATABASE ... TEMPLATE) in well under a second instead of migrating.
_TEMPLATES: dict[str, str] = {}

# The start-up reconciliation is a day away in the template: django-q2's scheduler first looks 30 s after a
# cluster starts (django_q/cluster.py, Sentinel.guard), and a pass that late would land in the middle of a
# test. Tests reconcile on demand; serve's schedules_ensure() keeps an existing row's next_run.
_TEMPLATE_SETUP = """
from datetime import timedelta
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule
from statussync.schedules import schedules_ensure
call_command("migrate", interactive=False, verbosity=0)
call_command("statusmap", "import", {mapping!r})
schedules_ensure()
Schedule.objects.filter(name="bxsync-reconcile").update(next_run=timezone.now() + timedelta(days=1))
"""


def _template(kind: str) -> str:
    """The migrated template of `kind` (an SQLite path or a PostgreSQL database name), made on first use."""
    if kind in _TEMPLATES:
        return _TEMPLATES[kind]
    if kind == "embedded":
        folder = Path(tempfile.mkdtemp(prefix="bxsync-e2e-template-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        template, database_url = str(folder / "template.sqlite3"), f"sqlite:///{folder / 'template.sqlite3'}"
    else:
        template = f"bxsync_e2e_{os.getpid()}_template"
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{template}"')
            conn.execute(f'CREATE DATABASE "{template}"')
        atexit.register(_database_drop, template)
        database_url = f"{PG_SERVER}/{template}"
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": ""}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    setup = _TEMPLATE_SETUP.format(mapping=str(MAPPING))
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", setup],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    _TEMPLATES[kind] = template
    return template


def _sqlite_copy(template: str, path: Path) -> None:
    """A consistent copy of the template file (SQLite's backup API: the WAL's pages included)."""
    with sqlite3.connect(template) as source, sqlite3.connect(path) as target:
        source.backup(target)
    with sqlite3.connect(path) as target:
        target.execute("PRAGMA journal_mode=WAL")


def _database_drop(name: str) -> None:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _scaled_backends(template: str) -> tuple[str, dict[str, str]]:
    """A PostgreSQL database of our own copied from the template, and an empty Redis database of our own, on
    the machine's servers."""
    name = f"bxsync_e2e_{os.getpid()}_{next(_DATABASES)}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    # A Redis database of each stack's own (two stacks on one database would share django-q2's queue and
    # take each other's wake-ups); BXSYNC_E2E_REDIS_DB moves the range so two checkouts can run side by side.
    redis_db = (int(os.environ.get("BXSYNC_E2E_REDIS_DB", "7")) + next(_REDIS_DATABASES)) % 16
    redis_url = f"{REDIS_SERVER}/{redis_db}"
    redis.Redis.from_url(redis_url).flushdb()
    return f"{PG_SERVER}/{name}", {"REDIS_URL": redis_url}


def _scaled_backends_drop(database_url: str, redis_url: str) -> None:
    _database_drop(database_url.rsplit("/", 1)[1])
    redis.Redis.from_url(redis_url).flushdb()

"""Webhook intake on the real stack: events stored per second, and each answer's latency, from N senders.

    .venv/bin/python bench/intake_bench.py [--kind embedded|scaled|both] [--senders 1,4,16] [--seconds 10]

Starts `manage.py serve` (the web server and the workers) on the sandbox portals, as `make run` would, then
posts Bitrix's outgoing-webhook form bodies to `/api/bitrix/crm/` from each number of concurrent senders for a
while, each on its own kept-alive connection. The senders are asyncio connections in two processes of their
own: the sandbox portals run in this process, and senders sharing its interpreter lock would measure the
lock, not bxsync.

Prints a Markdown table; `--out` writes it into the intake section of docs/benchmarks.md. The machine is
shared and noisy: read medians and ratios, not absolutes, and the CPU bxsync used per event.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

# Beside this script (the tests load it by its path too); importing it puts the code measured on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_report import section_write

if TYPE_CHECKING:
    from tests.e2e.stack import Stack

# Each sender's deal ids start here, far from any deal the sandbox has: the events ask for work on deals
# bxsync has never linked, so the workers' share of the machine stays small, as during a real storm of
# events whose reads wait for the portal's rate limit anyway.
FIRST_DEAL = 50_000_000
SECTION_START = "<!-- intake:start -->"
SECTION_END = "<!-- intake:end -->"


@dataclass(frozen=True)
class IntakeResult:
    senders: int
    events: int
    seconds: float
    latencies: list[float]
    failures: dict[int, int]
    # CPU seconds bxsync's processes (web server and workers) used meanwhile: on a shared machine the
    # events/s measure the neighbours too, the CPU per event far less.
    web_cpu: float = 0.0
    worker_cpu: float = 0.0
    sender_cpu: float = 0.0

    @property
    def web_ms_per_event(self) -> float:
        return 1000 * self.web_cpu / self.events if self.events else 0.0

    @property
    def worker_ms_per_event(self) -> float:
        return 1000 * self.worker_cpu / self.events if self.events else 0.0

    @property
    def sender_ms_per_event(self) -> float:
        return 1000 * self.sender_cpu / self.events if self.events else 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


# The senders' own CPU is not bxsync's: Bitrix posts from its servers. They share these two cores, though,
# so they must cost little. `http.client` in a process per sender cost about 1.2 ms of CPU per request (as
# much as bxsync's web server); asyncio connections with the request written by hand cost a few tens of µs.
SENDER_PROCESSES = 2


# `--close`: every request on a new connection (`Connection: close`), for a sender that keeps none alive.
# Set in the environment, which the spawned senders inherit.
CLOSE_ENV = "BXSYNC_BENCH_CLOSE"


def _request(host: str, token: str, deal_id: int) -> bytes:
    """One outgoing-webhook POST as Bitrix sends it: a form body, its length; kept alive unless `--close`."""
    body = urllib.parse.urlencode(
        {
            "event": "ONCRMDEALUPDATE",
            "data[FIELDS][ID]": str(deal_id),
            "ts": str(int(time.time())),
            "auth[application_token]": token,
        }
    ).encode()
    head = (
        f"POST /api/bitrix/crm/ HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n"
        + ("Connection: close\r\n" if os.environ.get(CLOSE_ENV) else "")
        + "\r\n"
    )
    return head.encode() + body


async def _connection_post(
    host: str, port: int, token: str, first_id: int, start: float, stop: float
) -> tuple[int, list[float], dict[int, int]]:
    """One sender: post events back to back on one kept-alive connection (reconnecting when the server
    closes it) until `stop`; returns events stored, latencies, failures."""
    import asyncio

    latencies: list[float] = []
    failures: dict[int, int] = {}
    stored = n = 0
    reader = writer = None
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    while time.monotonic() < stop:
        n += 1
        request = _request(host, token, first_id + n)
        began = time.perf_counter()
        code = 0
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            code = int(head[9:12])
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            if re.search(rb"(?i)\r\nconnection: *close", head) or head.startswith(b"HTTP/1.0"):
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            if writer is not None:
                writer.close()
            writer, code = None, 0
        latencies.append(time.perf_counter() - began)
        if code == 200:
            stored += 1
        else:
            failures[code] = failures.get(code, 0) + 1
    if writer is not None:
        writer.close()
    return stored, latencies, failures


def _sender(
    args: tuple[str, list[int], str, int, float, float],
) -> list[tuple[int, list[float], dict[int, int]]]:
    """A sender process: one asyncio connection per index in `indexes`, each posting its own deals."""
    import asyncio

    host_port, indexes, token, first_id, start, stop = args
    host, port = host_port.split(":")

    async def all_connections() -> list[tuple[int, list[float], dict[int, int]]]:
        return await asyncio.gather(
            *(
                _connection_post(host, int(port), token, first_id + i * 1_000_000, start, stop)
                for i in indexes
            )
        )

    cpu = time.process_time()
    results = asyncio.run(all_connections())
    return results, time.process_time() - cpu


def process_cpu(stack: Stack) -> dict[str, float]:
    """CPU seconds (user + system) used so far by bxsync's web server and by its workers."""
    from tests.e2e.stack import _descendants

    tick = os.sysconf("SC_CLK_TCK")
    used = {"web": 0.0, "worker": 0.0}
    assert stack.server is not None
    for pid in [*_descendants(stack.server.pid), stack.server.pid]:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        # utime and stime, fields 14 and 15 of proc(5), the 12th and 13th after the command's ")".
        seconds = (int(fields[11]) + int(fields[12])) / tick
        # gunicorn: the web server of commits before granian, which bench/goals.py measures too.
        web = b"granian" in cmdline or b"gunicorn" in cmdline
        used["web" if web else "worker"] += seconds
    return used


def intake_measure(stack: Stack, *, senders: int, seconds: float, first_id: int = FIRST_DEAL) -> IntakeResult:
    """Post events from `senders` processes at once for `seconds`; any answer but 200 is a failure."""
    host_port = stack.url.removeprefix("http://")
    token = stack.env["BXSYNC_CRM_APP_TOKEN"]
    processes = min(senders, SENDER_PROCESSES)
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        # Every sender process started and waiting before the clock starts.
        # map_async with a timeout: a sender that cannot start (an import error) would hang a plain map.
        pool.map_async(time.sleep, [0.2] * processes, chunksize=1).get(timeout=120)
        start = time.monotonic() + 0.2
        stop = start + seconds
        jobs = [
            (host_port, list(range(p, senders, processes)), token, first_id, start, stop)
            for p in range(processes)
        ]
        cpu_before = process_cpu(stack)
        per_process = pool.map_async(_sender, jobs, chunksize=1).get(timeout=seconds + 120)
        cpu_after = process_cpu(stack)
    results = [result for process, _ in per_process for result in process]
    sender_cpu = sum(cpu for _, cpu in per_process)
    latencies = [latency for _, lat, _ in results for latency in lat]
    failures: dict[int, int] = {}
    for _, _, fails in results:
        for code, count in fails.items():
            failures[code] = failures.get(code, 0) + count
    return IntakeResult(
        senders=senders,
        events=sum(stored for stored, _, _ in results),
        seconds=seconds,
        latencies=latencies,
        failures=failures,
        web_cpu=cpu_after["web"] - cpu_before["web"],
        worker_cpu=cpu_after["worker"] - cpu_before["worker"],
        sender_cpu=sender_cpu,
    )


def stored_events(stack: Stack) -> int:
    """Events bxsync's database holds (the guarantee: each 200 answered is one row)."""
    return stack.query("SELECT count(*) FROM statussync_inboundevent")[0][0]


def intake_run(
    kind: str, *, senders: list[int], seconds: float, workdir: Path, **env: str
) -> list[IntakeResult]:
    """Start the stack of `kind` and measure each number of senders in turn."""
    # Bitrix cloud's limits on the portals and in bxsync's limiter: the workers' reads of the events'
    # deals wait for the portal as they would in production.
    limits = {"BXSYNC_RATE_PER_SECOND": "2", "BXSYNC_RATE_BURST": "50", "Q_POLL": "0.3", **env}
    from tests.e2e.stack import running_stack

    results = []
    with running_stack(kind, workdir, **limits) as stack:
        stack.sandbox.set_limits(rate=2, burst=50)
        for n, count in enumerate(senders):
            before = stored_events(stack)
            result = intake_measure(stack, senders=count, seconds=seconds, first_id=FIRST_DEAL * (n + 1))
            after = stored_events(stack)
            if after - before != result.events:
                raise AssertionError(
                    f"{result.events} events answered 200 but {after - before} stored ({kind}, {count})"
                )
            results.append(result)
    return results


def intake_rows(results: list[IntakeResult]) -> list[str]:
    rows = []
    for r in results:
        failed = ", ".join(f"{n} x {code or 'no answer'}" for code, n in sorted(r.failures.items())) or "none"
        p50, p99 = r.quantile(0.5) * 1000, r.quantile(0.99) * 1000
        rows.append(
            f"| {r.senders} | {r.rate:.0f} | {p50:.1f} ms | {p99:.1f} ms "
            f"| {max(r.latencies, default=0) * 1000:.0f} ms | {r.events} | {r.web_ms_per_event:.2f} ms "
            f"| {r.worker_ms_per_event:.2f} ms | {r.sender_ms_per_event:.2f} ms | {failed} |"
        )
    return rows


def intake_figures(result: IntakeResult) -> dict[str, float]:
    """One measurement's figures, for `bench/goals.py`."""
    return {
        "senders": result.senders,
        "rate": result.rate,
        "p50_ms": result.quantile(0.5) * 1000,
        "p99_ms": result.quantile(0.99) * 1000,
        "web_ms_per_event": result.web_ms_per_event,
        "failures": sum(result.failures.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kind", choices=["embedded", "scaled", "both"], default="both")
    parser.add_argument("--senders", default="1,4,16", help="comma-separated numbers of concurrent senders")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each number of senders posts")
    parser.add_argument("--keep", help="a folder for the database and serve.log, kept afterwards")
    parser.add_argument("--out", type=Path, help="write the table into this file's intake section")
    parser.add_argument("--json", type=Path, help="also write each measurement's figures here")
    parser.add_argument("--close", action="store_true", help="a new connection for every request")
    parser.add_argument(
        "--env", action="append", default=[], help="NAME=VALUE for bxsync, e.g. a setting to try"
    )
    args = parser.parse_args()

    kinds = ["embedded", "scaled"] if args.kind == "both" else [args.kind]
    senders = [int(n) for n in args.senders.split(",")]
    if args.close:
        os.environ[CLOSE_ENV] = "1"
    extra = dict(item.split("=", 1) for item in args.env)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    envs = "".join(f" --env {e}" for e in args.env) + (" --close" if args.close else "")
    lines = [
        f"`bench/intake_bench.py --kind {args.kind} --senders {args.senders} "
        f"--seconds {args.seconds:g}{envs}`, {stamp}, {platform.machine()}, "
        f"Python {platform.python_version()}, one run on a shared 2-core machine (the senders, the sandbox "
        "portals and bxsync on the same two cores).",
    ]
    figures: dict[str, list[dict[str, float]]] = {}
    for kind in kinds:
        with tempfile.TemporaryDirectory(prefix="bxsync-intake-") as tmp:
            workdir = Path(args.keep) / kind if args.keep else Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            print(f"{kind}: working in {workdir} (serve.log there)", file=sys.stderr)
            results = intake_run(kind, senders=senders, seconds=args.seconds, workdir=workdir, **extra)
        figures[kind] = [intake_figures(r) for r in results]
        label = "SQLite + ORM broker" if kind == "embedded" else "PostgreSQL + Redis"
        lines += [
            "",
            f"### {kind} ({label})",
            "",
            "| senders | events/s stored | p50 | p99 | max | events | web CPU per event | workers' CPU per "
            "event | senders' CPU per event | answers other than 200 |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *intake_rows(results),
        ]
    text = "\n".join(lines)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    if args.out:
        block = f"{SECTION_START}\n{text}\n{SECTION_END}"
        section_write(args.out, block, start=SECTION_START, end=SECTION_END, heading="Webhook intake")


if __name__ == "__main__":
    main()

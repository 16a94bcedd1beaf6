"""Webhook intake on the real stack: events stored per second, and each answer's latency, from N senders.

    .venv/bin/python bench/intake_bench.py [--kind embedded|scaled|both] [--senders 1,4,16] [--seconds 10]

Starts `manage.py serve` (gunicorn and the workers) on the sandbox portals, as `make run` would, then posts
Bitrix's outgoing-webhook form bodies to `/api/bitrix/crm/` from each number of concurrent senders for a
while, each on its own connection. Senders are processes, not threads: the sandbox portals run in this
process, and senders sharing its interpreter lock would measure the lock, not bxsync.

Prints a Markdown table; `--out` writes it into the intake section of docs/benchmarks.md. The machine is
shared and noisy: read medians and ratios, not absolutes, and the CPU bxsync used per event.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import platform
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Beside this script, for the tests that load it by its path too.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_report import section_write  # noqa: E402

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

    @property
    def web_ms_per_event(self) -> float:
        return 1000 * self.web_cpu / self.events if self.events else 0.0

    @property
    def worker_ms_per_event(self) -> float:
        return 1000 * self.worker_cpu / self.events if self.events else 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _sender(args: tuple[str, int, str, int, float, float]) -> tuple[int, list[float], dict[int, int]]:
    """One sender: post events back to back on one kept-alive connection (reconnecting when the server
    closes it) from `start` until `stop` (monotonic clock); returns events stored, latencies, failures."""
    host_port, index, token, first_id, start, stop = args
    host, port = host_port.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    latencies: list[float] = []
    failures: dict[int, int] = {}
    stored = 0
    n = 0
    while time.monotonic() < start:
        time.sleep(0.001)
    while time.monotonic() < stop:
        n += 1
        body = urllib.parse.urlencode(
            {
                "event": "ONCRMDEALUPDATE",
                "data[FIELDS][ID]": str(first_id + index * 1_000_000 + n),
                "ts": str(int(time.time())),
                "auth[application_token]": token,
            }
        )
        began = time.perf_counter()
        try:
            conn.request(
                "POST",
                "/api/bitrix/crm/",
                body=body,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            response = conn.getresponse()
            response.read()
            code = response.status
            if response.will_close:
                conn.close()
        except (OSError, http.client.HTTPException):
            conn.close()
            code = 0
        latencies.append(time.perf_counter() - began)
        if code == 200:
            stored += 1
        else:
            failures[code] = failures.get(code, 0) + 1
    conn.close()
    return stored, latencies, failures


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
        used["web" if b"gunicorn" in cmdline else "worker"] += seconds
    return used


def intake_measure(stack: Stack, *, senders: int, seconds: float, first_id: int = FIRST_DEAL) -> IntakeResult:
    """Post events from `senders` processes at once for `seconds`; any answer but 200 is a failure."""
    host_port = stack.url.removeprefix("http://")
    token = stack.env["BXSYNC_CRM_APP_TOKEN"]
    context = multiprocessing.get_context("spawn")
    with context.Pool(senders) as pool:
        # Every sender process started and waiting before the clock starts (spawning 16 takes seconds here).
        # map_async with a timeout: a sender that cannot start (an import error) would hang a plain map.
        pool.map_async(time.sleep, [0.2] * senders, chunksize=1).get(timeout=120)
        start = time.monotonic() + 0.2
        stop = start + seconds
        jobs = [(host_port, i, token, first_id, start, stop) for i in range(senders)]
        cpu_before = process_cpu(stack)
        results = pool.map_async(_sender, jobs, chunksize=1).get(timeout=seconds + 120)
        cpu_after = process_cpu(stack)
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
            f"| {r.worker_ms_per_event:.2f} ms | {failed} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kind", choices=["embedded", "scaled", "both"], default="both")
    parser.add_argument("--senders", default="1,4,16", help="comma-separated numbers of concurrent senders")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each number of senders posts")
    parser.add_argument("--keep", help="a folder for the database and serve.log, kept afterwards")
    parser.add_argument("--out", type=Path, help="write the table into this file's intake section")
    parser.add_argument(
        "--env", action="append", default=[], help="NAME=VALUE for bxsync, e.g. a setting to try"
    )
    args = parser.parse_args()

    kinds = ["embedded", "scaled"] if args.kind == "both" else [args.kind]
    senders = [int(n) for n in args.senders.split(",")]
    extra = dict(item.split("=", 1) for item in args.env)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    envs = "".join(f" --env {e}" for e in args.env)
    lines = [
        f"`bench/intake_bench.py --kind {args.kind} --senders {args.senders} "
        f"--seconds {args.seconds:g}{envs}`, {stamp}, {platform.machine()}, "
        f"Python {platform.python_version()}, one run on a shared 2-core machine (the senders, the sandbox "
        "portals and bxsync on the same two cores).",
    ]
    for kind in kinds:
        with tempfile.TemporaryDirectory(prefix="bxsync-intake-") as tmp:
            workdir = Path(args.keep) / kind if args.keep else Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            print(f"{kind}: working in {workdir} (serve.log there)", file=sys.stderr)
            results = intake_run(kind, senders=senders, seconds=args.seconds, workdir=workdir, **extra)
        label = "SQLite + ORM broker" if kind == "embedded" else "PostgreSQL + Redis"
        lines += [
            "",
            f"### {kind} ({label})",
            "",
            "| senders | events/s stored | p50 | p99 | max | events | web CPU per event | workers' CPU per "
            "event | answers other than 200 |",
            "|---|---|---|---|---|---|---|---|---|",
            *intake_rows(results),
        ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        block = f"{SECTION_START}\n{text}\n{SECTION_END}"
        section_write(args.out, block, start=SECTION_START, end=SECTION_END, heading="Webhook intake")


if __name__ == "__main__":
    main()

"""Push versus pull, the same workload: bxsync connected by webhooks (push: the portals post every event
to it) and as Bitrix24 applications in pull mode (it reads the portals' offline queues), woken by the portals'
ONOFFLINEEVENT where it is reachable, or polling every second where it is not. Both portals and bxsync's
limiter are held to Bitrix cloud's limits (2 requests/s, burst 50). The workload: a bulk edit of `--deals`
deals while `--payments` customers pay, one after another. Reported: HTTP requests per change (every request
bxsync made of both portals from the edit until all is written and settled: reads, writes, and in pull mode
the queue's own reads and clears), time to converge, and payment latency (payment made → deal at the paid
stage, seen from outside). Writes its section of docs/benchmarks.md with `--out`.

    .venv/bin/python bench/pull_bench.py [--kind embedded|scaled|both] [--deals 200] [--payments 10]
                                         [--out docs/benchmarks.md]

One run on a shared machine: read the ratios between the modes, not the absolutes.
tests/bench/test_pull_bench_small.py runs the same functions at a tiny size, so the benchmark never rots.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Beside this script (the tests load it by its path too); importing it puts the code measured on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_report import section_write

from tests.e2e import stack as stack_module
from tests.e2e.stack import Stack, running_stack
from tests.support.waiting import wait_for

SECTION_START = "<!-- bench/pull_bench.py: start -->"
SECTION_END = "<!-- bench/pull_bench.py: end -->"
PAID_STAGE = "PREPAYMENT_INVOICE"  # the demo mapping's stage for a paid order
MODES = {
    "push": "push (webhooks)",
    "pull": "pull, woken by ONOFFLINEEVENT, polled every 30 s",
    "pull-polled": "pull, polled every 1 s",
}
CLOUD = {"BXSYNC_RATE_PER_SECOND": "2", "BXSYNC_RATE_BURST": "50"}


def mode_env(mode: str) -> dict[str, str]:
    """bxsync's settings for `mode`: in pull mode no webhook at all."""
    if mode == "push":
        return dict(CLOUD)
    # Woken, the poll is only a fallback: 30 s, as docs/bitrix-setup.md suggests where bxsync is reachable.
    poll = "30" if mode == "pull" else "1"
    return {**CLOUD, "BXSYNC_CMS_REST_URL": "", "BXSYNC_CRM_REST_URL": "", "BXSYNC_PULL_SECONDS": poll}


def mode_connect(stack: Stack, mode: str) -> None:
    """Pull modes: no outgoing webhook; both portals connected as applications (reachable or not)."""
    if mode == "push":
        return
    stack.sandbox.configure_events(shop_handler="", crm_handler="")
    for portal, side in ((stack.sandbox.shop, "cms"), (stack.sandbox.crm, "crm")):
        stack.application_connect(portal, side, reachable=mode == "pull")


def settled(stack: Stack) -> bool:
    """No event on its way, nothing in the offline queues, no job pending or running."""
    sb = stack.sandbox
    if not sb.wait_events_idle(timeout=0.05) or sb.shop.app.depth() + sb.crm.app.depth():
        return False
    return not stack.query("SELECT count(*) FROM statussync_job WHERE state IN ('pending', 'running')")[0][0]


def settle(stack: Stack, timeout: float = 300) -> None:
    # Twice, apart: a record the puller is about to store is in neither count.
    wait_for(lambda: settled(stack) and not time.sleep(1.2) and settled(stack), timeout=timeout)


def workload(stack: Stack, pairs: list[tuple[int, int]], *, payments: int) -> dict[str, Any]:
    """Move every deal of `pairs` but the first `payments` to PREPARATION at once, and meanwhile let those
    `payments` customers pay, one after another; measure until every order follows and all is settled."""
    sb = stack.sandbox
    paid, moved = pairs[:payments], pairs[payments:]
    sb.reset_counters()
    started = time.monotonic()
    sb.crm.bulk_move([deal for _, deal in moved], "PREPARATION", user_id=7)
    latencies = []
    for order_id, deal_id in paid:
        at = time.monotonic()
        sb.shop.pay_order(order_id)
        wait_for(
            lambda d=deal_id: sb.crm.get_deal(d)["STAGE_ID"] == PAID_STAGE,
            timeout=120,
            interval=0.01,
            what=f"payment of order {order_id}",
        )
        latencies.append(time.monotonic() - at)
    wait_for(
        lambda: all(sb.shop.get_order(o)["statusId"] == "P" for o, _ in moved),
        timeout=600,
        interval=0.2,
        what="the bulk edit",
    )
    seconds = time.monotonic() - started
    settle(stack)
    counters = sb.counters()
    http = sum(portal.get("rest_requests", 0) for portal in counters.values())
    calls: dict[str, int] = {}
    for portal in counters.values():
        for method, n in portal.get("rest_calls", {}).items():
            calls[method] = calls.get(method, 0) + n
    changes = len(moved) + len(paid)
    return {
        "changes": changes,
        "http": http,
        "per_change": http / changes,
        "calls": calls,
        "writes": sb.rest_writes(),
        "seconds": seconds,
        "latencies": latencies,
        "rejected": sum(sum(p.get("rest_rejected", {}).values()) for p in counters.values()),
    }


def measure(
    kind: str, mode: str, *, deals: int, payments: int, workdir: Path, refill_seconds: float = 25
) -> dict[str, Any]:
    """One mode on a stack of its own: seed, connect, let the buckets refill, run the workload."""
    # One stack at a time, so each takes the first Redis database of BXSYNC_E2E_REDIS_DB's range (the
    # scaled kind) rather than the next: the databases after it are other checkouts'.
    stack_module._REDIS_DATABASES = itertools.count()
    workdir.mkdir(parents=True, exist_ok=True)
    with running_stack(kind, workdir, portal_rate=2, **mode_env(mode)) as stack:
        mode_connect(stack, mode)
        pairs = stack.seed_linked(deals + payments)
        settle(stack)
        time.sleep(refill_seconds)  # the linking pass's requests drained from the portals' buckets
        return {"mode": mode, "kind": kind, **workload(stack, pairs, payments=payments)}


def _latency(values: list[float]) -> str:
    if not values:
        return "—"
    return f"median {statistics.median(values):.2f} s, max {max(values):.2f} s"


def section(results: list[dict[str, Any]], *, command: str) -> list[str]:
    """The benchmark's section of docs/benchmarks.md: one table per kind, a row per mode."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        SECTION_START,
        f"`{command}`, {stamp}, {platform.machine()}, Python {platform.python_version()}, one run on the "
        "shared 2-core machine. Written by the benchmark between its markers.",
        "",
    ]
    for kind in dict.fromkeys(r["kind"] for r in results):
        lines += [
            f"### {kind}",
            "",
            "| mode | changes | HTTP requests | per change | converged | payment latency | rejected |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in results if r["kind"] == kind):
            lines.append(
                f"| {MODES[r['mode']]} | {r['changes']} | {r['http']} | {r['per_change']:.3f} "
                f"| {r['seconds']:.1f} s | {_latency(r['latencies'])} | {r['rejected']} |"
            )
        lines.append("")
    lines.append(SECTION_END)
    return lines


def write_section(path: Path, lines: list[str]) -> None:
    """Replace this benchmark's section of `path` (between its markers), or append it under its heading;
    the rest stays."""
    section_write(path, "\n".join(lines), start=SECTION_START, end=SECTION_END, heading="Push versus pull")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kind", choices=["embedded", "scaled", "both"], default="both")
    parser.add_argument("--deals", type=int, default=200)
    parser.add_argument("--payments", type=int, default=10)
    parser.add_argument("--modes", default=",".join(MODES), help=f"some of {','.join(MODES)}")
    parser.add_argument("--out", type=Path, help="write the section into this file")
    args = parser.parse_args()
    kinds = ["embedded", "scaled"] if args.kind == "both" else [args.kind]
    results = []
    for kind in kinds:
        for mode in args.modes.split(","):
            with tempfile.TemporaryDirectory(prefix="bxsync-pull-bench-") as tmp:
                result = measure(kind, mode, deals=args.deals, payments=args.payments, workdir=Path(tmp))
            results.append(result)
            print(f"{kind} {mode}: {result['http']} requests, {result['calls']}", file=sys.stderr)
    command = f"bench/pull_bench.py --kind {args.kind} --deals {args.deals} --payments {args.payments}"
    lines = section(results, command=command)
    print("\n".join(lines))
    if args.out:
        write_section(args.out, lines)


if __name__ == "__main__":
    main()

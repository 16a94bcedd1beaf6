"""bxsync end to end on the sandbox portals, limited as Bitrix cloud is (2 requests/s, burst 50): payment
latency alone; a bulk edit of many deals; a storm of events (each delivered twice, shuffled) with payments
made during it. Each measurement: time to converge, HTTP requests and their ratio to the naive approach,
REST commands per change and per job, payment latency. Writes its section of docs/benchmarks.md.

    .venv/bin/python bench/sync_bench.py [--kind embedded|scaled|both] [--deals 1000] [--storm-rounds 5]
                                         [--payments 20] [--only payments,bulk,storm]

The machine is shared and noisy: the numbers are medians and ratios from one run, not absolutes.
tests/bench/test_bench_small.py runs the same functions at a tiny size, so the benchmark never rots.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests

# Beside this script (the tests load it by its path too); importing it puts the code measured on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_report import ROOT, section_write

from tests.e2e.stack import Stack, running_stack
from tests.support.waiting import wait_for


def payment_latency(stack: Stack, order_id: int, deal_id: int, paid_stage: str) -> float:
    """Seconds from a customer's payment in the shop to the deal at the paid stage in the CRM."""
    started = time.monotonic()
    stack.sandbox.shop.pay_order(order_id)
    wait_for(
        lambda: stack.sandbox.crm.get_deal(deal_id)["STAGE_ID"] == paid_stage,
        timeout=120,
        interval=0.01,
        what=f"payment of order {order_id}",
    )
    return time.monotonic() - started


def quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    median = statistics.median(ordered)
    return f"median {median:.2f} s, p95 {p95:.2f} s, max {ordered[-1]:.2f} s (n={len(ordered)})"


def total(counters: dict, key: str, exclude: str = "") -> int:
    """A counter summed over both portals (and over methods, but `exclude`)."""
    return sum(v for portal in counters.values() for k, v in portal.get(key, {}).items() if k != exclude)


def intake_rate(stack: Stack, *, events: int, senders: int) -> float:
    """Events per second the webhook endpoint stores, `senders` posting at once (Bitrix's queue posts in
    parallel to fast handlers). The events name deals bxsync has never seen, so workers have little to do."""
    url = f"{stack.url}/api/bitrix/crm/"
    token = stack.env["BXSYNC_CRM_APP_TOKEN"]
    base = 10_000_000 + senders * events

    def post(n: int) -> int:
        body = {
            "event": "ONCRMDEALUPDATE",
            "data[FIELDS][ID]": str(base + n),
            "ts": str(int(time.time())),
            "auth[application_token]": token,
        }
        return requests.post(url, data=body, timeout=30).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=senders) as pool:
        statuses = list(pool.map(post, range(events)))
    elapsed = time.monotonic() - started
    if set(statuses) != {200}:
        raise RuntimeError(f"intake answered {sorted(set(statuses))}")
    return events / elapsed


# A handler that reads and writes per event (the PHP-handler approach): read the deal, read the order, write
# the order — three requests per change.
NAIVE_REQUESTS_PER_CHANGE = 3
WRITE_METHODS = ("sale.order.update", "crm.deal.update", "crm.timeline.comment.add")
SECTION_START = "<!-- bench/sync_bench.py: start -->"
SECTION_END = "<!-- bench/sync_bench.py: end -->"


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) by nearest rank; with n < 100, p99 is the maximum."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def latency_summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50": statistics.median(values) if values else None,
        "p99": percentile(values, 0.99) if values else None,
        "max": max(values) if values else None,
    }


@dataclass
class Cost:
    """What the portals served between `start` and `finish` (sandbox counters), and bxsync's jobs and runs."""

    http: int = 0
    commands: int = 0
    writes: int = 0
    by_method: dict = field(default_factory=dict)
    rejected: int = 0
    events_delivered: int = 0
    jobs: int = 0
    runs: int = 0
    jobs_per_run_median: float = 0.0
    busy: int = 0  # jobs given back at least once because another run held their order


def cost_of(stack: Stack, first_job_id: int) -> Cost:
    counters = stack.sandbox.counters()
    by_method: dict[str, int] = {}
    for portal in counters.values():
        for method, n in portal.get("rest_calls", {}).items():
            by_method[method] = by_method.get(method, 0) + n
    commands = sum(n for method, n in by_method.items() if method != "batch")
    runs = [
        n
        for (n,) in stack.query(
            "SELECT count(*) FROM statussync_job WHERE id > ? AND claim_token != '' GROUP BY claim_token",
            first_job_id,
        )
    ]
    return Cost(
        http=sum(portal.get("rest_requests", 0) for portal in counters.values()),
        commands=commands,
        writes=sum(by_method.get(m, 0) for m in WRITE_METHODS),
        by_method=dict(sorted(by_method.items())),
        rejected=total(counters, "rest_rejected"),
        events_delivered=sum(
            sum(portal.get("events", {}).get("delivered", {}).values()) for portal in counters.values()
        ),
        jobs=stack.query("SELECT count(*) FROM statussync_job WHERE id > ?", first_job_id)[0][0],
        runs=len(runs),
        jobs_per_run_median=statistics.median(runs) if runs else 0.0,
        busy=stack.query(
            "SELECT count(*) FROM statussync_job WHERE id > ? AND last_error LIKE ?",
            first_job_id,
            "%order busy%",
        )[0][0],
    )


def last_job_id(stack: Stack) -> int:
    return stack.query("SELECT coalesce(max(id), 0) FROM statussync_job")[0][0]


def settle(stack: Stack, seconds: float) -> None:
    """Let the portals' buckets refill (a real portal's would between two bursts of work)."""
    stack.wait_idle(timeout=600)
    time.sleep(seconds)


def payments_alone(stack: Stack, pairs: list[tuple[int, int]], *, gap: float = 1.0) -> dict:
    """Customers paying one at a time, `gap` seconds apart, nothing else going on."""
    latencies = []
    for order_id, deal_id in pairs:
        latencies.append(payment_latency(stack, order_id, deal_id, PAID_STAGE))
        time.sleep(gap)
    stack.wait_idle(timeout=600)
    return {**latency_summary(latencies), "in_bxsync": in_bxsync(stack, pairs)}


def in_bxsync(stack: Stack, pairs: list[tuple[int, int]]) -> dict:
    """The payments' latency inside bxsync, as its audit records it: from the event's arrival (its job is
    made as it is stored) to the deal's stage written and the run recorded. The portal's own event queue,
    where a payment's event may wait behind the echoes of bxsync's writes, is not in it."""
    latencies = []
    for order_id, _ in pairs:
        rows = stack.query(
            "SELECT latency_ms FROM statussync_auditentry WHERE order_id = ? AND outcome = 'payment_applied' "
            "AND latency_ms IS NOT NULL ORDER BY id LIMIT 1",
            str(order_id),
        )
        if rows:
            latencies.append(rows[0][0] / 1000)
    return latency_summary(latencies)


def payments_during(stack: Stack, pairs: list[tuple[int, int]], busy: Callable[[], bool]) -> dict:
    """Customers paying one after another while `busy()`; the latencies and how many were made busy."""
    latencies, during = [], 0
    for order_id, deal_id in pairs:
        was_busy = busy()
        latencies.append(payment_latency(stack, order_id, deal_id, PAID_STAGE))
        during += was_busy
    return {**latency_summary(latencies), "made_during_the_work": during}


def converge(stack: Stack, pairs: list[tuple[int, int]], status: str, payers: list[tuple[int, int]]) -> tuple:
    """Pay `payers` while the work runs, then wait until every order of `pairs` has `status`."""
    started = time.monotonic()

    def busy() -> bool:
        return any(stack.sandbox.shop.get_order(o)["statusId"] != status for o, _ in pairs)

    payments = payments_during(stack, payers, busy)
    wait_for(lambda: not busy(), timeout=1800, interval=0.2, what=f"every order at {status}")
    seconds = time.monotonic() - started
    stack.wait_idle(timeout=600)
    return seconds, {**payments, "in_bxsync": in_bxsync(stack, payers)}


# Each workload runs twice on the same deals: once alone, for its cost (a payment's own run is four requests,
# and would blur the ratio), then again with customers paying, for their latency. Each time to another stage,
# so every deal changes: (the deals' stage, the orders' status) per pass.
BULK_STAGES = {"cost": ("PREPARATION", "P"), "payments": ("EXECUTING", "D")}
STORM_STAGES = {"cost": ("NEW", "N"), "payments": ("PREPARATION", "P")}


Pairs = list[tuple[int, int]]


def bulk_edit(stack: Stack, pairs: Pairs, payers: Pairs, *, to: tuple) -> dict:
    """A manager moves every deal of `pairs` to stage `to[0]` at once (one event per deal); customers pay
    `payers` meanwhile. Converged when every order has status `to[1]`."""
    stack.sandbox.reset_counters()
    first = last_job_id(stack)
    stack.sandbox.crm.bulk_move([d for _, d in pairs], to[0], user_id=9)
    seconds, payments = converge(stack, pairs, to[1], payers)
    return report_of("bulk", stack, first, changes=len(pairs), seconds=seconds, payments=payments)


def storm(
    stack: Stack, pairs: list[tuple[int, int]], payers: list[tuple[int, int]], *, rounds: int, to: tuple
) -> dict:
    """`rounds` events per deal: the stage moved to `to[0]`, then the title edited `rounds - 1` times
    (Bitrix fires ONCRMDEALUPDATE for any edit), each delivered twice and shuffled within half a second;
    customers pay `payers` meanwhile. Converged when every order has status `to[1]`."""
    stack.sandbox.reset_counters()
    stack.sandbox.set_faults("crm", duplicate_rate=1.0, reorder_window=0.5)
    first = last_job_id(stack)
    try:
        deal_ids = [d for _, d in pairs]
        stack.sandbox.crm.bulk_move(deal_ids, to[0], user_id=9)
        for n in range(rounds - 1):
            for deal_id in deal_ids:
                stack.sandbox.crm.update_deal(
                    deal_id, {"TITLE": f"storm {n} #{deal_id}"}, actor=9, source="human"
                )
        seconds, payments = converge(stack, pairs, to[1], payers)
    finally:
        stack.sandbox.clear_faults()
    return report_of("storm", stack, first, changes=len(pairs), seconds=seconds, payments=payments)


def twice(run: Callable[..., dict], stages: dict, payers: list, settle_first: Callable[[], None]) -> dict:
    """The workload alone (its cost), then again with `payers` paying (their latency, that pass's time)."""
    settle_first()
    alone = run([], to=stages["cost"])
    settle_first()
    paying = run(payers, to=stages["payments"])
    # The pass with customers paying costs its payments' runs too: the brief's "N customers paying
    # meanwhile" row, against the same naive cost of the workload's changes.
    with_payments = {
        k: paying[k] for k in ("http", "http_ratio", "runs", "jobs", "busy", "by_method", "writes")
    }
    return {
        **alone,
        "payments": paying["payments"],
        "seconds_with_payments": paying["seconds"],
        "with_payments": with_payments,
    }


def report_of(name: str, stack: Stack, first: int, *, changes: int, seconds: float, payments: dict) -> dict:
    cost = cost_of(stack, first)
    naive = NAIVE_REQUESTS_PER_CHANGE * changes
    reads = cost.commands - cost.writes
    return {
        "name": name,
        "changes": changes,
        "seconds": seconds,
        "http": cost.http,
        "naive_http": naive,
        "http_ratio": cost.http / naive,
        "commands": cost.commands,
        "commands_per_change": cost.commands / changes,
        # An echo (the event of bxsync's own write) is a job that only reads: its cost is what a job's reads
        # cost on average (read-backs of writes included, so this is an upper bound).
        "commands_per_echo": reads / max(cost.jobs, 1),
        "writes": cost.writes,
        "rejected": cost.rejected,
        "events_delivered": cost.events_delivered,
        "jobs": cost.jobs,
        "runs": cost.runs,
        "jobs_per_run_median": cost.jobs_per_run_median,
        "busy": cost.busy,
        "by_method": cost.by_method,
        "payments": payments,
    }


PAID_STAGE = "PREPAYMENT_INVOICE"


def measure(
    kind: str,
    workdir: Path,
    *,
    deals: int,
    rounds: int,
    payments: int,
    only: set[str],
    refill_seconds: float = 26.0,
) -> dict:
    """Every measurement of `only` on one stack of `kind`; a dict for the report (and for the tests). Before
    each, `refill_seconds` of rest let the portals' buckets refill (50 slots at 2/s: 25 s)."""
    # Bitrix cloud's own limits on both sides, 2 requests/s with a burst of 50, and bxsync's limiter set to
    # match; the default broker poll of 0.3 s. A limiter wait of up to 10 s, and a lease that outlasts it.
    limits = {
        "BXSYNC_RATE_PER_SECOND": "2",
        "BXSYNC_RATE_BURST": "50",
        "BXSYNC_RATE_MAX_WAIT": "10",
        "BXSYNC_JOB_LEASE_SECONDS": "60",
        "Q_POLL": "0.3",
    }
    # Bitrix's queue posts to a fast handler in parallel; four senders at once on each portal.
    with running_stack(kind, workdir, delivery_workers=4, **limits) as stack:
        stack.sandbox.set_limits(rate=2, burst=50)
        return measure_on(
            stack, deals=deals, rounds=rounds, payments=payments, only=only, refill_seconds=refill_seconds
        )


def measure_on(
    stack: Stack, *, deals: int, rounds: int, payments: int, only: set[str], refill_seconds: float
) -> dict:
    """The measurements of `only` on a running stack (the tests' own, at a tiny size)."""
    out: dict = {"kind": stack.kind}
    n_payers = payments * (1 + ("bulk" in only) + ("storm" in only))
    pairs = stack.seed_linked(n_payers + deals)
    payers, work = pairs[:n_payers], pairs[n_payers:]
    if "payments" in only:
        settle(stack, refill_seconds)  # the linking pass of the seed spent the portals' burst
        out["payments"] = payments_alone(stack, payers[:payments])
    payers = payers[payments:]

    def refill() -> None:
        settle(stack, refill_seconds)

    if "bulk" in only:
        out["bulk"] = twice(
            lambda payers, to: bulk_edit(stack, work, payers, to=to), BULK_STAGES, payers[:payments], refill
        )
        payers = payers[payments:]
    if "storm" in only:
        out["storm"] = twice(
            lambda payers, to: storm(stack, work, payers, rounds=rounds, to=to),
            STORM_STAGES,
            payers[:payments],
            refill,
        )
    return out


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def section(results: list[dict], *, command: str, load: str) -> list[str]:
    """The benchmark's section of docs/benchmarks.md."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        SECTION_START,
        "## Bulk edit, event storm and payments",
        "",
        "This section is written by `bench/sync_bench.py` (between its markers; the rest of the file is "
        "left alone). It supersedes the bulk-edit and payment rows of earlier runs above, which predate "
        "reads by list.",
        "",
        f"`{command}`, {stamp}, {platform.machine()}, Python {platform.python_version()}, {os.cpu_count()} "
        f"cores; {load}. Both sandbox portals limit bxsync to Bitrix cloud's 2 requests/s with a burst of "
        "50, and bxsync's own limiter is set to the same. One run each: read medians and ratios, not "
        "absolutes.",
        "",
        "- **naive**: a handler that reads the deal, reads the order and writes the order per change: "
        f"{NAIVE_REQUESTS_PER_CHANGE} requests per change. Goal: bxsync's HTTP requests ≤ 1% of that.",
        "- **commands per echo**: an echo (the event of bxsync's own write) is a job that only reads; the "
        "figure is the REST read commands of the whole measurement per job handled (read-backs of writes "
        "included, so an upper bound). Goal ≤ 1.",
        "- **payment latency**: the goal's measure is bxsync's own, from the event's arrival to the deal's "
        "stage written (the audit's latency of the payment, taken when its run is recorded, so a little "
        "more). The second row adds the portal's side: from the customer's payment in the shop to the deal "
        "at the paid stage, polled every 10 ms; the sandbox, like Bitrix, sends one portal's events through "
        "one queue, so a payment's event waits there behind the echoes of bxsync's writes. With n < 100, p99 "
        "is the maximum. Goal: p99 < 1 s.",
        "- **each workload runs twice** on the same deals: alone, for its time and cost (a payment is its "
        "own run of four requests, which would blur the ratio), then again to another stage with customers "
        "paying meanwhile, for their latency.",
        "- **storm**: every deal moved once and its title edited the other times (Bitrix fires "
        "`ONCRMDEALUPDATE` for any edit), each event delivered twice (`duplicate_rate` 1.0) and shuffled "
        "within 0.5 s windows, plus the echoes of bxsync's writes.",
    ]
    for result in results:
        label = "SQLite + ORM broker" if result["kind"] == "embedded" else "PostgreSQL + Redis"
        lines += ["", f"### {result['kind']} ({label})", "", "| what | result | goal |", "|---|---|---|"]
        if "payments" in result:
            p = result["payments"]
            lines += payment_lines("alone (one payment a second)", p)
        for name in ("bulk", "storm"):
            if name not in result:
                continue
            r = result[name]
            what = (
                f"{r['changes']}-deal bulk edit"
                if name == "bulk"
                else f"storm: {r['changes']} deals, {r['events_delivered']} events delivered"
            )
            lines.append(
                f"| {what}: time to converge | {r['seconds']:.1f} s (with payments: "
                f"{r['seconds_with_payments']:.1f} s); events arrived at "
                f"{r['events_delivered'] / r['seconds']:.0f}/s; {r['jobs']} jobs in {r['runs']} runs "
                f"(median {r['jobs_per_run_median']:.0f} jobs a run, {r['http'] / max(r['runs'], 1):.1f} "
                "requests a run) | |"
            )
            lines.append(
                f"| {what}: HTTP requests | {r['http']} = {100 * r['http_ratio']:.2f}% of naive "
                f"({r['naive_http']}); {r['rejected']} rejected by the portal's limit | "
                f"{_met(r['http_ratio'] <= 0.01)} |"
            )
            paid = r.get("with_payments")
            if paid:
                lines.append(
                    f"| {what}, {r['payments']['n']} customers paying meanwhile: HTTP requests | "
                    f"{paid['http']} = {100 * paid['http_ratio']:.2f}% of naive ({r['naive_http']}), "
                    f"{paid['jobs']} jobs in {paid['runs']} runs | {_met(paid['http_ratio'] <= 0.01)} |"
                )
            lines.append(
                f"| {what}: REST commands | {r['commands']} ({r['commands_per_change']:.2f} per change, "
                f"{r['writes']} writes); {r['commands_per_echo']:.3f} per echo | "
                f"{_met(r['commands_per_echo'] <= 1.0)} |"
            )
            p = r["payments"]
            busy = f"{p['made_during_the_work']} of {p['n']} made while orders still waited"
            lines += payment_lines(f"during the {name} ({busy})", p)
            methods = ", ".join(f"`{m}` {n}" for m, n in r["by_method"].items())
            lines.append(f"| {what}: commands by method | {methods} | |")
    lines.append(SECTION_END)
    return lines


def payment_lines(when: str, p: dict) -> list[str]:
    """Two rows: inside bxsync (the goal's measure), and from the payment in the shop (the portal's event
    queue included)."""
    own = p["in_bxsync"]
    ok = own["p99"] is not None and own["p99"] < 1.0 and own["n"] == p["n"]
    return [
        f"| payment, {when}: event arrival → deal written (bxsync's audit) | p50 {_s(own['p50'])}, "
        f"p99 {_s(own['p99'])} (n={own['n']}) | {_met(ok)} |",
        f"| payment, {when}: paid in the shop → deal at the paid stage | p50 {_s(p['p50'])}, "
        f"p99 {_s(p['p99'])} (n={p['n']}) | |",
    ]


def write_section(path: Path, lines: list[str]) -> None:
    """Replace this benchmark's section of `path` (between its markers), or append it; the rest stays."""
    section_write(path, "\n".join(lines), start=SECTION_START, end=SECTION_END)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kind", choices=["embedded", "scaled", "both"], default="both")
    parser.add_argument("--deals", type=int, default=1000, help="deals of the bulk edit and the storm")
    parser.add_argument("--storm-rounds", type=int, default=5, help="events per deal in the storm")
    parser.add_argument("--payments", type=int, default=20, help="payments per latency measurement")
    parser.add_argument("--only", default="payments,bulk,storm")
    parser.add_argument("--load", default="machine shared with other engineers' test runs")
    parser.add_argument("--keep", help="a folder for the database and serve.log, kept afterwards")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()

    kinds = ["embedded", "scaled"] if args.kind == "both" else [args.kind]
    only = set(args.only.split(","))
    results = []
    for kind in kinds:
        with tempfile.TemporaryDirectory(prefix="bxsync-bench-") as tmp:
            workdir = Path(args.keep) / kind if args.keep else Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            print(f"{kind}: working in {workdir} (serve.log there)", file=sys.stderr)
            sizes = {"deals": args.deals, "rounds": args.storm_rounds, "payments": args.payments}
            results.append(measure(kind, workdir, **sizes, only=only))
            print(json.dumps(results[-1], indent=1), file=sys.stderr)
    command = "bench/sync_bench.py " + " ".join(sys.argv[1:])
    lines = section(results, command=command.strip(), load=args.load)
    write_section(args.out, lines)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

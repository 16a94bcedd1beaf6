"""Two instances vs one: a bulk edit's time to converge with one `manage.py serve` and with two on one
PostgreSQL database and Redis (the scaled configuration), at the portal's rate limit and above it.

    .venv/bin/python bench/scale_bench.py [--deals 1000] [--rates 2,20] [--out docs/benchmarks.md]

For each rate (requests/s allowed by both sandbox portals and by bxsync's shared limiter, burst 50) it moves
`--deals` deals in the CRM with one instance receiving the events, then `--deals` other deals with the CRM's
events split between two instances (half the bulk edit to each), and times until every order follows.
Prints a Markdown table; `--out` writes it into the "two instances vs one" section of that file.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

# Beside this script (the tests load it by its path too); importing it puts the code measured on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_report import section_write

from tests.e2e.stack import Stack, running_stack
from tests.support.waiting import wait_for

SECTION_START = "<!-- scale:start -->"
SECTION_END = "<!-- scale:end -->"


def bulk_converge(stack: Stack, hosts: list[Stack], pairs: list[tuple[int, int]]) -> tuple[float, int, int]:
    """Move every deal of `pairs` to PREPARATION, the CRM's events going to each host for an equal share;
    seconds until every order is at P, and the HTTP requests and the status writes bxsync made meanwhile
    (one write per deal moved: more would be work done twice)."""
    sandbox = stack.sandbox
    sandbox.reset_counters()
    share = -(-len(pairs) // len(hosts))
    started = time.monotonic()
    for n, host in enumerate(hosts):
        sandbox.configure_events(crm_handler=f"{host.url}/api/bitrix/crm/")
        sandbox.crm.bulk_move([d for _, d in pairs[n * share : (n + 1) * share]], "PREPARATION", user_id=9)
        # The events of this share reach this host before the webhook points at the next one.
        wait_for(lambda: sandbox.wait_events_idle(timeout=1), timeout=120, what="the events to be delivered")
    wait_for(
        lambda: all(sandbox.shop.get_order(o)["statusId"] == "P" for o, _ in pairs),
        timeout=1800,
        interval=0.5,
        what="the bulk edit",
    )
    seconds = time.monotonic() - started
    counters = sandbox.counters()
    requests = sum(portal.get("rest_requests", 0) for portal in counters.values())
    sandbox.configure_events(crm_handler=f"{stack.url}/api/bitrix/crm/")
    stack.wait_idle(timeout=600)
    return seconds, requests, sandbox.rest_writes()


def scale_run(*, rate: float, deals: int, workdir: Path) -> str:
    """One table row: the bulk edit with one instance and with two, at `rate` requests/s."""
    # The production REST timeout (and a lease the system check accepts with it): on the shared machine the
    # sandbox portals, living in this process, can take longer than the e2e stack's 3 s to answer a batch.
    limits = {
        "BXSYNC_RATE_PER_SECOND": f"{rate:g}",
        "BXSYNC_RATE_BURST": "50",
        "Q_POLL": "0.3",
        "BXSYNC_REST_TIMEOUT": "20",
        "BXSYNC_JOB_LEASE_SECONDS": "60",
    }
    with running_stack("scaled", workdir, **limits) as stack:
        pairs = stack.seed_linked(deals * 2)
        stack.wait_idle(timeout=600)
        stack.sandbox.set_limits(rate=rate, burst=50)
        time.sleep(50 / rate if rate < 10 else 1)  # the linking pass's requests drained from the buckets
        one, one_requests, one_writes = bulk_converge(stack, [stack], pairs[:deals])
        with stack.another_instance(workdir) as second:
            time.sleep(50 / rate if rate < 10 else 1)
            two, two_requests, two_writes = bulk_converge(stack, [stack, second], pairs[deals:])
    return (
        f"| {rate:g} requests/s, burst 50 | {deals} "
        f"| {one:.1f} s, {one_requests} requests, {one_writes} writes "
        f"| {two:.1f} s, {two_requests} requests, {two_writes} writes | {one / two:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deals", type=int, default=1000)
    parser.add_argument("--rates", default="2,20", help="portal rate limits to try, requests/s")
    parser.add_argument("--out", type=Path, help="write the table into this file's scale-out section")
    args = parser.parse_args()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"`bench/scale_bench.py --deals {args.deals} --rates {args.rates}`, {stamp}, {platform.machine()}, "
        f"Python {platform.python_version()}, PostgreSQL + Redis, one run on a shared 2-core machine (both "
        "instances, the sandbox portals, PostgreSQL and Redis on the same two cores).",
        "",
        "| portal's limit | deals moved | one instance | two instances | speed-up |",
        "|---|---|---|---|---|",
    ]
    for rate in (float(r) for r in args.rates.split(",")):
        with tempfile.TemporaryDirectory(prefix="bxsync-scale-") as tmp:
            lines.append(scale_run(rate=rate, deals=args.deals, workdir=Path(tmp)))
            print(lines[-1], file=sys.stderr)
    text = "\n".join(lines)
    print(text)
    if args.out:
        block = f"{SECTION_START}\n{text}\n{SECTION_END}"
        section_write(args.out, block, start=SECTION_START, end=SECTION_END, heading="Two instances vs one")


if __name__ == "__main__":
    main()

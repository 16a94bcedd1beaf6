"""Issue 17's goals on both legs, this checkout beside an earlier commit, in one run; writes the table that
opens docs/benchmarks.md.

    .venv/bin/python bench/goals.py --before <commit> [--kind embedded|scaled|both] [--deals 1000]

For each code — the earlier commit, checked out in a temporary worktree, then this checkout — and each leg,
today's benchmarks run against it one after the other: `bench/intake_bench.py` (32 senders for 10 s) and
`bench/sync_bench.py` (the bulk edit and the storm, five customers paying during each). Today's benchmarks
measure both, so a change to a benchmark (its senders, say) never passes for a change to bxsync. The earlier
code runs from this virtualenv: what it needs must be installed here (a commit before granian needs
`pip install gunicorn`).

The machine is shared and noisy: read each row's two numbers side by side, measured minutes apart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
HERE = BENCH.parent
sys.path.insert(0, str(BENCH))
from benchmark_report import section_write  # noqa: E402 - beside this script

SECTION_START = "<!-- bench/goals.py: start -->"
SECTION_END = "<!-- bench/goals.py: end -->"
INTAKE_SENDERS = 32
PAYING = 5  # customers paying during the bulk edit and the storm
STORM_ROUNDS = 10  # events a deal in the storm: its stage moved once, its title edited nine times


def measure(code: Path, kind: str, *, deals: int, workdir: Path) -> dict:
    """Both benchmarks of today on `code`, leg `kind`; their figures."""
    env = {**os.environ, "BXSYNC_BENCH_CODE": str(code)}
    intake_json, sync_json = workdir / f"{kind}-intake.json", workdir / f"{kind}-sync.json"
    python = sys.executable
    intake = ["--kind", kind, "--senders", str(INTAKE_SENDERS), "--seconds", "10", "--json", str(intake_json)]
    sync = ["--kind", kind, "--only", "bulk,storm", "--payments", str(PAYING)]
    sync += ["--storm-rounds", str(STORM_ROUNDS)]
    sync += ["--deals", str(deals), "--json", str(sync_json), "--out", str(workdir / "sync.md")]
    commands = [
        [python, str(BENCH / "intake_bench.py"), *intake],
        [python, str(BENCH / "sync_bench.py"), *sync],
    ]
    for command in commands:
        log = workdir / f"{Path(command[1]).stem}.log"
        print(f"{code.name} {kind}: {Path(command[1]).name}, output in {log}", file=sys.stderr, flush=True)
        with log.open("w") as output:
            done = subprocess.run(command, env=env, cwd=code, stdout=output, stderr=subprocess.STDOUT)
        if done.returncode:
            raise SystemExit(f"{Path(command[1]).name} failed on {code}:\n{log.read_text()[-3000:]}")
    [figures] = json.loads(sync_json.read_text())
    [intake_figures] = json.loads(intake_json.read_text())[kind]
    return {"intake": intake_figures, "bulk": figures["bulk"], "storm": figures["storm"]}


def _percent(run: dict) -> str:
    return f"{run['http']} = {100 * run['http_ratio']:.2f}%"


def _payments_p99(figures: dict) -> float:
    values = [figures[w]["payments"]["in_bxsync"]["p99"] for w in ("bulk", "storm")]
    return max(v for v in values if v is not None)


# Each goal: what is measured (`{deals}` and `{events}` filled in with the run's size), the goal in words,
# how to print it from a leg's figures, whether it is met.
Goal = tuple[str, str, Callable[[dict], str], Callable[[dict], bool]]
GOALS: list[Goal] = [
    (
        "{deals:,} deals moved at once, {paying} customers paying meanwhile: "
        "HTTP requests vs naive (3 per change)",
        "≤ 1%",
        lambda f: f"{_percent(f['bulk']['with_payments'])} (alone {_percent(f['bulk'])})",
        lambda f: f["bulk"]["with_payments"]["http_ratio"] <= 0.01,
    ),
    (
        "the same: time to converge",
        "≤ 10 s",
        lambda f: f"{f['bulk']['seconds_with_payments']:.1f} s (alone {f['bulk']['seconds']:.1f} s)",
        lambda f: f["bulk"]["seconds_with_payments"] <= 10,
    ),
    (
        f"webhooks under {INTAKE_SENDERS} concurrent senders, 10 s",
        "≥ 1,000/s, p99 < 50 ms",
        lambda f: f"{f['intake']['rate']:.0f}/s, p99 {f['intake']['p99_ms']:.0f} ms",
        lambda f: f["intake"]["rate"] >= 1000 and f["intake"]["p99_ms"] < 50 and not f["intake"]["failures"],
    ),
    (
        "{events:,}-event storm (every deal moved once, edited nine more times, each event delivered twice): "
        "HTTP requests vs naive",
        "≤ 1.5%",
        lambda f: f"{_percent(f['storm'])} ({PAYING} paying: {_percent(f['storm']['with_payments'])})",
        lambda f: f["storm"]["http_ratio"] <= 0.015,
    ),
    (
        "the same: time to converge",
        "≤ 20 s",
        lambda f: (
            f"{f['storm']['seconds']:.1f} s ({PAYING} paying: {f['storm']['seconds_with_payments']:.1f} s)"
        ),
        lambda f: f["storm"]["seconds"] <= 20,
    ),
    (
        "payments during both: event → deal written, p99 (bxsync's audit)",
        "< 1 s",
        lambda f: f"{_payments_p99(f):.2f} s",
        lambda f: _payments_p99(f) < 1,
    ),
]


def table(before: dict, after: dict, kinds: list[str], *, deals: int = 1000) -> list[str]:
    """The goals table: each leg's before → after, and met or not (after, on every leg measured); `deals`
    is the size of the bulk edit (the storm is ten events a deal)."""
    head = " | ".join(f"{k}: before → after" for k in kinds)
    lines = [f"| workload | goal | {head} | |", "|---|---|" + "---|" * len(kinds) + "---|"]
    for what, goal, show, met in GOALS:
        cells = " | ".join(f"{show(before[k])} → **{show(after[k])}**" for k in kinds)
        ok = all(met(after[k]) for k in kinds)
        what = what.format(deals=deals, events=deals * STORM_ROUNDS, paying=PAYING)
        lines.append(f"| {what} | {goal} | {cells} | {'met' if ok else '**not met**'} |")
    return lines


def _commit(ref: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def _uncommitted(cwd: Path) -> str:
    """ " (uncommitted changes included)" when the checkout measured differs from its commit."""
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, check=True, capture_output=True
    )
    return " (uncommitted changes included)" if status.stdout.strip() else ""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", required=True, help="the earlier commit to measure beside this checkout")
    parser.add_argument("--kind", choices=["embedded", "scaled", "both"], default="both")
    parser.add_argument("--deals", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=HERE / "docs" / "benchmarks.md")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()

    kinds = ["embedded", "scaled"] if args.kind == "both" else [args.kind]
    before_commit, after_commit = _commit(args.before, HERE), _commit("HEAD", HERE)
    started = datetime.now(UTC)
    results: dict[str, dict] = {"before": {}, "after": {}}
    with tempfile.TemporaryDirectory(prefix="bxsync-goals-") as tmp:
        earlier = Path(tmp) / f"before-{before_commit}"
        add = ["git", "worktree", "add", "--detach", str(earlier), args.before]
        subprocess.run(add, cwd=HERE, check=True)
        try:
            for kind in kinds:
                for label, code in (("before", earlier), ("after", HERE)):
                    workdir = Path(tmp) / f"{label}-{kind}"
                    workdir.mkdir()
                    results[label][kind] = measure(code, kind, deals=args.deals, workdir=workdir)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(earlier)], cwd=HERE, check=False)
    finished = datetime.now(UTC)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    lines = [
        SECTION_START,
        f"`bench/goals.py --before {before_commit}` at `{after_commit}`{_uncommitted(HERE)}, "
        f"{started:%Y-%m-%d %H:%M} to {finished:%H:%M} UTC, {platform.machine()}, Python "
        f"{platform.python_version()}, {os.cpu_count()} cores shared by the senders, the sandbox portals, "
        "bxsync, PostgreSQL and Redis. For each leg, the earlier code and then this code, minutes apart, "
        "with the same benchmarks. One run each: read the two numbers of a cell side by side.",
        "",
        *table(results["before"], results["after"], kinds, deals=args.deals),
        SECTION_END,
    ]
    block = "\n".join(lines)
    section_write(args.out, block, start=SECTION_START, end=SECTION_END, heading="Issue 17's goals")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

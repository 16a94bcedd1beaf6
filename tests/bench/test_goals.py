"""bench/goals.py's table: each goal's before → after on each leg, and met only when every leg meets it."""

from __future__ import annotations

from tests.bench.test_intake_bench_small import bench_module


def figures(*, bulk_http: int, intake_rate: float, intake_p99: float) -> dict:
    def run(http: int, seconds: float) -> dict:
        paying = {"http": http + 3, "http_ratio": (http + 3) / 3000}
        return {
            "http": http,
            "http_ratio": http / 3000,
            "seconds": seconds,
            "seconds_with_payments": seconds + 1,
            "with_payments": paying,
            "payments": {"in_bxsync": {"p99": 0.3}},
        }

    return {
        "intake": {"rate": intake_rate, "p99_ms": intake_p99, "failures": 0},
        "bulk": run(bulk_http, 6.0),
        "storm": run(40, 18.0),
    }


def test_it_shows_each_legs_before_and_after_and_whether_the_goal_is_met():
    goals = bench_module("goals")
    before = {"embedded": figures(bulk_http=60, intake_rate=600, intake_p99=130)}
    after = {"embedded": figures(bulk_http=25, intake_rate=1100, intake_p99=40)}

    lines = goals.table(before, after, ["embedded"])

    bulk, converge, intake, storm, storm_time, payments = lines[2:]
    assert "63 = 2.10% (alone 60 = 2.00%) → **28 = 0.93% (alone 25 = 0.83%)**" in bulk
    assert bulk.endswith("| met |")
    assert "600/s, p99 130 ms → **1100/s, p99 40 ms**" in intake
    assert intake.endswith("| met |")
    assert storm.endswith("| met |")
    assert storm_time.endswith("| met |")
    assert payments.endswith("| met |")
    assert "7.0 s (alone 6.0 s)" in converge
    assert converge.endswith("| met |")


def test_it_says_not_met_when_one_leg_misses():
    goals = bench_module("goals")
    good = figures(bulk_http=25, intake_rate=1100, intake_p99=40)
    slow = figures(bulk_http=25, intake_rate=900, intake_p99=40)

    lines = goals.table(
        {"embedded": good, "scaled": good}, {"embedded": good, "scaled": slow}, ["embedded", "scaled"]
    )

    intake = lines[4]
    assert intake.endswith("| **not met** |")
    assert "1100/s, p99 40 ms → **900/s, p99 40 ms**" in intake


def test_it_names_the_workloads_by_the_size_measured():
    goals = bench_module("goals")
    leg = {"embedded": figures(bulk_http=3, intake_rate=1100, intake_p99=40)}

    lines = goals.table(leg, leg, ["embedded"], deals=100)

    assert lines[2].startswith("| 100 deals moved at once, 5 customers paying")
    assert lines[5].startswith("| 1,000-event storm")

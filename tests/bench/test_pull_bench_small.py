"""bench/pull_bench.py at a tiny size, so it never rots: push and pull on stacks of their own, the same small
workload, its section of docs/benchmarks.md."""

from __future__ import annotations

import pytest

from tests.bench.test_intake_bench_small import bench_module
from tests.support.legs import leg

pytestmark = pytest.mark.e2e


def test_it_measures_push_and_pull_with_the_same_workload(tmp_path):
    pull_bench = bench_module("pull_bench")

    results = [
        pull_bench.measure(leg(), mode, deals=4, payments=1, workdir=tmp_path / mode, refill_seconds=0)
        for mode in ("push", "pull")
    ]

    for result in results:
        assert result["changes"] == 5
        assert result["writes"] == 5  # each moved deal's order and the paid order's deal, once
        assert len(result["latencies"]) == 1
        assert result["http"] > 0
        assert result["rejected"] == 0
    push, pull = results
    assert push["http"] < 5 * 3  # fewer than the naive three requests per change
    assert "event.offline.get" in pull["calls"]
    assert "event.offline.get" not in push["calls"]
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\n## Intake\nsomebody else's numbers\n")
    for _ in range(2):  # a second run replaces the section, the rest stays
        pull_bench.write_section(out, pull_bench.section(results, command="bench/pull_bench.py --tiny"))
    text = out.read_text()
    assert "somebody else's numbers" in text
    assert text.count(pull_bench.SECTION_START) == 1
    assert f"| push (webhooks) | 5 | {push['http']} |" in text

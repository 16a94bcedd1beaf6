"""The benchmarks at a tiny size, so that they never rot: bench/sync_bench.py's own functions on the
end-to-end stack (both backends, the stack shared with tests/e2e), its report and its section of
docs/benchmarks.md."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_bench():
    spec = importlib.util.spec_from_file_location("sync_bench", ROOT / "bench" / "sync_bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.e2e
def test_it_measures_payments_a_bulk_edit_and_a_storm_and_reports_them(e2e, tmp_path):
    bench = load_bench()
    result = bench.measure_on(
        e2e,
        deals=12,
        rounds=2,
        payments=2,
        only={"payments", "bulk", "storm"},
        refill_seconds=0,
    )

    assert result["payments"]["n"] == 2
    assert 0 < result["payments"]["p50"] <= result["payments"]["p99"] < 30
    assert result["payments"]["in_bxsync"]["n"] == 2
    for name, events_per_deal in (("bulk", 1), ("storm", 2 * 2)):
        run = result[name]
        assert run["changes"] == 12
        assert run["seconds"] > 0
        # Every deal's change written once to its order (the pass alone, without payments): nothing more.
        assert run["writes"] == 12
        assert run["by_method"]["sale.order.update"] == 12
        assert 0 < run["http"] < run["naive_http"]
        assert run["commands_per_echo"] <= 1
        assert run["rejected"] == 0
        assert run["events_delivered"] >= 12 * events_per_deal
        assert run["runs"] >= 1
        assert run["payments"]["n"] == run["payments"]["in_bxsync"]["n"] == 2
        # The pass with customers paying, costed too: the workload's writes and the payments' own.
        assert run["with_payments"]["writes"] >= 12 + 2
        assert run["with_payments"]["http"] > 0
        # bxsync's own measure ends when the run is recorded, a few ms after the deal's write that the poll
        # from outside sees: at most that much longer.
        assert 0 < run["payments"]["in_bxsync"]["p99"] <= run["payments"]["p99"] + 0.1

    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\n## Intake\nsomebody else's numbers\n")
    for _ in range(2):  # a second run replaces the section, the rest stays
        bench.write_section(out, bench.section([result], command="bench/sync_bench.py --tiny", load="test"))
    text = out.read_text()
    assert "somebody else's numbers" in text
    assert text.count(bench.SECTION_START) == 1
    assert "| 12-deal bulk edit: HTTP requests |" in text
    assert "| 12-deal bulk edit, 2 customers paying meanwhile: HTTP requests |" in text
    assert f"### {e2e.kind} (" in text

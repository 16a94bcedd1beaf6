"""Small runs of bench/intake_bench.py and bench/scale_bench.py, so the benchmarks never rot: the real stack,
a few seconds of senders, and the bench's own checks (every 200 is a stored event)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from tests.support.legs import leg

BENCH = Path(__file__).resolve().parents[2] / "bench"
pytestmark = pytest.mark.e2e


def bench_module(name: str):
    # On the path, not loaded from its file: the intake's senders are spawned processes that import the
    # module by name (multiprocessing hands them this process's sys.path).
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def test_it_measures_intake_on_the_legs_stack(tmp_path):
    intake_bench = bench_module("intake_bench")

    [result] = intake_bench.intake_run(leg(), senders=[2], seconds=2, workdir=tmp_path)

    assert result.events > 0
    assert result.failures == {}
    assert len(result.latencies) == result.events
    assert result.web_cpu > 0
    assert intake_bench.intake_rows([result])[0].startswith("| 2 | ")


@pytest.mark.only_leg("scaled", reason="two instances share one PostgreSQL and Redis: scale-out only")
def test_it_measures_two_instances_against_one(tmp_path):
    scale_bench = bench_module("scale_bench")

    row = scale_bench.scale_run(rate=20, deals=10, workdir=tmp_path)

    assert row.startswith("| 20 requests/s, burst 50 | 10 | ")
    assert row.count(" 10 writes") == 2  # each deal's order written once, with one instance and with two

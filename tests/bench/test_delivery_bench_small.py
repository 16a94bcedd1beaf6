"""A small run of bench/delivery_bench.py, so the benchmark never rots."""

from __future__ import annotations

from tests.bench.test_intake_bench_small import bench_module


def test_it_measures_the_sandboxs_delivery_to_a_handler_that_does_nothing():
    delivery_bench = bench_module("delivery_bench")

    result = delivery_bench.delivery_run(events=40, senders=2)

    assert result["posts"] == 40
    assert result["per_second"] > 0
    assert result["cpu_ms_per_post"] > 0

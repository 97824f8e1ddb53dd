"""The benchmark harness runs and reports the figures it promises (no timing assertions here)."""

from __future__ import annotations

from agents.bench import bench_reset, bench_reset_local


def test_reset_benchmarks_report_cached_and_replay_figures():
    for result in (bench_reset(ks=(1, 4), repeats=1), bench_reset_local(ks=(1, 2), repeats=1)):
        assert [r["k"] for r in result["rows"]] == sorted(r["k"] for r in result["rows"])
        for row in result["rows"]:
            assert row["cached_ms"] > 0 and row["replay_ms"] > 0
            ratio = row["replay_ms"] / row["cached_ms"]  # both rounded, so allow rounding slack
            assert abs(row["speedup"] - ratio) <= 0.05 * ratio + 0.01

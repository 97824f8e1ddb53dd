"""The benchmark harness runs and reports the figures it promises (no timing assertions here)."""

from __future__ import annotations

import pytest

from agents.bench import bench_reset, bench_reset_local


def test_reset_benchmarks_report_cached_and_replay_figures():
    for result in (bench_reset(ks=(1, 4), repeats=1), bench_reset_local(ks=(1, 2), repeats=1)):
        assert [r["k"] for r in result["rows"]] == sorted(r["k"] for r in result["rows"])
        for row in result["rows"]:
            assert row["cached_ms"] > 0 and row["replay_ms"] > 0
            ratio = row["replay_ms"] / row["cached_ms"]  # both rounded, so allow rounding slack
            assert abs(row["speedup"] - ratio) <= 0.05 * ratio + 0.01


@pytest.mark.docker
def test_docker_benchmarks_compare_both_snapshot_modes_on_the_same_work():
    from agents.bench import markdown
    from agents.bench_docker import bench_execution, bench_restore

    ex = bench_execution(states=3, g=4)
    assert ex["world"]["verdicts"] == ex["image"]["verdicts"] == 12
    assert ex["differing_verdicts"] == 0  # the fast path judges exactly as the image path
    assert ex["world"]["accepted"] >= 3  # "true; <demonstration>" is accepted at every state
    rd = bench_restore(ks=(1, 4), repeats=1)
    assert [row["k"] for row in rd["rows"]] == [1, 4]
    assert set(rd["fork_ms"]) == {"world", "image", "exec_world", "exec_image"}
    for row in rd["rows"]:
        assert row["replay_ms"] > 0 and row["cached_world_ms"] > 0 and row["cached_image_ms"] > 0
    table = markdown({"execution_docker": ex, "restore_docker": rd, "machine": {"cores": 2}})
    assert "execution verdicts, Docker" in table and "Docker restore at k=4" in table

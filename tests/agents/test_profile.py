"""Profiling is cached and resumable; the filter keeps exactly the states the paper's rule keeps."""

from __future__ import annotations

import json

import pytest

from agents.policies import RandomAgent
from agents.profile import FilterConfig, ProfileConfig, profile, select_pivots, summarize
from pivot_envs import TrajectoryEnv


class MixedAgent(RandomAgent):
    """Replays the demonstration with probability p, else acts randomly: gives mid-pass-rate states."""

    name = "mixed"

    def __init__(self, records, p=0.5, seed=0):
        super().__init__(seed=seed)
        from agents.policies import ReplayAgent

        self.replay, self.p = ReplayAgent(records), p

    def sample(self, observations, n=1, infos=None):
        rand = super().sample(observations, n, infos)
        gold = self.replay.sample(observations, n, infos)
        return [[g if self.rng.random() < self.p else r for g, r in zip(gs, rs, strict=True)]
                for gs, rs in zip(gold, rand, strict=True)]


@pytest.fixture
def env(tool_use_records):
    e = TrajectoryEnv(tool_use_records[:6], domain="tool_use")
    yield e
    e.close()


def test_interrupted_profiling_resumes_to_the_same_rows(env, tmp_path):
    records = list(env.trajectories.values())
    cfg = ProfileConfig(k=4, states_per_batch=3, seed=7)
    full = profile(env, MixedAgent(records), tmp_path / "a", cfg)
    part = profile(env, MixedAgent(records), tmp_path / "b", cfg, max_batches=2)
    assert 0 < len(part.rows) < len(full.rows)
    rows_file = part.directory / "rows.jsonl"
    with open(rows_file, "a") as fh:  # a kill in the middle of a write leaves a torn line
        fh.write('{"trajectory_id": "torn')
    resumed = profile(env, MixedAgent(records), tmp_path / "b", cfg)
    assert resumed.resumed_from == len(part.rows)
    assert resumed.rows == full.rows
    assert [json.loads(x) for x in rows_file.read_text().splitlines()] == full.rows
    assert (resumed.directory / "report.md").exists() and (resumed.directory / "report.json").exists()


def test_cache_key_changes_with_model_data_and_verifier(env, tmp_path):
    records = list(env.trajectories.values())
    a = profile(env, MixedAgent(records), tmp_path, ProfileConfig(k=2), model_fingerprint="m1")
    b = profile(env, MixedAgent(records), tmp_path, ProfileConfig(k=2), model_fingerprint="m2")
    c = profile(env, MixedAgent(records), tmp_path, ProfileConfig(k=2, verifier="exact"), model_fingerprint="m1")
    smaller = TrajectoryEnv(records[:3], domain="tool_use")
    d = profile(smaller, MixedAgent(records), tmp_path, ProfileConfig(k=2), model_fingerprint="m1")
    assert len({a.key, b.key, c.key, d.key}) == 4
    again = profile(env, MixedAgent(records), tmp_path, ProfileConfig(k=2), model_fingerprint="m1")
    assert again.key == a.key and again.resumed_from == len(a.rows)  # fully cached: nothing resampled


def test_profile_statistics_and_report(env, tmp_path):
    records = list(env.trajectories.values())
    result = profile(env, MixedAgent(records, p=0.5), tmp_path, ProfileConfig(k=8))
    for row in result.rows:
        assert len(row["rewards"]) == 8 and len(row["samples"]) == 8
        assert row["mean"] == pytest.approx(sum(row["rewards"]) / 8)
    s = summarize(result.rows)
    assert 0 < s["pivots"] < s["states"] == sum(t.num_turns for t in records)
    assert s["zero_variance_share"] == pytest.approx(sum(r["var"] == 0 for r in result.rows) / s["states"])
    assert sum(s["mean_histogram"]["counts"]) == s["states"]
    assert 0 < result.sandbox_seconds < result.seconds  # restore + verify time, counted for compute tables


def rows(*stats):
    return [{"trajectory_id": f"t{i}", "turn": 0, "mean": m, "var": v, "rewards": [], "methods": [], "categories": []}
            for i, (m, v) in enumerate(stats)]


def test_filter_rules():
    data = rows((0.0, 0.0), (0.25, 0.19), (0.5, 0.25), (0.75, 0.19), (1.0, 0.0), (0.125, 0.1))
    assert [r["trajectory_id"] for r in select_pivots(data)] == ["t1", "t2", "t5"]  # var > 0 and mean < 0.6
    assert [r["trajectory_id"] for r in select_pivots(data, FilterConfig(band=(0.5, 0.8)))] == ["t2", "t3"]
    assert [r["trajectory_id"] for r in select_pivots(data, FilterConfig(cap=2))] == ["t5", "t1"]  # easiest dropped
    assert select_pivots(data, FilterConfig(random_turns=True, cap=6)) == data  # statistics ignored
    picks = [select_pivots(data, FilterConfig(random_turns=True, cap=4, seed=s)) for s in range(10)]
    assert all(len(p) == 4 for p in picks)
    assert any(r["var"] == 0 for p in picks for r in p)  # zero-variance turns are fair game in the ablation
    assert picks[0] == select_pivots(data, FilterConfig(random_turns=True, cap=4, seed=0))
    with pytest.raises(ValueError, match="lambda_diff"):
        FilterConfig(lambda_diff=0)
    with pytest.raises(ValueError, match="band"):
        FilterConfig(band=(0.8, 0.2))

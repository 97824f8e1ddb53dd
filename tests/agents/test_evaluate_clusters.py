"""evaluate_turns keeps every turn's score per trajectory: the clusters a bootstrap interval resamples."""

from __future__ import annotations

from agents.evaluate import evaluate_turns
from agents.policies import RandomAgent, ReplayAgent
from pivot_envs import TrajectoryEnv


def test_per_trajectory_scores_add_up_to_the_accuracy(tool_use_records):
    records = tool_use_records[:6]
    env = TrajectoryEnv(records, domain="tool_use")
    try:
        replay = evaluate_turns(env, ReplayAgent(records), batch_size=4)
        random = evaluate_turns(env, RandomAgent(seed=0), batch_size=5)
    finally:
        env.close()
    for result in (replay, random):
        assert list(result.per_trajectory) == [t.id for t in records]
        assert {tid: len(s) for tid, s in result.per_trajectory.items()} == {t.id: len(t.scored_turns) for t in records}
        assert sum(map(sum, result.per_trajectory.values())) == result.reward_sum
        assert result.to_dict()["per_trajectory"] == result.per_trajectory
    assert all(s == 1.0 for scores in replay.per_trajectory.values() for s in scores)

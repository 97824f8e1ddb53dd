"""The benchmark harness: per-turn accuracy and episode success, `pivotrl eval` and `eval compare`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from agents.cli import app
from agents.core import Policy, Sample
from agents.evaluate import evaluate_episodes, evaluate_turns, run_eval
from agents.policies import RandomAgent, ReplayAgent
from pivot_envs import TrajectoryEnv, get_domain

DOMAINS = ("tool_use", "terminal")


@pytest.mark.parametrize("domain", DOMAINS)
def test_replay_scores_everything_and_random_nothing_on_every_bundled_env(domain, local_shell_worlds):
    records = get_domain(domain).load(strict=True)
    if domain == "terminal":
        records = records[:20]  # the local sandbox runs every command for real: keep it to a minute
    env = TrajectoryEnv(records, domain=domain)
    try:
        replay = evaluate_turns(env, ReplayAgent(records), batch_size=7)
        random = evaluate_turns(env, RandomAgent(seed=0))
    finally:
        env.close()
    assert replay.turns == random.turns == sum(t.num_turns for t in records)
    assert replay.accuracy == 1.0
    assert random.accuracy <= 0.02
    ep_replay = evaluate_episodes(records, ReplayAgent(records), domain=domain, parallel=5)
    ep_random = evaluate_episodes(records, RandomAgent(seed=0), domain=domain, parallel=5)
    assert ep_replay.episodes == ep_random.episodes == len(records)
    assert ep_replay.success_rate == 1.0
    assert ep_random.success_rate <= 0.02


def test_tool_use_success_needs_the_facts_told_to_the_user(tool_use_records):
    """A read-only task ends in the initial state; success also needs the demonstrated answer."""
    from pivot_envs.domains.tool_use import success

    record = next(t for t in tool_use_records if t.metadata["task_type"] == "order_status")
    env = TrajectoryEnv([record], domain="tool_use", mode="episode")
    try:
        env.reset(options={"trajectory": record.id})
        sandbox = env.sandbox
        assert success(record, sandbox, record.messages) is True
        muted = [m if m["role"] != "assistant" or m.get("tool_calls") else {**m, "content": "Anything else?"}
                 for m in record.messages]
        assert success(record, sandbox, muted) is False
    finally:
        env.close()


class _Overflowing(Policy):
    """Replays, except that the second observation of every call 'does not fit the context'."""

    name = "overflowing"

    def __init__(self, records):
        self.replay = ReplayAgent(records)

    def sample(self, observations, n=1, infos=None):
        if len(observations) > 1:
            err = ValueError("prompt too long")
            err.index = 1
            raise err
        return self.replay.sample(observations, n, infos)


def test_an_episode_whose_prompt_outgrows_the_context_fails_and_the_rest_go_on(tool_use_records):
    records = tool_use_records[:3]
    result = evaluate_episodes(records, _Overflowing(records), domain="tool_use", parallel=3)
    assert result.episodes == 3
    assert result.truncated >= 1
    assert 1 <= result.successes <= 2
    assert sorted(result.per_task) == sorted(t.id for t in records)


class _Counting(Policy):
    name = "counting"

    def __init__(self):
        self.calls = []

    def sample(self, observations, n=1, infos=None):
        self.calls.append(len(observations))
        return [[Sample("I cannot help with that.")] * n for _ in observations]


def test_turns_are_sampled_in_batches_and_episodes_in_lockstep(tool_use_records):
    records = tool_use_records[:4]
    env = TrajectoryEnv(records, domain="tool_use")
    policy = _Counting()
    try:
        result = evaluate_turns(env, policy, batch_size=8)
    finally:
        env.close()
    assert sum(policy.calls) == result.turns
    assert max(policy.calls) == 8
    policy.calls.clear()
    evaluate_episodes(records, policy, domain="tool_use", parallel=4)
    assert policy.calls[0] == 4  # the first turn of all four episodes in one call


def test_run_eval_report_and_cli_compare(tmp_path, tool_use_records):
    report = run_eval(ReplayAgent(tool_use_records), "pivot/ToolUse-v0", mode="both", limit=5, out_dir=tmp_path / "r")
    assert report["turn"]["accuracy"] == 1.0 and report["episode"]["success_rate"] == 1.0
    assert {p.name for p in (tmp_path / "r").iterdir()} >= {"report.json", "report.md", "report.png"}
    with pytest.raises(ValueError, match="mode"):
        run_eval(ReplayAgent(tool_use_records), "tool_use", mode="pivot")

    runner = CliRunner()
    res = runner.invoke(app, ["eval", "--policy", "random", "--env", "tool_use", "--limit", "5",
                              "--out", str(tmp_path / "rand")])
    assert res.exit_code == 0, res.output
    assert "per-turn accuracy 0.0%" in res.output
    res = runner.invoke(app, ["eval", "compare", str(tmp_path / "r"), str(tmp_path / "rand"), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["policy"] for r in rows] == ["replay", "random"]
    assert rows[0]["accuracy"] == 1.0 and rows[1]["accuracy"] == 0.0
    assert rows[1]["success_rate"] is None  # turn mode only

    res = runner.invoke(app, ["eval", "--policy", "replay"])
    assert res.exit_code == 2 and "--env" in res.output
    res = runner.invoke(app, ["eval", "--policy", "replay", "--env", "pivot/ToolUze-v0"])
    assert res.exit_code == 2 and "did you mean" in res.output.lower()
    res = runner.invoke(app, ["eval", "compare", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "report.json" in res.output

"""TrajectoryEnv behaviour on a small hand-written domain (independent of the bundled data)."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

from pivot_envs import Domain, RestoreDivergenceError, TrajectoryEnv, UnknownEnvError, make
from pivot_envs.trajectory import record_from_dict
from sandboxes import ToolError, sha256_json


def deposit(state, account, amount):
    if amount <= 0:
        raise ToolError("amount must be positive")
    state["balances"][account] = state["balances"].get(account, 0) + amount
    return {"account": account, "balance": state["balances"][account]}


def balance(state, account):
    return {"account": account, "balance": state["balances"].get(account, 0)}


BANK = Domain(name="bank_test", env_id="pivot/BankTest-v0", tools={"deposit": deposit, "balance": balance})
TOOLS = [
    {"type": "function", "function": {"name": "deposit", "parameters": {"type": "object", "properties": {
        "account": {"type": "string"}, "amount": {"type": "number"}}, "required": ["account", "amount"]}}},
    {"type": "function", "function": {"name": "balance", "parameters": {"type": "object", "properties": {
        "account": {"type": "string"}}, "required": ["account"]}}},
]


def tc(cid, name, **args):
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def bank_record(rid="b1", amounts=(5, 7)):
    state = {"balances": {"alice": 10}}
    msgs = [{"role": "system", "content": "bank"}, {"role": "user", "content": "deposit twice then tell me"}]
    total = 10
    for i, a in enumerate(amounts):
        total += a
        msgs += [{"role": "assistant", "tool_calls": [tc(f"c{i}", "deposit", account="alice", amount=a)]},
                 {"role": "tool", "tool_call_id": f"c{i}", "content": json.dumps({"account": "alice", "balance": total}, sort_keys=True)}]
    msgs += [{"role": "assistant", "content": f"Your balance is {total}."},
             {"role": "user", "content": "thanks, and what is it now?"},
             {"role": "assistant", "tool_calls": [tc("c9", "balance", account="alice")]},
             {"role": "tool", "tool_call_id": "c9", "content": json.dumps({"account": "alice", "balance": total}, sort_keys=True)},
             {"role": "assistant", "content": f"Still {total}."}]
    final = {"balances": {"alice": total}}
    return record_from_dict({"id": rid, "domain": "bank_test", "tools": TOOLS, "messages": msgs,
                             "env": {"sandbox": "inprocess", "state": state},
                             "task": {"success": {"kind": "final_state", "expected_state_sha256": sha256_json(final)}}})


@pytest.fixture
def env():
    e = TrajectoryEnv([bank_record("b1"), bank_record("b2", amounts=(1, 2))], domain=BANK)
    yield e
    e.close()


def test_reset_restores_prefix_and_world_state(env):
    obs, info = env.reset(options={"trajectory": "b1", "turn": 2})
    assert [m["role"] for m in obs["messages"]] == ["system", "user", "assistant", "tool", "assistant", "tool"]
    assert obs["tools"] == TOOLS
    assert env.sandbox.state == {"balances": {"alice": 22}}
    assert info["turn"] == 2 and info["num_turns"] == 5 and info["divergence"] == []
    assert info["state_digest"] == sha256_json({"balances": {"alice": 22}})


def test_cached_restore_equals_replay_and_reports_its_source(env):
    _, first = env.reset(options={"trajectory": "b1", "turn": 2})
    _, second = env.reset(options={"trajectory": "b1", "turn": 2})
    assert first["restored_from"] == "replay" and second["restored_from"] == "cache"
    _, deeper = env.reset(options={"trajectory": "b1", "turn": 3})
    assert deeper["restored_from"].startswith("cache@")
    fresh = TrajectoryEnv(list(env.trajectories.values()), domain=BANK, cache_size=0)
    _, replayed = fresh.reset(options={"trajectory": "b1", "turn": 2})
    assert replayed["state_digest"] == second["state_digest"] and replayed["restored_from"] == "replay"


def test_shared_prefixes_share_snapshots():
    a, b = bank_record("a"), bank_record("b")
    b.messages[-1] = {"role": "assistant", "content": "Different ending."}
    env = TrajectoryEnv([a, b], domain=BANK)
    env.reset(options={"trajectory": "a", "turn": 3})
    _, info = env.reset(options={"trajectory": "b", "turn": 3})
    assert info["restored_from"] == "cache"  # same env spec and actions[:3]


def test_divergence_is_reported_and_strict_raises():
    rec = bank_record()
    rec.messages[3]["content"] = '{"account": "alice", "balance": 999}'
    env = TrajectoryEnv([rec], domain=BANK)
    _, info = env.reset(options={"trajectory": "b1", "turn": 2})
    assert info["divergence"] and info["divergence"][0]["turn"] == 0
    with pytest.raises(RestoreDivergenceError, match="turn 0"):
        TrajectoryEnv([rec], domain=BANK, strict=True).reset(options={"trajectory": "b1", "turn": 1})


def test_pivot_step_rewards_functional_equivalence(env):
    env.reset(options={"trajectory": "b1", "turn": 1})
    _, r, term, trunc, info = env.step('<tool_call>{"name": "deposit", "arguments": {"amount": 7.0, "account": "alice"}}</tool_call>')
    assert (r, term, trunc) == (1.0, True, False) and info["verdict"].method == "rule"
    env.reset(options={"trajectory": "b1", "turn": 1})
    _, r, *_, info = env.step('<tool_call>{"name": "deposit", "arguments": {"account": "alice", "amount": 8}}</tool_call>')
    assert r == 0.0 and info["verdict"].category == "ARG_VALUE"
    with pytest.raises(RuntimeError, match="reset"):
        env.step("again")


def test_malformed_action_is_zero_reward_with_reason(env):
    env.reset(options={"trajectory": "b1", "turn": 0})
    _, r, term, _, info = env.step('<tool_call>{"name": "deposit", "arguments": {oops}</tool_call>')
    assert r == 0.0 and term and info["verdict"].method == "error" and info["verdict"].details["reason"]


def test_episode_mode_runs_tools_replays_users_and_scores_the_outcome():
    env = TrajectoryEnv([bank_record()], domain=BANK, mode="episode")
    traj = env.trajectories["b1"]
    env.reset(options={"trajectory": "b1"})
    rewards = []
    for turn in range(traj.num_turns):
        obs, r, term, trunc, info = env.step(traj.action(turn))
        rewards.append(r)
        if turn == 2:
            assert info["user"] == "replayed" and obs["messages"][-1]["content"] == "thanks, and what is it now?"
    assert term and not trunc and info["success"] is True and rewards[-1] == 1.0
    # A different deposit executes for real and the final state no longer matches.
    env.reset(options={"trajectory": "b1"})
    _, _, _, _, info = env.step('<tool_call>{"name": "deposit", "arguments": {"account": "alice", "amount": 100}}</tool_call>')
    assert json.loads(info["tool_outputs"][0])["balance"] == 110
    env.step("done")
    *_, term, _, info = env.step("done")
    assert term and info["success"] is False


def test_episode_turn_budget_truncates():
    env = TrajectoryEnv([bank_record()], domain=BANK, mode="episode", max_turns=2)
    env.reset(options={"trajectory": "b1"})
    call = '<tool_call>{"name": "balance", "arguments": {"account": "alice"}}</tool_call>'
    assert env.step(call)[3] is False
    _, r, term, trunc, _ = env.step(call)
    assert trunc and not term and r == 0.0


def test_fork_gives_independent_copies(env):
    env.reset(options={"trajectory": "b1", "turn": 2})
    forks = env.fork(3)
    assert len({id(f.sandbox) for f in forks}) == 3
    forks[0].sandbox.call_tool("deposit", {"account": "alice", "amount": 1})
    assert forks[1].state_digest() == env.state_digest() != forks[0].state_digest()
    for f in forks:
        assert f.step(f.expected_action())[1] == 1.0
    for f in forks:
        f.close()
    assert all(f.sandbox is None for f in forks) and env.sandbox is not None and not env.sandbox.closed


def test_reset_option_errors(env):
    with pytest.raises(KeyError, match="no trajectory"):
        env.reset(options={"trajectory": "zzz"})
    with pytest.raises(ValueError, match=r"turn must be an int in \[0, 4\]"):
        env.reset(options={"trajectory": "b1", "turn": 9})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"turns": 1})
    _, info = env.reset(seed=3, options={"turn": "random"})
    assert 0 <= info["turn"] < 5


def test_text_only_records_restore_prefixes_and_answer_demo_calls():
    rec = bank_record()
    rec.env = {}
    env = TrajectoryEnv([rec], mode="episode")
    obs, info = env.reset(options={"trajectory": "b1", "turn": 0})
    assert env.sandbox is None and info["restored_from"] == "text"
    _, _, _, _, info = env.step(rec.action(0))
    assert info["tool_outputs"] == [rec.messages[3]["content"]]
    _, _, _, _, info = env.step('<tool_call>{"name": "deposit", "arguments": {"account": "bob", "amount": 1}}</tool_call>')
    assert "no sandbox" in info["tool_outputs"][0]


def test_render_ansi():
    env = TrajectoryEnv([bank_record()], domain=BANK, render_mode="ansi")
    env.reset(options={"trajectory": "b1", "turn": 1})
    text = env.render()
    assert "[user] deposit twice" in text and "<call deposit(" in text


def test_unknown_env_id_suggests_the_closest():
    with pytest.raises(UnknownEnvError, match="Did you mean 'pivot/ToolUse-v0'"):
        make("pivot/ToolUs-v0")


def test_vector_env_returns_text_intact():
    records = [bank_record("b1"), bank_record("b2", amounts=(1, 2))]

    def factory():
        return TrajectoryEnv(records, domain=BANK)

    envs = gym.vector.AsyncVectorEnv([factory, factory], shared_memory=False)
    try:
        obs, infos = envs.reset(options={"trajectory": "b1", "turn": 3})
        expected = records[0].prefix(3)
        assert len(obs) == 2 and all(o["messages"] == expected for o in obs)
        assert "Your balance is 22." in [m.get("content") for m in obs[0]["messages"]]
        _, rewards, terms, _, _ = envs.step([records[0].action(3).to_text(), "nope"])
        assert list(rewards) == [1.0, 0.0] and all(terms)
    finally:
        envs.close()


def test_evicted_snapshots_are_freed_by_their_owner(local_shell_worlds):
    """A bounded cache frees what it pushes out: local snapshots are directories, Docker ones images."""
    from pivot_envs.domains.terminal.expert import generate

    records = [record_from_dict(r) for r in generate(3, seed=5)]
    env = TrajectoryEnv(records, domain="terminal", cache_size=2)
    try:
        for t in records:
            for turn in range(t.num_turns):
                env.reset(options={"trajectory": t.id, "turn": turn})
        assert env.cache.evictions > 0 and len(env.cache) == 2
        assert len(env.sandbox._snapshots) == 2  # one directory per cached snapshot, no more
        t = records[0]
        _, info = env.reset(options={"trajectory": t.id, "turn": t.num_turns - 1})
        assert info["divergence"] == [] and info["restored_from"] == "replay"  # evicted: rebuilt by replay
    finally:
        env.close()

from __future__ import annotations

import copy

import pytest

from agents import PolicySpecError, make_policy
from agents.evaluate import evaluate_turns
from agents.policies import RandomAgent, ReplayAgent
from pivot_envs import TrajectoryEnv
from pivot_envs.actions import Action


def test_replay_scores_every_turn_even_when_demonstrations_share_a_prefix(tool_use_records):
    a = tool_use_records[0]
    b = copy.deepcopy(a)
    b.id = "twin"
    first = b.assistant_indices[0]
    b.messages[first] = {"role": "assistant", "content": "A different but valid opening: how can I help?"}
    b.messages = b.messages[: first + 1]
    env = TrajectoryEnv([a, b], domain="tool_use")
    result = evaluate_turns(env, ReplayAgent([a, b]))
    assert result.turns == a.num_turns + 1 and result.accuracy == 1.0
    # Without the env's info the prefix is ambiguous: the first demonstration loaded wins.
    obs, _ = env.reset(options={"trajectory": "twin", "turn": 0})
    assert ReplayAgent([a, b]).act(obs) == a.action(0).to_text()


def test_replay_rejects_unknown_states(tool_use_records):
    with pytest.raises(KeyError, match="not a prefix"):
        ReplayAgent(tool_use_records[:1]).act({"messages": [{"role": "user", "content": "??"}], "tools": []})


def test_random_agent_is_seeded_and_emits_parseable_turns(tool_use_records):
    env = TrajectoryEnv(tool_use_records[:3], domain="tool_use")
    obs, _ = env.reset(seed=0)
    a = [s.text for s in RandomAgent(seed=1).sample([obs], n=20)[0]]
    b = [s.text for s in RandomAgent(seed=1).sample([obs], n=20)[0]]
    assert a == b
    kinds = {Action.parse(t).kind for t in a}
    assert kinds == {"tool_call", "message"}
    assert all(Action.parse(t).malformed is None for t in a)
    names = {c.name for t in a for c in Action.parse(t).tool_calls}
    assert names <= set(tool_use_records[0].tool_names)


def test_policy_specs():
    assert make_policy("random").name == "random"
    with pytest.raises(PolicySpecError, match="expected one of"):
        make_policy("gpt")
    with pytest.raises(PolicySpecError, match="could not load model"):
        make_policy("hf:./no/such/checkpoint")
    with pytest.raises(PolicySpecError, match="openai:BASE_URL#MODEL"):
        make_policy("openai:http://127.0.0.1:9")

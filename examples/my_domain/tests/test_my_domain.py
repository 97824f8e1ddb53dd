"""The example plugin's own tests: its converter, its world through pivotrl's checker, its outcome rules.

Run them after `pip install -e examples/my_domain` (make setup does it): `pytest examples/my_domain/tests`.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest
from my_domain import DOMAIN
from my_domain.convert import ConversionError, convert_file, convert_task

import pivot_envs

DATA = Path(__file__).resolve().parents[1] / "my_domain" / "data"


def test_the_converter_reproduces_the_bundled_records(tmp_path):
    out = tmp_path / "records.jsonl"
    assert convert_file(DATA / "tasks.jsonl", out) == 14
    assert out.read_text() == (DATA / "my_domain.jsonl").read_text()


def test_a_gold_call_the_world_refuses_is_a_conversion_error():
    task = json.loads((DATA / "tasks.jsonl").read_text().splitlines()[0])
    task["dialogue"][0]["gold"] = [["cancel_event", {"event_id": "ev99"}]]
    with pytest.raises(ConversionError, match="ev99"):
        convert_task(task)


def test_the_registered_env_passes_pivotrls_checker():
    env = gym.make("pivot/MyDomain-v0")
    report = pivot_envs.check_trajectory_env(env)
    assert report.trajectories == 14 and report.write_turns > 0 and report.perturbations > 0
    env.close()


def test_a_wrong_write_fails_its_user_turn_and_the_episode():
    env = gym.make("pivot/MyDomain-v0", mode="episode").unwrapped
    traj = env.trajectories["my_domain-t02"]  # one user turn: book one event
    env.reset(options={"trajectory": traj.id, "turn": 0})
    args = dict(traj.action(0).tool_calls[0].arguments)
    args["start"] = "18:00"  # another time than asked
    _, reward, terminated, _, info = env.step(f"<tool_call>{json.dumps({'name': 'add_event', 'arguments': args})}"
                                              "</tool_call>")
    assert terminated and info["turn_success"]["success"] is False and reward == 0.0
    assert DOMAIN.verifier_name == "tool_use(text_threshold=0.9)"
    env.close()

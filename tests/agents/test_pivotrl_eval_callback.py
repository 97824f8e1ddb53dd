"""The trainers' evaluation callback: when it is called, what compute it sees, that it can stop a run, and
that evaluating does not change what is trained (PivotRL and end-to-end RL)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from agents.e2e import E2EConfig, train_e2e
from agents.pivotrl import TrainConfig, train
from agents.policies.hf import HFPolicy
from agents.tiny import build_tiny, save_tiny


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory, tool_use_records):
    tok, model = build_tiny(tool_use_records[:40], seed=0)
    return str(save_tiny(model, tok, tmp_path_factory.mktemp("tiny") / "base"))


def _pivotrl(tiny_path, out, **kw):
    base = dict(model=tiny_path, out_dir=str(out), max_trajectories=3, profile_k=4, random_turns=True, max_pivots=4,
                steps=3, pivots_per_step=2, group_size=4, lr=1e-3, max_new_tokens=16, checkpoint_every=10,
                tensorboard=False)
    return TrainConfig(**{**base, **kw})


class Recorder:
    """Greedy-samples one prompt with the policy's model (as the demo's evaluation does) and records each call."""

    def __init__(self, stop_at=None):
        self.calls, self.stop_at = [], stop_at

    def __call__(self, step, policy, compute):
        greedy = HFPolicy(policy.model, policy.tokenizer, temperature=0.0, max_new_tokens=4)
        greedy.sample([{"messages": [{"role": "user", "content": "hi"}], "tools": []}])
        self.calls.append((step, dict(compute)))
        return step == self.stop_at


def test_pivotrl_evaluates_after_profiling_every_n_steps_and_at_the_end(tiny_path, tmp_path):
    rec = Recorder()
    summary = train(_pivotrl(tiny_path, tmp_path / "run"), log=lambda *_: None, on_eval=rec, eval_every=2)
    assert [s for s, _ in rec.calls] == [0, 2, 3]
    turns = [c["rollout_turns"] for _, c in rec.calls]
    assert turns[0] > 0  # profiling counts: the curve starts at the profiling cost
    assert turns == sorted(turns) and turns[-1] == summary["compute"]["rollout_turns"]
    clocks = [c["wall_clock_s"] for _, c in rec.calls]
    assert clocks == sorted(clocks) and summary["eval_seconds"] > 0
    assert summary["steps_done"] == 3


def test_evaluating_does_not_change_training(tiny_path, tmp_path):
    train(_pivotrl(tiny_path, tmp_path / "plain"), log=lambda *_: None)
    train(_pivotrl(tiny_path, tmp_path / "eval"), log=lambda *_: None, on_eval=Recorder(), eval_every=1)
    a = load_file(tmp_path / "plain" / "checkpoints" / "step-000003" / "model.safetensors")
    b = load_file(tmp_path / "eval" / "checkpoints" / "step-000003" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_callback_stops_pivotrl_and_the_last_step_is_saved(tiny_path, tmp_path):
    summary = train(_pivotrl(tiny_path, tmp_path / "run"), log=lambda *_: None, on_eval=Recorder(stop_at=1),
                    eval_every=1)
    assert summary["steps_done"] == 1
    assert (tmp_path / "run" / "checkpoints" / "step-000001" / "model.safetensors").exists()


def test_e2e_evaluates_and_stops_on_request(tiny_path, tmp_path):
    cfg = E2EConfig(model=tiny_path, out_dir=str(tmp_path / "e2e"), max_trajectories=2, steps=4, tasks_per_step=1,
                    group_size=2, max_turns=2, max_new_tokens=8, lr=1e-3, tensorboard=False)
    rec = Recorder(stop_at=2)
    summary = train_e2e(cfg, log=lambda *_: None, on_eval=rec, eval_every=1)
    assert [s for s, _ in rec.calls] == [0, 1, 2]
    assert rec.calls[0][1]["rollout_turns"] == 0 < rec.calls[1][1]["rollout_turns"]
    assert summary["steps_done"] == 2 and summary["compute"]["rollout_turns"] == rec.calls[-1][1]["rollout_turns"]
    assert (tmp_path / "e2e" / "final" / "model.safetensors").exists()

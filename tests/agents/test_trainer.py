"""Smoke tests of the three trainers on a tiny model: they run, change every parameter, and resume."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import types
from importlib.util import find_spec

import pytest
import torch
from safetensors.torch import load_file

from agents.e2e import E2EConfig, train_e2e
from agents.pivotrl import TrainConfig, train
from agents.sft import SFTConfig, train_sft
from agents.tiny import build_tiny, save_tiny


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory, tool_use_records):
    tok, model = build_tiny(tool_use_records[:40], seed=0)
    return str(save_tiny(model, tok, tmp_path_factory.mktemp("tiny") / "base"))


def weights(path):
    return load_file(f"{path}/model.safetensors")


def test_sft_lowers_the_loss_on_assistant_tokens(tiny_path, tmp_path):
    cfg = SFTConfig(model=tiny_path, out_dir=str(tmp_path / "sft"), max_trajectories=8, steps=12, batch_size=4,
                    lr=3e-3, max_length=1024)
    summary = train_sft(cfg, log=lambda *_: None)
    assert summary["final_loss"] < summary["first_loss"]
    assert summary["compute"]["trained_tokens"] > 0
    assert (tmp_path / "sft" / "final" / "model.safetensors").exists()


def pivotrl_config(tiny_path, out, **kw):
    base = dict(model=tiny_path, out_dir=str(out), max_trajectories=3, profile_k=4, random_turns=True, max_pivots=4,
                steps=2, pivots_per_step=2, group_size=4, lr=1e-3, max_new_tokens=24, checkpoint_every=1,
                tensorboard=False, temperature=1.0)
    base.update(kw)
    return TrainConfig(**base)


def test_two_grpo_steps_change_every_parameter_with_finite_loss(tiny_path, tmp_path):
    # random_turns: an untrained model rarely matches the demonstration, so the pivot filter would
    # keep nothing; the ablation mode trains on random candidate turns and the invalid-action advantage
    # (-5) still gives every group a gradient.
    summary = train(pivotrl_config(tiny_path, tmp_path / "run"), log=lambda *_: None)
    final = summary["final"]
    assert final["step"] == 2 and torch.isfinite(torch.tensor(final["loss/policy"]))
    before, after = weights(tiny_path), weights(tmp_path / "run" / "checkpoints" / "step-000002")
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    assert not unchanged, f"parameters not updated: {unchanged}"
    assert summary["compute"]["rollout_turns"] > 0 and summary["compute"]["generated_tokens"] > 0
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert {"rollout/reward", "rollout/reward_std", "rollout/zero_variance_groups", "loss/clip_fraction",
            "time/generation_s", "time/verification_s", "time/update_s"} <= set(rows[0])


def test_training_resumes_exactly_from_a_checkpoint(tiny_path, tmp_path):
    full = train(pivotrl_config(tiny_path, tmp_path / "full", steps=3), log=lambda *_: None)
    train(pivotrl_config(tiny_path, tmp_path / "cut", steps=2), log=lambda *_: None)
    resumed = train(pivotrl_config(tiny_path, tmp_path / "cut", steps=3), log=lambda *_: None)
    assert resumed["final"]["rollout/reward"] == full["final"]["rollout/reward"]
    a = weights(tmp_path / "full" / "checkpoints" / "step-000003")
    b = weights(tmp_path / "cut" / "checkpoints" / "step-000003")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    steps = [json.loads(x)["step"] for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_e2e_runs_whole_episodes(tiny_path, tmp_path):
    cfg = E2EConfig(model=tiny_path, out_dir=str(tmp_path / "e2e"), max_trajectories=2, steps=1, tasks_per_step=1,
                    group_size=2, max_turns=3, max_new_tokens=16, lr=1e-3)
    summary = train_e2e(cfg, log=lambda *_: None)
    assert summary["compute"]["rollout_turns"] >= 2  # at least one turn per episode
    assert 0.0 <= summary["final"]["rollout/episode_reward"] <= 1.0


def test_bf16_autocast_on_cpu_trains_float32_master_weights(tiny_path, tmp_path):
    summary = train(pivotrl_config(tiny_path, tmp_path / "bf16", bf16=True, device="cpu"), log=lambda *_: None)
    assert torch.isfinite(torch.tensor(summary["final"]["loss/policy"]))
    before, after = weights(tiny_path), weights(tmp_path / "bf16" / "checkpoints" / "step-000002")
    assert all(t.dtype == torch.float32 for t in after.values())  # bf16 is autocast, not the stored weights
    assert not [k for k in before if torch.equal(before[k], after[k])]


def test_config_names_the_fix_for_a_bad_sampler_and_a_missing_wandb(tiny_path, monkeypatch):
    with pytest.raises(ValueError, match="sampler='sglang'"):
        TrainConfig(model=tiny_path, sampler="sglang")
    monkeypatch.delitem(sys.modules, "wandb", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else find_spec(name))
    with pytest.raises(ValueError, match="pip install wandb"):
        TrainConfig(model=tiny_path, wandb_project="pivotrl")


def test_metrics_go_to_wandb_when_a_project_is_set(tiny_path, tmp_path, monkeypatch):
    logged, runs = [], []

    class Run:
        def log(self, row, step):
            logged.append((step, row))

        def finish(self):
            runs.append("finished")

    fake = types.ModuleType("wandb")
    fake.init = lambda **kwargs: runs.append(kwargs) or Run()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    train(pivotrl_config(tiny_path, tmp_path / "wb", wandb_project="pivotrl-test"), log=lambda *_: None)
    assert runs[0]["project"] == "pivotrl-test" and runs[-1] == "finished"
    assert [s for s, _ in logged] == [1, 2]
    assert {"rollout/reward", "loss/policy", "time/update_s"} <= set(logged[0][1])


def test_the_single_process_accelerate_path_matches_the_plain_one(tiny_path, tmp_path):
    pytest.importorskip("accelerate")
    plain = train(pivotrl_config(tiny_path, tmp_path / "plain", device="cpu"), log=lambda *_: None)
    accel = train(pivotrl_config(tiny_path, tmp_path / "accel", device="cpu", distributed=True), log=lambda *_: None)
    assert accel["world_size"] == 1
    assert accel["final"]["rollout/reward"] == plain["final"]["rollout/reward"]
    a = weights(tmp_path / "plain" / "checkpoints" / "step-000002")
    b = weights(tmp_path / "accel" / "checkpoints" / "step-000002")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


CHILD = """
import json, sys
from agents.pivotrl import TrainConfig, train
summary = train(TrainConfig(**json.loads(sys.argv[1])), log=lambda *_: None)
print("SUMMARY " + json.dumps(summary))
"""


def test_two_cpu_processes_share_the_pivots_and_train_one_model(tiny_path, tmp_path):
    """torch.distributed over gloo, as ``accelerate launch --cpu --num_processes 2`` starts it (~10 s)."""
    pytest.importorskip("accelerate")
    cfg = dict(model=tiny_path, out_dir=str(tmp_path / "ddp"), max_trajectories=3, profile_k=4, random_turns=True,
               max_pivots=4, steps=2, pivots_per_step=2, group_size=4, lr=1e-3, max_new_tokens=24,
               checkpoint_every=1, tensorboard=False, device="cpu")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
               "RANK": str(rank), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(cfg)], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    summaries = [json.loads(next(line for line in o.splitlines() if line.startswith("SUMMARY "))[8:]) for o, _ in outs]
    assert [s["world_size"] for s in summaries] == [2, 2]
    # Metrics are gathered: both ranks report the same step, over both ranks' groups.
    assert summaries[0]["final"] == {**summaries[1]["final"], "time/update_s": summaries[0]["final"]["time/update_s"]}
    assert summaries[0]["final"]["rollout/groups"] == 2
    assert torch.isfinite(torch.tensor(summaries[0]["final"]["loss/policy"]))
    rows = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]  # written once, by rank 0
    before, after = weights(tiny_path), weights(tmp_path / "ddp" / "checkpoints" / "step-000002")
    assert not [k for k in before if torch.equal(before[k], after[k])]


def test_a_step_with_a_non_finite_gradient_is_skipped_and_counted(tiny_path, tmp_path, monkeypatch):
    import agents.policies.hf as hf

    class NaNGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.view_as(x)

        @staticmethod
        def backward(ctx, grad):
            return grad * float("nan")

    real = hf.sequence_logprobs
    monkeypatch.setattr(hf, "sequence_logprobs", lambda *a, **k: [NaNGrad.apply(x) for x in real(*a, **k)])
    summary = train(pivotrl_config(tiny_path, tmp_path / "nan"), log=lambda *_: None)
    assert summary["final"]["loss/skipped_steps"] == 2
    before, after = weights(tiny_path), weights(tmp_path / "nan" / "checkpoints" / "step-000002")
    assert all(torch.equal(before[k], after[k]) for k in before)  # no NaN written into the weights


@pytest.mark.parametrize("domain", ["search", "swe"])
def test_pivotrl_trains_on_the_newer_domains(tiny_path, tmp_path, domain, local_shell_worlds):
    # The search world is in-process; the SWE world is a shell world (the local backend here, Docker in
    # its own tests). One GRPO step from profiling to update, with the domain's own verifier.
    cfg = pivotrl_config(tiny_path, tmp_path / domain, domain=domain, max_trajectories=1, profile_k=2, max_pivots=2,
                         steps=1, pivots_per_step=1, group_size=2, max_new_tokens=16)
    summary = train(cfg, log=lambda *_: None)
    assert summary["final"]["step"] == 1 and torch.isfinite(torch.tensor(summary["final"]["loss/policy"]))
    assert summary["compute"]["rollout_turns"] > 0
    assert (tmp_path / domain / "checkpoints" / "step-000001" / "model.safetensors").exists()

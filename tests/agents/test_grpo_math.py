from __future__ import annotations

import pytest
import torch

from agents.config import ConfigError, load_config
from agents.pivotrl import TrainConfig, group_advantages, policy_loss


def test_group_advantages():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    a = group_advantages(r)
    assert torch.allclose(a[0], torch.tensor([1.0, -1.0, -1.0, 1.0]), atol=1e-4)
    assert torch.all(a[1] == 0)  # zero variance -> zero advantage -> zero gradient
    loo = group_advantages(torch.tensor([[1.0, 0.0, 0.0]]), "loo")
    assert torch.allclose(loo, torch.tensor([[1.0, -0.5, -0.5]]))


def test_policy_loss_clips_and_has_the_right_gradient_sign():
    old = torch.zeros(4)
    new = torch.tensor([0.0, 0.5, -0.5, 0.0], requires_grad=True)
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0])
    loss, stats = policy_loss(new, old, adv, 0.2, 0.28)
    loss.backward()
    # token 0: ratio 1, A>0 -> raising its logprob lowers the loss; token 1: ratio e^.5 > 1.28 -> clipped, no grad
    assert new.grad[0] < 0 and new.grad[1] == 0 and new.grad[2] == 0 and new.grad[3] > 0
    assert stats["clip_fraction"] == pytest.approx(0.5)
    kl_loss, kl_stats = policy_loss(new.detach(), old, adv, 0.2, 0.28, ref_logp=torch.zeros(4), kl_coef=0.1)
    assert kl_stats["kl"] > 0


def test_config_from_toml_yaml_and_overrides(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('model = "m"\nsteps = 3\nlr = 1e-5\n')
    cfg = load_config(TrainConfig, toml, ["group_size=4", "random_turns=true", "lr=2e-6"])
    assert (cfg.model, cfg.steps, cfg.group_size, cfg.random_turns, cfg.lr) == ("m", 3, 4, True, 2e-6)
    yml = tmp_path / "c.yaml"
    yml.write_text("model: m\nadvantage: loo\n")
    assert load_config(TrainConfig, yml).advantage == "loo"
    with pytest.raises(ConfigError, match="unknown config key.*valid keys"):
        load_config(TrainConfig, None, ["model=m", "lr_rate=1"])
    with pytest.raises(ConfigError, match="expected an integer"):
        load_config(TrainConfig, None, ["model=m", "steps=2.5"])
    with pytest.raises(ValueError, match="divisible by grad_accum"):
        load_config(TrainConfig, None, ["model=m", "pivots_per_step=5", "grad_accum=2"])
    with pytest.raises(ValueError, match="model is required"):
        TrainConfig()

"""VLLMPolicy against HFPolicy on one tiny model: greedy agreement, weight sync after a GRPO update, sampling.

These run in the vLLM virtual environment (``make test-vllm``, which runs ``scripts/setup-vllm-venv.sh``);
in the main environment vLLM is not installed and they skip. Where vLLM must be present (the variable
``PIVOTRL_REQUIRE_VLLM=1``, or ``CI=true`` inside the environment the setup script made) a missing vLLM
fails the run instead.

The model: a tiny Llama with head_dim 32 (vLLM's CPU attention has no smaller head size), trained for a
few seconds of masked SFT on bundled tool-use conversations so that its greedy turns are varied, end with
``<|im_end|>``, and have no near-tied logits; both engines run it in float32, where their per-token
log-probabilities agree to about 1e-6 (``LOGPROB_TOL`` allows 1e-4).
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
VLLM_REQUIRED = os.environ.get("PIVOTRL_REQUIRE_VLLM") == "1" or (
    IN_CI and (Path(sys.prefix) / ".pivotrl-vllm-venv").exists()
)
if VLLM_REQUIRED:
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"vLLM is required here but does not import ({exc}); rebuild the environment with "
                    "`rm -rf .venv-vllm && bash scripts/setup-vllm-venv.sh`", pytrace=False)
else:
    pytest.importorskip("vllm", reason="vLLM lives in its own environment: run `make test-vllm`")
torch = pytest.importorskip("torch")

from agents.chat import assistant_mask  # noqa: E402
from agents.pivotrl import group_advantages, policy_loss  # noqa: E402
from agents.policies.hf import HFPolicy, sequence_logprobs  # noqa: E402
from agents.policies.vllm import VLLMPolicy  # noqa: E402
from agents.tiny import build_tiny_model, build_tiny_tokenizer, save_tiny  # noqa: E402

pytestmark = pytest.mark.vllm

LOGPROB_TOL = 1e-4
MAX_NEW = 32


@pytest.fixture(scope="module")
def tok(tool_use_records):
    return build_tiny_tokenizer(tool_use_records)


@pytest.fixture(scope="module")
def trained(tok, tool_use_records):
    """A tiny model after 50 steps of masked SFT (5-10 s) on the two shortest of the first 60 conversations.

    Far from converged (that costs minutes here: each conversation is ~830 tokens, 500 of them the tool
    list), but its greedy turns differ between states and most end with ``<|im_end|>``."""
    records = sorted(tool_use_records[:60], key=lambda r: len(json.dumps(r.messages)))[:2]
    rows = [assistant_mask(tok, r.messages, r.tools) for r in records]
    width = max(len(ids) for ids, _ in rows)
    pad = [tok.pad_token_id]
    x = torch.tensor([ids + pad * (width - len(ids)) for ids, _ in rows])
    attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
    labels = torch.tensor([[t if m else -100 for t, m in zip(ids, mask, strict=True)] + [-100] * (width - len(ids))
                           for ids, mask in rows])
    model = build_tiny_model(tok, hidden_size=64, heads=2, seed=0).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-2)
    for _ in range(50):
        model(input_ids=x, attention_mask=attention, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    return model.eval(), records


@pytest.fixture(scope="module")
def checkpoint(trained, tok, tmp_path_factory):
    return save_tiny(trained[0], tok, tmp_path_factory.mktemp("vllm") / "tiny")


@pytest.fixture(scope="module")
def observations(trained, tool_use_records):
    """Ten states: turns 0-2 of the two conversations the model saw, and turn 0 of four it did not."""
    seen = [{"messages": r.prefix(k), "tools": r.tools} for r in trained[1] for k in range(3)]
    unseen = [{"messages": r.prefix(0), "tools": r.tools} for r in tool_use_records[100:104]]
    return seen + unseen


@pytest.fixture(scope="module")
def greedy_engine(checkpoint):
    with VLLMPolicy(checkpoint, temperature=0, max_new_tokens=MAX_NEW) as policy:
        yield policy


def assert_same_turns(vllm_samples, hf_samples):
    for i, (v, h) in enumerate(zip(vllm_samples, hf_samples, strict=True)):
        assert v.token_ids == h.token_ids, f"observation {i}: vLLM {v.text!r} != HF {h.text!r}"
        assert v.text == h.text
        assert max(abs(a - b) for a, b in zip(v.logprobs, h.logprobs, strict=True)) < LOGPROB_TOL


def test_greedy_turns_agree_token_for_token_with_hf(greedy_engine, trained, tok, observations):
    model, _ = trained
    hf = HFPolicy(model, tok, temperature=0, max_new_tokens=MAX_NEW)
    assert all(greedy_engine.prompt_ids(o) == hf.prompt_ids(o) for o in observations)
    vllm_rows, hf_rows = greedy_engine.sample(observations, n=2), hf.sample(observations, n=2)
    assert [len(r) for r in vllm_rows] == [2] * len(observations)
    assert all(a == b for a, b in vllm_rows)  # greedy: the n samples are one
    assert_same_turns([r[0] for r in vllm_rows], [r[0] for r in hf_rows])
    # Not a vacuous agreement: the turns differ between states and some end with the end-of-turn token.
    turns = [r[0] for r in vllm_rows]
    assert len({s.token_ids for s in turns}) > 1
    assert any(s.token_ids[-1] in greedy_engine.end_ids for s in turns)
    assert greedy_engine.llm.llm_engine.vllm_config.cache_config.enable_prefix_caching


def test_syncing_unchanged_weights_keeps_fingerprint_and_outputs(greedy_engine, trained, observations):
    before, fingerprint = greedy_engine.sample(observations[:2]), greedy_engine.fingerprint()
    assert greedy_engine.load_weights(trained[0]) > 0
    assert greedy_engine.fingerprint() == fingerprint  # digests of the checkpoint == digests of the same state dict
    assert greedy_engine.sample(observations[:2]) == before


def test_a_partial_sync_must_hold_whole_fused_layers(greedy_engine, trained):
    q = trained[0].state_dict()["model.layers.0.self_attn.q_proj.weight"]
    with pytest.raises(ValueError, match="k_proj"):
        greedy_engine.load_weights({"model.layers.0.self_attn.q_proj.weight": q})


def test_after_a_grpo_update_and_weight_sync_vllm_greedy_equals_the_updated_hf_model(checkpoint, trained, tok,
                                                                                     observations):
    model = copy.deepcopy(trained[0])
    with VLLMPolicy(checkpoint, temperature=1.0, max_new_tokens=MAX_NEW, seed=0) as policy:
        fingerprint = policy.fingerprint()
        # Rollout: G=4 samples per state from vLLM; reward = shorter turns are better (any reward with
        # variance inside a group gives a gradient).
        states = observations[:3]
        groups = policy.sample(states, n=4)
        rewards = torch.tensor([[-float(len(s.token_ids)) for s in g] for g in groups])
        adv = group_advantages(rewards)
        prompts = [policy.prompt_ids(o) for o in states for _ in range(4)]
        samples = [s for g in groups for s in g]
        old = torch.cat([torch.tensor(s.logprobs) for s in samples])
        adv_tokens = torch.cat([torch.full((len(s.token_ids),), float(a)) for s, a in zip(samples, adv.flatten(), strict=True)])
        # Update: 4 optimizer steps on this batch (PPO epochs); the clip keeps it a bounded step.
        opt = torch.optim.AdamW(model.parameters(), lr=3e-2)
        model.train()
        for _ in range(4):
            new = torch.cat(sequence_logprobs(model, prompts, [list(s.token_ids) for s in samples]))
            loss, _ = policy_loss(new, old, adv_tokens, 0.2, 0.28)
            (loss / len(new)).backward()
            opt.step()
            opt.zero_grad()
        model.eval()

        policy.temperature = 0.0
        stale = [r[0] for r in policy.sample(observations)]
        updated = [r[0] for r in HFPolicy(model, tok, temperature=0, max_new_tokens=MAX_NEW).sample(observations)]
        assert any(a.token_ids != b.token_ids for a, b in zip(stale, updated, strict=True)), \
            "the update did not change any greedy turn; the test would prove nothing"

        policy.load_weights(model)
        assert_same_turns([r[0] for r in policy.sample(observations)], updated)
        assert policy.fingerprint() != fingerprint


def test_n_samples_carry_token_ids_and_raw_logprobs_that_sequence_logprobs_recomputes(checkpoint, trained, tok,
                                                                                     observations):
    model, _ = trained
    states = observations[:3]
    with VLLMPolicy(checkpoint, temperature=0.7, max_new_tokens=MAX_NEW, seed=5) as policy:
        rows = policy.sample(states, n=4)
        policy.reseed(5)
        assert policy.sample(states, n=4) == rows  # same seed, same samples
        assert policy.sample(states, n=4) != rows  # the next call draws new ones
        prompts = [policy.prompt_ids(o) for o in states]
    assert [len(r) for r in rows] == [4, 4, 4]
    assert all(len({s.token_ids for s in r}) > 1 for r in rows)
    flat = [(p, s) for p, r in zip(prompts, rows, strict=True) for s in r]
    for _, s in flat:
        assert 1 <= len(s.token_ids) == len(s.logprobs) <= MAX_NEW
        assert all(lp <= 0 for lp in s.logprobs)
        body = s.token_ids[:-1] if s.token_ids[-1] in policy.end_ids else s.token_ids
        assert s.text == tok.decode(list(body), skip_special_tokens=False)
    # Sample.logprobs are raw (temperature 1, before top-k/top-p), HFPolicy's convention: they match the
    # plain recomputation, and not the temperature-scaled one the samples were drawn from.
    with torch.no_grad():
        plain = sequence_logprobs(model, [p for p, _ in flat], [list(s.token_ids) for _, s in flat])
        scaled = sequence_logprobs(model, [p for p, _ in flat], [list(s.token_ids) for _, s in flat], temperature=0.7)
    got = torch.cat([torch.tensor(s.logprobs) for _, s in flat])
    assert (got - torch.cat(plain)).abs().max() < LOGPROB_TOL
    assert (got - torch.cat(scaled)).abs().max() > 100 * LOGPROB_TOL


def test_a_head_size_the_cpu_kernels_lack_is_refused_before_the_engine_starts(tok, tmp_path):
    from agents.policies.vllm import _vllm_on_cpu

    path = save_tiny(build_tiny_model(tok, hidden_size=64, heads=4), tok, tmp_path / "head16")
    if _vllm_on_cpu():
        with pytest.raises(ValueError, match="head_dim=16"):
            VLLMPolicy(path)
    else:  # GPU kernels take head_dim 16
        VLLMPolicy(path, max_new_tokens=4).close()


def test_train_with_the_vllm_sampler_keeps_the_engine_in_sync_with_the_trained_model(checkpoint, tok, observations,
                                                                                     tmp_path, monkeypatch):
    """Two GRPO steps of ``train(sampler="vllm")``: vLLM profiles and samples, the HF model is updated and
    its weights are pushed into the engine after each step. Afterwards the engine's greedy turns (and their
    log-probabilities) equal those of the checkpoint the trainer saved."""
    import agents.pivotrl as pivotrl

    engines = []

    def keep_engine(*args, **kwargs):  # the trainer closes its engine at the end; keep this one open
        engine = make_sampler(*args, **kwargs)
        engines.append(engine)
        monkeypatch.setattr(engine, "close", lambda: None)
        return engine

    make_sampler = pivotrl._vllm_sampler
    monkeypatch.setattr(pivotrl, "_vllm_sampler", keep_engine)
    cfg = pivotrl.TrainConfig(model=str(checkpoint), out_dir=str(tmp_path / "run"), sampler="vllm", device="cpu",
                              max_trajectories=2, profile_k=2, random_turns=True, max_pivots=4, steps=2,
                              pivots_per_step=2, group_size=4, lr=1e-2, max_new_tokens=MAX_NEW, checkpoint_every=1,
                              tensorboard=False)
    summary = pivotrl.train(cfg, log=lambda *_: None)
    [engine] = engines
    try:
        final = summary["final"]
        assert summary["sampler"] == "vllm" and final["step"] == 2
        numbers = {k: v for k, v in final.items() if isinstance(v, float)}
        assert all(torch.isfinite(torch.tensor(v)) for v in numbers.values()), numbers
        assert final["time/weight_sync_s"] > 0

        saved = tmp_path / "run" / "checkpoints" / "step-000002"
        engine.temperature = 0.0
        synced = [r[0] for r in engine.sample(observations)]
        hf = HFPolicy.from_pretrained(saved, device="cpu", temperature=0, max_new_tokens=MAX_NEW)
        assert_same_turns(synced, [r[0] for r in hf.sample(observations)])
        # Not vacuous: the two steps moved the model away from where the engine started.
        base = HFPolicy.from_pretrained(checkpoint, device="cpu", temperature=0, max_new_tokens=MAX_NEW)
        before = [r[0] for r in base.sample(observations)]
        gaps = [max((abs(a - b) for a, b in zip(s.logprobs, t.logprobs, strict=False)), default=0.0)
                for s, t in zip(synced, before, strict=True)]
        assert max(gaps) > 100 * LOGPROB_TOL
    finally:
        monkeypatch.undo()
        engine.close()

"""End-to-end RL baseline: multi-turn GRPO through ``mode="episode"`` envs, rewarded by the task outcome.

    pivotrl e2e --config examples/e2e_cpu.toml [--set key=value ...]

Each step draws ``tasks_per_step`` trajectories, plays G whole episodes per task from turn 0 with the
current policy (every assistant turn is a model call; tool calls run in the sandbox; recorded user
turns are replayed), rewards each episode 1/0 by the task outcome, normalises rewards over the G
episodes of a task, and applies the same clipped token-level loss as PivotRL to every generated token
of the episode. Compute is counted the same way as PivotRL's (rollout turns, generated tokens, sandbox
seconds, wall-clock), so the two can be compared on the same data.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.pivotrl import EvalCallback, group_advantages, policy_loss, tensorboard_writer
from pivot_envs.core import TrajectoryEnv


@dataclass
class E2EConfig:
    """Every knob of an end-to-end RL run. Loadable from TOML/YAML; ``--set key=value`` overrides."""

    model: str = ""
    domain: str = "tool_use"
    trajectories: str = ""
    max_trajectories: int = 0
    out_dir: str = "runs/e2e"
    seed: int = 0
    steps: int = 10
    tasks_per_step: int = 2
    group_size: int = 4
    max_turns: int = 12
    """Turn budget per episode (truncated episodes get reward 0)."""
    advantage: str = "group"
    lr: float = 1e-6
    clip_low: float = 0.2
    clip_high: float = 0.28
    max_grad_norm: float = 1.0
    max_new_tokens: int = 128
    temperature: float = 1.0
    device: str = "auto"
    tensorboard: bool = True
    """Also write the metrics as TensorBoard logs to ``out_dir/tensorboard``."""

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model is required: a local checkpoint path or hub id")
        if self.group_size < 2:
            raise ValueError("group_size must be >= 2")
        if self.advantage not in ("group", "loo"):
            raise ValueError(f"advantage={self.advantage!r}: use 'group' or 'loo'")


def rollout_episode(env: TrajectoryEnv, policy: Any, trajectory_id: str) -> dict[str, Any]:
    """Play one episode from turn 0; returns the per-turn (prompt ids, sample) pairs and the outcome."""
    return rollout_episodes([env], policy, [trajectory_id])[0]


def rollout_episodes(envs: list[TrajectoryEnv], policy: Any, trajectory_ids: list[str]) -> list[dict[str, Any]]:
    """Play one episode per env in lockstep (``envs[i]`` plays ``trajectory_ids[i]`` from turn 0).

    Each round samples the next turn of every running episode in one policy call, so a model policy
    generates in batches. Returns, per episode, the (prompt ids, sample) pairs, the reward and the outcome.
    """
    results: list[dict[str, Any]] = [{"turns": [], "reward": 0.0, "success": False, "sandbox_s": 0.0}
                                     for _ in trajectory_ids]
    running: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    for i, (env, tid) in enumerate(zip(envs, trajectory_ids, strict=True)):
        running[i] = env.reset(options={"trajectory": tid, "turn": 0})
    while running:
        slots = sorted(running)
        try:
            samples = policy.sample([running[i][0] for i in slots], n=1, infos=[running[i][1] for i in slots])
        except Exception as exc:  # a prompt outgrew the context: that episode ends with reward 0
            if getattr(exc, "index", None) is None:
                raise
            del running[slots[exc.index]]
            continue
        for i, (sample, *_) in zip(slots, samples, strict=True):
            obs = running[i][0]
            results[i]["turns"].append((policy.prompt_ids(obs), sample))
            t = time.perf_counter()
            obs, reward, terminated, truncated, info = envs[i].step(sample.text)
            results[i]["sandbox_s"] += time.perf_counter() - t
            if terminated or truncated:
                results[i].update(reward=float(reward), success=bool(info.get("success")))
                del running[i]
            else:
                running[i] = (obs, info)
    return results


def train_e2e(cfg: E2EConfig, log: Any = print, on_step: Callable[[int, int], None] | None = None,
              on_eval: EvalCallback | None = None, eval_every: int = 0) -> dict[str, Any]:
    """Run end-to-end GRPO; returns final metrics and compute accounting.

    ``on_step(done, total)`` is called after every optimizer step (progress bars). ``on_eval(step, policy,
    compute)`` is called before the first step (step 0), every ``eval_every`` steps and after the last one,
    as in :func:`agents.pivotrl.train`: its seconds are not counted as training, and True stops training.
    """
    from agents.policies.hf import HFPolicy, sequence_logprobs

    start = time.perf_counter()
    eval_s = 0.0  # seconds spent in on_eval

    def evaluate(step_done: int) -> bool:
        nonlocal eval_s
        t = time.perf_counter()
        stop = on_eval(step_done, policy, {**compute, "wall_clock_s": t - start - eval_s})
        eval_s += time.perf_counter() - t
        return bool(stop)

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    torch.manual_seed(cfg.seed)
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    env = TrajectoryEnv(cfg.trajectories or None, domain=cfg.domain, mode="episode", max_turns=cfg.max_turns)
    ids = env.ids[: cfg.max_trajectories or None]
    records = [env.trajectories[i] for i in ids]
    # one episode-mode env per concurrent episode (tasks_per_step x group_size), reused every step
    envs = [env] + [TrajectoryEnv(records, domain=cfg.domain, mode="episode", max_turns=cfg.max_turns)
                    for _ in range(min(cfg.tasks_per_step, len(ids)) * cfg.group_size - 1)]
    policy = HFPolicy.from_pretrained(cfg.model, device=device, max_new_tokens=cfg.max_new_tokens,
                                      temperature=cfg.temperature)
    model, tok = policy.model, policy.tokenizer
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    compute = {"rollout_turns": 0, "generated_tokens": 0, "sandbox_seconds": 0.0}
    metrics_path = out / "metrics.jsonl"
    metrics_path.write_text("")
    writer = tensorboard_writer(out) if cfg.tensorboard else None
    last: dict[str, Any] = {}
    if on_eval is not None:
        evaluate(0)
    for step in range(cfg.steps):
        t0 = time.perf_counter()
        rng = np.random.default_rng([cfg.seed, step])
        tasks = [ids[i] for i in rng.choice(len(ids), size=min(cfg.tasks_per_step, len(ids)), replace=False)]
        model.eval()
        policy.reseed(cfg.seed * 1_000_003 + step)
        flat = rollout_episodes(envs, policy, [tid for tid in tasks for _ in range(cfg.group_size)])
        episodes = [flat[i * cfg.group_size : (i + 1) * cfg.group_size] for i in range(len(tasks))]
        rewards = torch.tensor([[e["reward"] for e in group] for group in episodes])
        adv = group_advantages(rewards, cfg.advantage)
        seqs = [(p, s, float(adv[i, j])) for i, group in enumerate(episodes) for j, e in enumerate(group)
                for p, s in e["turns"] if s.token_ids]
        total_tokens = sum(len(s.token_ids) for _, s, _ in seqs) or 1
        compute["rollout_turns"] += sum(len(e["turns"]) for g in episodes for e in g)
        compute["generated_tokens"] += total_tokens
        compute["sandbox_seconds"] += sum(e["sandbox_s"] for g in episodes for e in g)
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for k in range(0, len(seqs), 16):  # micro-batches of 16 sequences bound memory
            micro = seqs[k : k + 16]
            new = sequence_logprobs(model, [p for p, _, _ in micro], [list(s.token_ids) for _, s, _ in micro])
            new_flat = torch.cat(new).float()
            old_flat = torch.cat([torch.tensor(s.logprobs) if s.logprobs else n.detach().cpu()
                                  for (_, s, _), n in zip(micro, new, strict=True)]).float().to(new_flat.device)
            adv_flat = torch.cat([torch.full((len(s.token_ids),), a) for _, s, a in micro]).to(new_flat.device)
            loss, _ = policy_loss(new_flat, old_flat, adv_flat, cfg.clip_low, cfg.clip_high)
            (loss / total_tokens).backward()
            loss_sum += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        last = {"step": step + 1, "rollout/episode_reward": float(rewards.mean()),
                "rollout/turns_per_episode": float(np.mean([len(e["turns"]) for g in episodes for e in g])),
                "loss/policy": loss_sum / total_tokens, "time/step_s": time.perf_counter() - t0}
        with open(metrics_path, "a") as fh:
            fh.write(json.dumps(last) + "\n")
        if writer is not None:
            for k, v in last.items():
                if k != "step":
                    writer.add_scalar(k, v, step + 1)
        if on_step is not None:
            on_step(step + 1, cfg.steps)
        log(f"e2e step {step + 1}/{cfg.steps}: episode reward {last['rollout/episode_reward']:.3f}, "
            f"{last['rollout/turns_per_episode']:.1f} turns/episode")
        if on_eval is not None and eval_every > 0 and ((step + 1) % eval_every == 0 or step + 1 == cfg.steps):
            if evaluate(step + 1):
                log(f"e2e stopped after step {step + 1} (on_eval)")
                break
    if writer is not None:
        writer.close()
    final = out / "final"
    model.save_pretrained(final, safe_serialization=True)
    tok.save_pretrained(final)
    compute["wall_clock_s"] = time.perf_counter() - start - eval_s
    summary = {"final": last, "compute": compute, "model": str(final), "steps_done": last.get("step", 0),
               "eval_seconds": eval_s}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    for e in envs:
        e.close()
    return summary

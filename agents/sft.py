"""SFT baseline: next-token loss on the assistant tokens of the expert trajectories only.

    pivotrl sft --config examples/sft_cpu.toml [--set key=value ...]

Conversations are rendered with the tokenizer's own chat template; the loss mask covers exactly the
tokens of assistant turns (:func:`agents.chat.assistant_mask`), so system, user and tool text is never
trained on. Compute is accounted like the RL runs (tokens seen, wall-clock) for side-by-side tables.
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

from pivot_envs.core import TrajectoryEnv


@dataclass
class SFTConfig:
    """Every knob of an SFT run. Loadable from TOML/YAML; ``--set key=value`` overrides."""

    model: str = ""
    """Starting weights: a local path or hub id."""
    domain: str = "tool_use"
    trajectories: str = ""
    """JSONL of trajectory records; empty = the domain's bundled data."""
    max_trajectories: int = 0
    out_dir: str = "runs/sft"
    seed: int = 0
    steps: int = 100
    batch_size: int = 8
    lr: float = 1e-4
    max_length: int = 1024
    """Conversations are truncated to this many tokens (the mask is truncated with them)."""
    warmup_steps: int = 10
    max_grad_norm: float = 1.0
    device: str = "auto"
    bf16: bool = False
    """bfloat16 autocast for the forward pass; weights and optimizer stay float32 (as in the PivotRL trainer)."""
    tensorboard: bool = True
    """Also write the metrics as TensorBoard logs to ``out_dir/tensorboard``."""

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model is required: a local checkpoint path or hub id")
        if self.batch_size < 1 or self.steps < 1:
            raise ValueError("batch_size and steps must be >= 1")


def sft_batches(tokenizer: Any, records: list[Any], max_length: int) -> list[tuple[list[int], list[int]]]:
    """(input_ids, assistant mask) per trajectory, truncated to ``max_length``."""
    from agents.chat import assistant_mask

    out = []
    for t in records:
        ids, mask = assistant_mask(tokenizer, t.messages, t.tools)
        ids, mask = list(ids)[:max_length], list(mask)[:max_length]
        if any(mask):  # a conversation whose first assistant turn lies beyond max_length teaches nothing
            out.append((ids, mask))
    if not out:
        raise ValueError(f"no trajectory has an assistant token within max_length={max_length} tokens; "
                         "raise max_length (prompts with many tool schemas are long)")
    return out


def sft_loss(model: Any, batch: list[tuple[list[int], list[int]]], pad_id: int, device: str) -> tuple[torch.Tensor, int]:
    """Mean next-token cross-entropy over masked (assistant) tokens; returns (loss, tokens)."""
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (ids, mask) in enumerate(batch):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
        labels[i, : len(ids)] = torch.tensor([t if m else -100 for t, m in zip(ids, mask, strict=True)])
    logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
    # position t predicts token t+1
    shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1])
    shift_labels = labels[:, 1:].reshape(-1).to(device)
    tokens = int((shift_labels != -100).sum())
    loss = torch.nn.functional.cross_entropy(shift_logits.float(), shift_labels, ignore_index=-100)
    return loss, tokens


def train_sft(cfg: SFTConfig, log: Any = print, on_step: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run SFT and save the final model to ``out_dir/final``; returns metrics and compute accounting.

    ``on_step(done, total)`` is called after every optimizer step (progress bars).
    """
    from agents.pivotrl import tensorboard_writer
    from agents.policies.hf import HFPolicy

    start = time.perf_counter()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    torch.manual_seed(cfg.seed)
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    env = TrajectoryEnv(cfg.trajectories or None, domain=cfg.domain)
    records = list(env.trajectories.values())[: cfg.max_trajectories or None]
    policy = HFPolicy.from_pretrained(cfg.model, device=device, dtype=torch.float32)
    model, tok = policy.model, policy.tokenizer
    data = sft_batches(tok, records, cfg.max_length)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(cfg.warmup_steps, 1)))
    rng = np.random.default_rng(cfg.seed)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    model.train()
    seen_tokens, losses = 0, []
    metrics_path = out / "metrics.jsonl"
    metrics_path.write_text("")
    writer = tensorboard_writer(out) if cfg.tensorboard else None
    for step in range(cfg.steps):
        idx = rng.choice(len(data), size=min(cfg.batch_size, len(data)), replace=False)
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=cfg.bf16):
            loss, tokens = sft_loss(model, [data[i] for i in idx], pad, device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        sched.step()
        seen_tokens += tokens
        losses.append(loss.item())
        with open(metrics_path, "a") as fh:
            fh.write(json.dumps({"step": step + 1, "loss/sft": losses[-1], "tokens": tokens}) + "\n")
        if writer is not None:
            writer.add_scalar("loss/sft", losses[-1], step + 1)
            writer.add_scalar("tokens", tokens, step + 1)
        if on_step is not None:
            on_step(step + 1, cfg.steps)
        if (step + 1) % max(cfg.steps // 10, 1) == 0 or step == 0:
            log(f"sft step {step + 1}/{cfg.steps}: loss {losses[-1]:.4f}")
    if writer is not None:
        writer.close()
    final = out / "final"
    model.save_pretrained(final, safe_serialization=True)
    tok.save_pretrained(final)
    summary = {"final_loss": losses[-1], "first_loss": losses[0], "model": str(final),
               "compute": {"trained_tokens": seen_tokens, "rollout_turns": 0, "generated_tokens": 0,
                           "sandbox_seconds": 0.0, "wall_clock_s": time.perf_counter() - start}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    env.close()
    return summary

"""The demo's experiment on one GPU with a larger base model built here, offline: all methods, same report.

    python examples/demo_gpu.py [--out runs/demo-gpu] [--cache-dir runs/demo-gpu-cache] [--seeds 3]

What it does (NOT RUN YET: written on a machine without a GPU; the figures below are estimates):

1. Builds a ~27M-parameter Llama (hidden 512, 8 layers, 8 heads, vocabulary 4096; the demo's own recipe,
   :func:`pretrain_base`): a tokenizer trained on the general mix, then next-token training on the same
   general mix as the CPU demo's base (agentic conversations of both domains generated with seed 1, and
   the OOD questions), on the GPU in bf16 autocast. It is saved where :func:`agents.demo.run_demo` looks
   for a cached base of this plan (``<cache>/base-<plan key>``), so the demo uses it as is.
2. Runs :func:`agents.demo.run_demo` with :data:`GPU`: the ``--full`` experiment (3 seeds, both
   ablations, PivotRL vs E2E RL checkpoint curves) with about 400 held-out turns in *both* domains
   (terminal: 55 generated held-out trajectories, seed 2), every OOD item, K=8 profiling, longer GRPO
   and E2E budgets, batched generation and bf16 on ``cuda``. Same ``report.md`` / ``report.json`` /
   plots as the CPU demo.

Sizing for one H100/H200 (80-141 GB), estimated, not measured:

* memory: weights + AdamW state of 27M parameters ~0.5 GB; generation of 256 rows x ~2,100 tokens with
  the KV cache in bf16 ~9 GB; the PivotRL loss on 16 pivots x 16 samples in 8 micro-batches ~4 GB of
  logits and activations. Peak about 15 GB of GPU memory; one trainer runs at a time.
* time: GPU work (base pretraining ~2 min, greedy scoring of ~400 turns in batches of 128: seconds per
  model) is not the bottleneck; the terminal domain's verification is: every scored terminal turn runs
  two Docker forks (about 1 s today, ~0.05 s with the faster executor), and the terminal evaluations of
  this plan score ~4,000 turns in all. With the fast executor the whole run should take under 10
  minutes; with ~1 s per terminal turn it takes over an hour (pass ``--terminal-turns 90`` for the
  default plan's 90 terminal turns, about 15 minutes then). Without a Docker daemon the terminal tasks
  run in local processes (faster, not isolated).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

from agents.demo import COMPLETE_TERMINAL, general_records, plan_with, run_demo

GPU = plan_with(
    COMPLETE_TERMINAL,
    # the base model (pretrained by pretrain_base below, not by the CPU demo's build_base)
    hidden_size=512, layers=8, vocab_size=4096, base_records=400, base_steps=2000, base_batch=16,
    base_ood_batch=64, base_lr=1e-3,
    # post-training and scoring
    train_limit=(("tool_use", 60), ("terminal", 8)), sft_steps=300, sft_batch=16, sft_lr=5e-4,
    profile_k=8, pivot_steps=(("tool_use", 40), ("terminal", 10)), pivots_per_step=16, group_size=16,
    pivot_lr=1e-5, grad_accum=8, e2e_steps=(("tool_use", 20), ("terminal", 6)), e2e_tasks=4, e2e_group=8,
    e2e_lr=1e-5, curve_every=5, curve_e2e_steps=60, curve_e2e_every=5, heldout_tasks=(("tool_use", 60), ("terminal", 30)),
    device="cuda", bf16=True, generation_batch_size=256, eval_batch=128,
)
HEADS = 8


def pretrain_base(plan, cache: Path, seed: int = 0) -> Path:
    """The demo's base-model recipe at this plan's sizes, on the GPU; saved as the demo's cached base."""
    import numpy as np
    import torch

    from agents.ood import ood_items
    from agents.sft import sft_batches, sft_loss
    from agents.tiny import build_tiny_model, save_tiny, tiny_corpus, train_tokenizer

    path = cache / f"base-{plan.key(seed)}"
    if (path / "base_stats.json").exists():
        print(f"base model already built: {path}")
        return path
    start = time.perf_counter()
    general = general_records(plan)
    items = ood_items()
    tokenizer = train_tokenizer(tiny_corpus(general) + [f"{i.question}\n{i.answer}" for i in items] * 3,
                                vocab_size=plan.vocab_size)
    tokenizer.model_max_length = 4096
    model = build_tiny_model(tokenizer, hidden_size=plan.hidden_size, layers=plan.layers, heads=HEADS, seed=seed,
                             max_position_embeddings=4096).to(plan.device)
    agent_data = sft_batches(tokenizer, general, plan.max_length)
    ood_data = sft_batches(tokenizer, [SimpleNamespace(messages=i.messages(with_answer=True), tools=[])
                                       for i in items], 64)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=plan.base_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 50))
    model.train()
    for step in range(plan.base_steps):
        agent = [agent_data[i] for i in rng.choice(len(agent_data), plan.base_batch, replace=False)]
        ood = [ood_data[i] for i in rng.choice(len(ood_data), plan.base_ood_batch, replace=False)]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=plan.bf16):
            loss = sft_loss(model, agent, tokenizer.pad_token_id, plan.device)[0] + \
                sft_loss(model, ood, tokenizer.pad_token_id, plan.device)[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        sched.step()
        if step % 200 == 0 or step + 1 == plan.base_steps:
            print(f"base step {step + 1}/{plan.base_steps}: loss {loss.item():.3f}", flush=True)
    model.eval()
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_tiny(model.float().cpu(), tokenizer, tmp)
    stats = {"plan_key": plan.key(seed), "params": sum(p.numel() for p in model.parameters()),
             "steps": plan.base_steps, "general_records": len(general), "ood_items": len(items),
             "seconds": time.perf_counter() - start, "built_by": "examples/demo_gpu.py"}
    (tmp / "base_stats.json").write_text(json.dumps(stats, indent=2))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/demo-gpu")
    ap.add_argument("--cache-dir", default="runs/demo-gpu-cache")
    ap.add_argument("--seeds", type=int, default=GPU.seeds)
    ap.add_argument("--terminal-turns", type=int, choices=(90, 400), default=400,
                    help="held-out terminal turns: 400 (+-5-point intervals) or 90 (the CPU demo's default)")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this example is for a GPU (the CPU demo is `make demo`)")
    plan = plan_with(GPU, seeds=args.seeds)
    if args.terminal_turns == 90:
        plan = plan_with(plan, heldout=(("tool_use", 60), ("terminal", 25)),
                         heldout_generated=(("tool_use", 0), ("terminal", 0)))
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    pretrain_base(plan, cache)
    torch.cuda.reset_peak_memory_stats()
    report = run_demo(args.out, plan=plan, cache_dir=cache)
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"peak GPU memory allocated: {peak:.1f} GiB; wall-clock {report['wall_clock_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()

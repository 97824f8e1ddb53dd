"""The demo's experiment on one GPU with a larger base model built here, offline: all methods, same report.

    python examples/demo_gpu.py [--out runs/demo-gpu] [--cache-dir runs/demo-gpu-cache] [--seeds 3]

What it does (NOT RUN YET: written on a machine without a GPU; the figures below are estimates):

1. Builds a ~27M-parameter Llama (hidden 512, 8 layers, 8 heads, vocabulary 4096; the demo's own recipe,
   :func:`agents.demo.build_base` on the GPU in bf16 autocast): a tokenizer trained on the base mix, then
   next-token training on the same mix as the CPU demo's base (agentic conversations of both domains
   generated with seed 1, and the OOD questions). It is saved where :func:`agents.demo.run_demo` looks
   for a cached base of this plan (``<cache>/base-<plan key>``), so the demo uses it as is.
2. Runs :func:`agents.demo.run_demo` with :data:`GPU`: the ``--full`` experiment (3 seeds, both
   ablations, PivotRL vs E2E RL checkpoint curves) with about 400 held-out turns in *both* domains
   (terminal: 80 generated held-out trajectories, seed 2, as ``pivotrl demo --full``), every OOD item, K=8 profiling, longer GRPO
   and E2E budgets, batched generation and bf16 on ``cuda``. Same ``report.md`` / ``report.json`` /
   plots as the CPU demo.

Sizing for one H100/H200 (80-141 GB), estimated, not measured:

* memory: weights + AdamW state of 27M parameters ~0.5 GB; generation of 256 rows x ~2,100 tokens with
  the KV cache in bf16 ~9 GB; the PivotRL loss on 16 pivots x 16 samples in 8 micro-batches ~4 GB of
  logits and activations. Peak about 15 GB of GPU memory; one trainer runs at a time.
* time: GPU work (base pretraining ~2 min, greedy scoring of ~400 turns in batches of 128: seconds per
  model) is not the bottleneck; the terminal domain's verification is: every scored terminal turn runs
  the demonstrated and the sampled command on warm Docker workers (about 0.07 s on 2 CPU cores, plus
  about 0.2 s to restore a state the first time: the run keeps one held-out env, so each state is
  restored once), and the terminal evaluations of this plan score ~4,000 turns in all: about 5 minutes
  of verification, so the whole run should take under 10 minutes (``--terminal-turns 90``, the default
  plan's 90 terminal turns, saves about 4 of them). Without a Docker daemon the terminal tasks
  run in local processes (faster, not isolated).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agents.demo import COMPLETE, Narrator, build_base, plan_with, run_demo

GPU = plan_with(
    COMPLETE,
    # the base model (built on the GPU by pretrain_base below, with the CPU demo's own build_base)
    hidden_size=512, layers=8, heads=8, vocab_size=4096, base_records=(("tool_use", 2000), ("terminal", 800)),
    base_steps=2000, base_batch=16,
    base_ood_batch=64, base_lr=1e-3,
    # post-training and scoring
    train_limit=(("tool_use", 60), ("terminal", 8)), sft_steps=300, sft_batch=16, sft_lr=5e-4,
    profile_k=8, pivot_steps=(("tool_use", 40), ("terminal", 10)), pivots_per_step=16, group_size=16,
    pivot_lr=1e-5, grad_accum=8, e2e_steps=(("tool_use", 20), ("terminal", 6)), e2e_tasks=4, e2e_group=8,
    e2e_lr=1e-5, curve_every=5, curve_e2e_steps=60, curve_e2e_every=5, heldout_tasks=(("tool_use", 60), ("terminal", 30)),
    device="cuda", bf16=True, generation_batch_size=256, eval_batch=128,
)


def pretrain_base(plan, cache: Path, seed: int = 0) -> Path:
    """The demo's own base-model recipe (:func:`agents.demo.build_base`) at this plan's sizes, trained on the
    GPU in bf16 autocast and cached where :func:`agents.demo.run_demo` looks for a base of this plan."""
    from rich.console import Console

    path, stats = build_base(plan, cache, Narrator(Console()), seed=seed, device=plan.device)
    print(f"base model: {path} ({stats['params'] / 1e6:.1f}M parameters, {stats['seconds']:.0f} s)")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/demo-gpu")
    ap.add_argument("--cache-dir", default="runs/demo-gpu-cache")
    ap.add_argument("--seeds", type=int, default=GPU.seeds)
    ap.add_argument("--terminal-turns", type=int, choices=(90, 400), default=400,
                    help="held-out terminal turns: 400 (+-5-point intervals, as `pivotrl demo --full`) or 90 (as `make demo`)")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this example is for a GPU (the CPU demo is `make demo`)")
    plan = plan_with(GPU, seeds=args.seeds)
    if args.terminal_turns == 90:
        plan = plan_with(plan, heldout=(("tool_use", 60), ("terminal", 25)),
                         heldout_generated=(("tool_use", 30), ("terminal", 0)))
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    pretrain_base(plan, cache)
    torch.cuda.reset_peak_memory_stats()
    report = run_demo(args.out, plan=plan, cache_dir=cache)
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"peak GPU memory allocated: {peak:.1f} GiB; wall-clock {report['wall_clock_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()

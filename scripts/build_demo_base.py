"""Rebuild the demo's built-in base model (agents/demo_base/) with the full plan and seed 0.

    .venv/bin/python scripts/build_demo_base.py [--checkpoint-every 300] [--no-terminal-score]

It trains a small Llama from scratch on the base mix of :func:`agents.demo.build_base` (conversations from
both domains' expert generators with seed 1, disjoint from the bundled data and the held-out splits, plus
the OOD items; about 25 minutes on 2 CPU cores) and replaces agents/demo_base/ with the result.

At every checkpoint it scores the model greedily on the demo's *training* split (never the held-out one):
tool use at every checkpoint, terminal (Docker-verified) at the last. Those figures, the ones the model
size and training length were chosen on, go into ``base_stats.json`` as ``train_split_accuracy``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from agents.demo import DOMAINS, FULL, SHIPPED_BASE, Narrator, build_base, greedy_turns, split_data


def training_split_accuracy(model: Any, tokenizer: Any, splits: dict[str, Any], domains: tuple[str, ...]) -> dict[str, Any]:
    """Greedy per-turn accuracy and verdict categories on each domain's demo training split."""
    out = {}
    for d in domains:
        r = greedy_turns(model, tokenizer, splits[d]["train"], d, FULL, "base")
        out[d] = {"turns": r.turns, "accuracy": r.accuracy, "categories": dict(r.categories.most_common(6))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint-every", type=int, default=300,
                        help="score the tool-use training split every N steps (0: only at the end)")
    parser.add_argument("--no-terminal-score", action="store_true",
                        help="skip the Docker-verified terminal score at the end")
    args = parser.parse_args()
    console = Console()
    scores: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        splits = split_data(Path(tmp) / "split", FULL)

        def on_checkpoint(step: int, model: Any, tokenizer: Any) -> None:
            last = step == FULL.base_steps
            domains = DOMAINS if last and not args.no_terminal_score else ("tool_use",)
            score = {"step": step, **training_split_accuracy(model, tokenizer, splits, domains)}
            scores.append(score)
            console.print(f"step {step}: " + ", ".join(f"{d} {score[d]['accuracy']:.1%} of {score[d]['turns']} turns"
                                                       for d in domains))

        path, stats = build_base(FULL, Path(tmp), Narrator(console), seed=0, rebuild=True,
                                 on_checkpoint=on_checkpoint, checkpoint_every=args.checkpoint_every)
        stats["train_split_accuracy"] = scores
        (path / "base_stats.json").write_text(json.dumps(stats, indent=2))
        shutil.rmtree(SHIPPED_BASE, ignore_errors=True)
        shutil.copytree(path, SHIPPED_BASE)
    print(f"wrote {SHIPPED_BASE}: {json.dumps(stats)}")


if __name__ == "__main__":
    main()

"""Rebuild the demo's built-in base model (agents/demo_base/) with the full plan and seed 0.

    .venv/bin/python scripts/build_demo_base.py [--checkpoint-every 300] [--no-terminal-score]
                                                [--set base_steps=2400 --out runs/base-try]

It trains a small Llama from scratch on the base mix of :func:`agents.demo.build_base` (conversations from
both domains' expert generators with seed 1, disjoint from the bundled data and the held-out splits, plus
the OOD items; about 65 minutes on 2 CPU cores for 2,400 steps) and replaces agents/demo_base/ with the result.

At every checkpoint it scores the model greedily on the demo's *training* split (never the held-out one):
tool use at every checkpoint, terminal (Docker-verified) at the last, and at the last also 30 tool-use
validation conversations (:func:`agents.demo.validation_records`). Those figures, the ones the model size,
data mix and training length were chosen on, go into ``base_stats.json`` as ``train_split_accuracy``.

``--set key=value`` (repeatable) trains with other base sizes than the plan's (any ``DemoPlan`` field, typed
as ``pivotrl train --set`` types them; a tuple field takes a JSON list of lists, e.g.
``--set 'base_records=[["tool_use",4000],["terminal",2400]]'``); such a try needs ``--out`` and leaves agents/demo_base/ alone. To ship a try, make its values the ``DemoPlan``
defaults and copy its directory to agents/demo_base/ (its ``plan_key`` then matches).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from agents.config import ConfigError, load_config
from agents.demo import (
    DOMAINS,
    FULL,
    SHIPPED_BASE,
    DemoPlan,
    Narrator,
    _conversation_key,
    build_base,
    greedy_turns,
    plan_with,
    split_data,
    validation_records,
)


def training_split_accuracy(model: Any, tokenizer: Any, splits: dict[str, Any], domains: tuple[str, ...]) -> dict[str, Any]:
    """Greedy per-turn accuracy and verdict categories on each domain's demo training split."""
    out = {}
    for d in domains:
        r = greedy_turns(model, tokenizer, splits[d]["train"], d, FULL, "base")
        out[d] = {"turns": r.turns, "accuracy": r.accuracy, "categories": dict(r.categories.most_common(6))}
    return out


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["base_steps=2400", ...]`` -> ``{"base_steps": 2400, ...}``, typed by ``DemoPlan``'s fields
    (:func:`agents.config.load_config`; a tuple field takes a JSON list of lists)."""
    try:
        plan = load_config(DemoPlan, overrides=items)
    except ConfigError as exc:
        raise SystemExit(f"--set: {exc} (each must be FIELD=VALUE with a DemoPlan field)") from exc
    return {key: getattr(plan, key) for key in (item.partition("=")[0].strip() for item in items)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint-every", type=int, default=300,
                        help="score the tool-use training split every N steps (0: only at the end)")
    parser.add_argument("--no-terminal-score", action="store_true",
                        help="skip the Docker-verified terminal score at the end")
    parser.add_argument("--set", dest="changes", action="append", default=[], metavar="FIELD=VALUE",
                        help="a DemoPlan base size other than the plan's (repeatable; needs --out)")
    parser.add_argument("--validation", type=int, default=30,
                        help="tool-use validation conversations scored at the last step (0: none)")
    parser.add_argument("--out", default="", help="write the model here instead of replacing agents/demo_base/")
    args = parser.parse_args()
    changes = parse_set(args.changes)
    if changes and not args.out:
        raise SystemExit("--set trains a base the make-demo plan does not use: give --out DIR")
    plan = plan_with(FULL, **changes)
    console = Console()
    scores: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        splits = split_data(Path(tmp) / "split", plan)
        exclude = {_conversation_key(t) for d in DOMAINS for t in splits[d]["train"] + splits[d]["heldout"]}
        validation = validation_records(args.validation, exclude) if args.validation else []

        def on_checkpoint(step: int, model: Any, tokenizer: Any) -> None:
            last = step == plan.base_steps
            domains = DOMAINS if last and not args.no_terminal_score else ("tool_use",)
            score = {"step": step, **training_split_accuracy(model, tokenizer, splits, domains)}
            if last and validation:
                r = greedy_turns(model, tokenizer, validation, "tool_use", plan, "base")
                score["tool_use_validation"] = {"turns": r.turns, "accuracy": r.accuracy,
                                                "categories": dict(r.categories.most_common(6))}
            scores.append(score)
            console.print(f"step {step}: " + ", ".join(f"{d} {score[d]['accuracy']:.1%} of {score[d]['turns']} turns"
                                                       for d in (*domains, "tool_use_validation") if d in score))

        path, stats = build_base(plan, Path(tmp), Narrator(console), seed=0, rebuild=True,
                                 on_checkpoint=on_checkpoint, checkpoint_every=args.checkpoint_every)
        stats["changes"] = changes
        stats["train_split_accuracy"] = scores
        (path / "base_stats.json").write_text(json.dumps(stats, indent=2))
        target = Path(args.out) if args.out else SHIPPED_BASE
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(path, target)
    print(f"wrote {target}: {json.dumps(stats)}")


if __name__ == "__main__":
    main()

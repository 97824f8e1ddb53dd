"""Choose the demo's PivotRL settings on validation data, never on held-out data.

    .venv/bin/python scripts/tune_pivotrl.py --try "lr=2e-4" --try "lr=5e-5 invalid_advantage=-1" ...
                                              [--train 20] [--seeds 1] [--validation 30] [--out runs/tune-pivotrl]

Each ``--try`` is one configuration: ``lr`` (the plan's ``pivot_lr``) and any other
:class:`agents.pivotrl.TrainConfig` field (``invalid_advantage``, ``kl_coef``, ``lambda_diff``,
``advantage``, ...). Every configuration (and each seed) trains PivotRL
from the built-in base on the demo's tool-use *training* split with the ``make demo`` plan (``--train``
changes how many trajectories it holds; they follow the held-out ones); profiling is done once per
training split and shared. Each is scored greedily per turn on **validation** records: ``--validation``
conversations from the tool-use expert generator with seed :data:`VALIDATION_SEED`, disjoint from the
bundled data (seed 0), the base model's mix (seed 1) and the generated held-out records (seed 2); any
whose conversation equals a training or held-out one is dropped. Scores at step 10 and at the last step,
with the base model's score, go to ``results.json`` and a table.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from agents.demo import (
    FULL,
    Narrator,
    _conversation_key,
    greedy_turns,
    plan_with,
    ready_base,
    run_pivotrl,
    split_data,
    validation_records,
)
from agents.policies.hf import HFPolicy

DOMAIN = "tool_use"


def score(policy: Any, records: list[Any]) -> dict[str, Any]:
    r = greedy_turns(policy.model, policy.tokenizer, records, DOMAIN, FULL, "validation")
    return {"turns": r.turns, "accuracy": r.accuracy, "categories": dict(r.categories.most_common(5))}


def _parse(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep:
        raise SystemExit(f"--try: {item!r} is not key=value")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value  # a plain string such as advantage=loo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--try", dest="tries", action="append", default=[],
                        help='one configuration, e.g. "lr=5e-5 invalid_advantage=-1" (repeatable; default: the plan\'s)')
    parser.add_argument("--train", type=int, default=FULL.per_domain("train_limit", DOMAIN),
                        help="tool-use training trajectories (results of another size go to OUT/train-N)")
    parser.add_argument("--seeds", type=int, default=1, help="PivotRL seeds per configuration (0, 1, ...)")
    parser.add_argument("--validation", type=int, default=30, help="validation conversations (seed 3)")
    parser.add_argument("--out", default="runs/tune-pivotrl")
    args = parser.parse_args()
    console = Console()
    narrator = Narrator(console)
    base = ready_base(FULL, Path(args.out) / "cache")
    if base is None:
        raise SystemExit("the built-in base model does not match the make-demo plan; run scripts/build_demo_base.py")
    plan = plan_with(FULL, curve_every=10, train_limit=tuple(
        (d, args.train if d == DOMAIN else n) for d, n in FULL.train_limit))
    out = Path(args.out) / ("" if args.train == FULL.per_domain("train_limit", DOMAIN) else f"train-{args.train}")
    out.mkdir(parents=True, exist_ok=True)
    splits = split_data(out / "split", plan, cache=out / "cache")
    exclude = {_conversation_key(t) for t in splits[DOMAIN]["train"] + splits[DOMAIN]["heldout"]}
    records = validation_records(args.validation, exclude)
    console.print(f"{len(records)} validation conversations, {sum(len(t.scored_turns) for t in records)} turns")

    results_path = out / "results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.exists() else {}
    if "base" not in results:
        results["base"] = score(HFPolicy.from_pretrained(str(base), temperature=0.0), records)
        results_path.write_text(json.dumps(results, indent=2))
    console.print(f"base: {results['base']['accuracy']:.1%} of {results['base']['turns']} validation turns")

    # Profiling depends on the base model and the data only: every configuration reads the first run's back.
    profile_from = next((d / "profile" for d in sorted(out.iterdir()) if (d / "profile").is_dir()), None)
    for text, seed in itertools.product(args.tries or [f"lr={FULL.pivot_lr:g}"], range(args.seeds)):
        overrides = dict(_parse(item) for item in text.split())
        lr = float(overrides.pop("lr", FULL.pivot_lr))
        name = " ".join([f"lr={lr:g}", *(f"{k}={v}" for k, v in sorted(overrides.items())), f"seed={seed}"])
        if name in results:
            continue
        points: dict[int, Any] = {}

        def on_eval(step: int, policy: Any, compute: dict[str, float], points: dict[int, Any] = points,
                    name: str = name) -> bool:
            if step > 0:
                points[step] = score(policy, records)
                console.print(f"{name} step {step}: {points[step]['accuracy']:.1%}")
            return False

        run_dir = out / name.replace(" ", "_")
        summary = run_pivotrl("pivotrl", DOMAIN, base, splits[DOMAIN]["paths"]["train"], run_dir,
                              plan_with(plan, pivot_lr=lr), narrator, seed=seed,
                              on_eval=on_eval, profile_from=profile_from,
                              **overrides)
        profile_from = profile_from or run_dir / "profile"
        rewards = summary["curve"]
        results[name] = {"lr": lr, "overrides": overrides, "seed": seed, "pivots": summary["pivots"],
                         "scores": {str(k): v for k, v in points.items()},
                         "sampled_reward_first_half": sum(rewards[: len(rewards) // 2]) / max(1, len(rewards) // 2),
                         "sampled_reward_second_half": sum(rewards[len(rewards) // 2 :]) / max(1, len(rewards) - len(rewards) // 2)}
        results_path.write_text(json.dumps(results, indent=2))

    table = Table(title=f"PivotRL on {DOMAIN}: greedy per-turn accuracy on {results['base']['turns']} validation turns "
                        f"(base {results['base']['accuracy']:.1%})")
    for col in ("configuration", "pivots", "step 10", "last step", "sampled reward (1st / 2nd half)"):
        table.add_column(col)
    for name, r in results.items():
        if name == "base":
            continue
        steps = sorted(r["scores"], key=int)
        table.add_row(name, str(r["pivots"]),
                      *(f"{r['scores'][s]['accuracy']:.1%}" if s in r["scores"] else "-" for s in ("10", steps[-1] if steps else "")),
                      f"{r['sampled_reward_first_half']:.2f} / {r['sampled_reward_second_half']:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()

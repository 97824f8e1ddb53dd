"""``pivotrl demo``: the whole current pipeline on the bundled data, on CPU.

For every bundled domain: load the trajectories, restore every turn (prefix + world state), and score
the demonstration (replay policy) and a random policy with the domain's verifier. Prints a per-domain
table and writes ``report.md`` and ``report.json`` to the output directory.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from agents.evaluate import evaluate_turns
from agents.policies import RandomAgent, ReplayAgent
from pivot_envs.core import TrajectoryEnv
from pivot_envs.registration import list_domains
from pivot_envs.trajectory import extract_candidates


def run_demo(out_dir: str | Path = "runs/demo", *, quick: bool = False, seed: int = 0,
             console: Console | None = None) -> dict[str, Any]:
    """Run the demo and return the report as a dict (also written to ``out_dir``)."""
    console = console or Console()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    limit = 20 if quick else None
    rows = []
    console.print("[bold]pivotrl demo[/bold]: every bundled domain, every turn restored, the demonstration "
                  "and a random policy scored by the domain's verifier.")
    for domain in list_domains():
        if domain.data_path() is None:
            continue
        records = domain.load()[:limit]
        _, drops = extract_candidates(records)
        env = TrajectoryEnv(records, domain=domain)
        turns = sum(t.num_turns for t in records)
        console.print(f"\n[bold]{domain.env_id}[/bold]: {len(records)} trajectories, {turns} turns "
                      f"({drops['kept']} pivot candidates after cleaning).")
        results = {}
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=console, transient=True) as progress:
            for policy in (ReplayAgent(records), RandomAgent(seed=seed)):
                task = progress.add_task(f"restoring each turn, {policy.name} policy acts", total=turns)
                results[policy.name] = evaluate_turns(env, policy, on_turn=lambda t=task: progress.advance(t))
        env.close()
        rows.append({
            "domain": domain.name, "env_id": domain.env_id, "trajectories": len(records), "turns": turns,
            "candidates": drops["kept"], "dropped": {k: v for k, v in drops.items() if k != "kept"},
            "replay_accuracy": results["replay"].accuracy, "random_accuracy": results["random"].accuracy,
            "random_categories": dict(results["random"].categories.most_common()),
            "ms_per_turn": 1000 * results["replay"].seconds / max(turns, 1),
            "cache_hits": env.cache.hits if env.cache else 0,
        })
    report = {"quick": quick, "seed": seed, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "domains": rows}
    _write(out, report)
    console.print(_table(rows))
    console.print(f"\nReport written to {out / 'report.md'} and {out / 'report.json'}.")
    return report


def _table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Per-turn functional accuracy (pivot mode)")
    for col in ("env", "trajectories", "turns", "candidates", "replay", "random", "ms/turn"):
        table.add_column(col, justify="right" if col != "env" else "left")
    for r in rows:
        table.add_row(r["env_id"], str(r["trajectories"]), str(r["turns"]), str(r["candidates"]),
                      f"{r['replay_accuracy']:.1%}", f"{r['random_accuracy']:.1%}", f"{r['ms_per_turn']:.2f}")
    return table


def _write(out: Path, report: dict[str, Any]) -> None:
    lines = ["# pivotrl demo", "", "| env | trajectories | turns | candidates | replay | random | ms/turn |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["domains"]:
        lines.append(f"| {r['env_id']} | {r['trajectories']} | {r['turns']} | {r['candidates']} | "
                     f"{r['replay_accuracy']:.1%} | {r['random_accuracy']:.1%} | {r['ms_per_turn']:.2f} |")
    lines += ["", "Random policy verdict categories:", ""]
    for r in report["domains"]:
        cats = ", ".join(f"{k} {v}" for k, v in r["random_categories"].items())
        lines.append(f"- {r['env_id']}: {cats}")
    for name, text in (("report.md", "\n".join(lines) + "\n"), ("report.json", json.dumps(report, indent=2))):
        tmp = out / (name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out / name)

"""Performance figures (``pivotrl bench``): measured side by side in one run, reported as ratios.

* reset to turn k: snapshot-cached restore vs replay from turn 0, for k in {1, 4, 16, 64}, with the
  in-process sandbox (a tool-use conversation) and the local shell sandbox (one process per action);
* fork latency of both sandboxes;
* with a Docker daemon (:mod:`agents.bench_docker`): execution verdicts per second on the bundled terminal
  states, Docker restore to turn k cached vs replayed, and Docker fork, each in world mode (archives on warm
  workers) and image mode (commits and container starts) side by side;
* with ``profile=True``: profiling wall-clock against pure generation and pure verification of the same
  samples (:mod:`benchmarks.profile_overlap`, the demo's base model on the terminal domain).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from pivot_envs.core import TrajectoryEnv
from pivot_envs.trajectory import record_from_dict


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench_reset(ks: Sequence[int] = (1, 4, 16, 64), repeats: int = 20, seed: int = 0) -> dict[str, Any]:
    """Median reset latency at each k, cached vs replayed from turn 0, on one long tool-use conversation."""
    from pivot_envs.domains.tool_use.expert import generate_long

    traj = record_from_dict(generate_long(24, seed=seed))
    if traj.num_turns <= max(ks):
        raise RuntimeError(f"the benchmark conversation has {traj.num_turns} turns; need more than {max(ks)}")
    cached = TrajectoryEnv([traj], domain="tool_use")
    replay = TrajectoryEnv([traj], domain="tool_use", cache_size=0)
    rows = []
    for k in ks:
        opts = {"trajectory": traj.id, "turn": k}
        cached.reset(options=opts)  # warm: the first reset replays and fills the cache
        c = _median_ms(lambda o=opts: cached.reset(options=o), repeats)
        r = _median_ms(lambda o=opts: replay.reset(options=o), repeats)
        rows.append({"k": k, "cached_ms": round(c, 4), "replay_ms": round(r, 4), "speedup": round(r / c, 2)})
    cached.reset(options={"trajectory": traj.id, "turn": max(ks)})
    fork_ms = _median_ms(lambda: [sb.close() for sb in cached.sandbox.fork(1)], repeats)
    cached.close()
    replay.close()
    return {"benchmark": "reset_latency", "trajectory_turns": traj.num_turns, "repeats": repeats,
            "rows": rows, "inprocess_fork_ms": round(fork_ms, 4)}


def shell_record(turns: int) -> dict[str, Any]:
    """A generic record of ``turns`` bash steps in a local sandbox, each appending to a file."""
    tools = [{"type": "function", "function": {"name": "bash", "parameters": {
        "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}}]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "build the log"}]
    for i in range(turns):
        args = json.dumps({"command": f"echo step-{i} >> log.txt"})
        messages += [{"role": "assistant", "tool_calls": [{"id": f"c{i}", "type": "function",
                                                           "function": {"name": "bash", "arguments": args}}]},
                     {"role": "tool", "tool_call_id": f"c{i}", "content": ""}]
    messages.append({"role": "assistant", "content": "done"})
    return {"id": f"shell-{turns}", "tools": tools, "messages": messages,
            "env": {"sandbox": "local", "files": {"README": "bench"}}}


def bench_reset_local(ks: Sequence[int] = (1, 4, 16, 64), repeats: int = 3) -> dict[str, Any]:
    """The same comparison with the local shell sandbox, where each replayed action is a process."""
    traj = record_from_dict(shell_record(max(ks) + 1))
    cached = TrajectoryEnv([traj])
    replay = TrajectoryEnv([traj], cache_size=0)
    rows = []
    try:
        for k in ks:
            opts = {"trajectory": traj.id, "turn": k}
            cached.reset(options=opts)
            c = _median_ms(lambda o=opts: cached.reset(options=o), repeats)
            r = _median_ms(lambda o=opts: replay.reset(options=o), repeats)
            rows.append({"k": k, "cached_ms": round(c, 3), "replay_ms": round(r, 3), "speedup": round(r / c, 2)})
        cached.reset(options={"trajectory": traj.id, "turn": max(ks)})
        fork_ms = _median_ms(lambda: [sb.close() for sb in cached.sandbox.fork(1)], repeats)
    finally:
        cached.close()
        replay.close()
    return {"benchmark": "reset_latency_local", "trajectory_turns": traj.num_turns, "repeats": repeats,
            "rows": rows, "local_fork_ms": round(fork_ms, 3)}


def run_all(repeats: int = 20, docker: bool | None = None, profile: bool = False) -> dict[str, Any]:
    """Every figure of ``pivotrl bench``; the local-sandbox rows repeat less (each replayed turn is a process).

    ``docker=None`` adds the Docker figures when a daemon answers; ``profile`` adds the profiling overlap.
    """
    import os

    result: dict[str, Any] = {"machine": {"cores": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2)}}
    result["reset_inprocess"] = bench_reset(repeats=repeats)
    result["reset_local"] = bench_reset_local(repeats=max(1, repeats // 5))
    if docker is None:
        from pivot_envs.domains.terminal.sandbox import docker_problem

        docker = docker_problem() is None
    if docker:
        from agents.bench_docker import bench_execution, bench_restore

        result["execution_docker"] = bench_execution()
        result["restore_docker"] = bench_restore(repeats=max(3, repeats // 4))
    if profile:
        result["profile_overlap"] = _load_benchmark("profile_overlap").bench_profile_overlap()
    result["machine"]["load_1m_after"] = round(os.getloadavg()[0], 2)
    return result


def _load_benchmark(name: str) -> Any:
    """A module of the repository's ``benchmarks/`` folder (a source checkout; not part of the wheel)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: this benchmark needs a source checkout of pivotrl")
    spec = importlib.util.spec_from_file_location(f"pivotrl_benchmarks_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def markdown(result: dict[str, Any]) -> str:
    """The figures that have targets, as one Markdown table (the README quotes it)."""
    rows = ["| figure | target | measured |", "|---|---|---|"]
    for row in result.get("reset_inprocess", {}).get("rows", []):
        if row["k"] == max(r["k"] for r in result["reset_inprocess"]["rows"]):
            rows.append(f"| in-process restore at k={row['k']}, cached vs replay | >= 10x | {row['speedup']:.1f}x |")
    if "inprocess_fork_ms" in result.get("reset_inprocess", {}):
        rows.append(f"| in-process fork | <= 1 ms | {result['reset_inprocess']['inprocess_fork_ms']:.3f} ms |")
    ex = result.get("execution_docker")
    if ex:
        world, image = ex.get("world", {}), ex.get("image", {})
        rows.append(f"| execution verdicts, Docker, {ex['world']['states']} terminal states x {ex['g']} candidates | "
                    f">= 20/s | {world.get('verdicts_per_s', 0):.1f}/s world mode vs {image.get('verdicts_per_s', 0):.1f}/s "
                    f"image mode ({ex.get('speedup', 0):.1f}x); differing verdicts: {ex.get('differing_verdicts', '-')} |")
    rd = result.get("restore_docker")
    if rd:
        last = max(rd["rows"], key=lambda r: r["k"])
        rows.append(f"| Docker restore at k={last['k']}, cached vs replay | >= 10x | "
                    f"{last.get('speedup_world', 0):.1f}x world mode ({last.get('cached_world_ms', 0):.0f} ms), "
                    f"{last.get('speedup_image', 0):.1f}x image mode |")
        forks = rd.get("fork_ms", {})
        rows.append(f"| Docker fork from a restored state, with its first command | <= 400 ms | "
                    f"{forks.get('world', 0):.0f} ms world mode, {forks.get('image', 0):.0f} ms image mode "
                    f"(one command alone: {forks.get('exec_world', 0):.0f} ms) |")
    po = result.get("profile_overlap")
    if po:
        bound = po.get("cpu_bound_s")
        extra = (f"; the machine's CPU alone needs {bound:.1f} s: {po.get('ratio_to_cpu_bound', 0):.2f}x that bound"
                 if bound else "")
        rows.append(f"| profiling wall-clock / max(generation, verification) | <= 1.1 | {po.get('ratio', 0):.2f} "
                    f"({po.get('pipelined_s', 0):.1f} s pipelined; generation {po.get('generation_s', 0):.1f} s, "
                    f"verification {po.get('verification_s', 0):.1f} s alone{extra}) |")
    m = result.get("machine", {})
    rows.append(f"\n{m.get('cores')} cores, load average {m.get('load_1m')} at the start, {m.get('load_1m_after')} at the end.")
    return "\n".join(rows) + "\n"


def tables(result: dict[str, Any]) -> list[Table]:
    """:func:`run_all`'s figures as rich tables, for people (the JSON stays the record for machines)."""
    resets = Table(title="Reset to turn k: snapshot cache vs replay from turn 0 (median ms)")
    for col in ("sandbox", "k", "cached ms", "replay ms", "speedup"):
        resets.add_column(col, justify="left" if col == "sandbox" else "right")
    forks = Table(title="Fork one sandbox from a restored state (median ms)")
    forks.add_column("sandbox")
    forks.add_column("fork ms", justify="right")
    for key, label, fork_key in (("reset_inprocess", "in-process", "inprocess_fork_ms"),
                                 ("reset_local", "local shell", "local_fork_ms")):
        part = result.get(key)
        if not part:
            continue
        name = f"{label} ({part['trajectory_turns']} turns, {part['repeats']} repeats)"
        for row in part["rows"]:
            resets.add_row(name, str(row["k"]), f"{row['cached_ms']:.3f}", f"{row['replay_ms']:.3f}",
                           f"{row['speedup']:.1f}x")
            name = ""
        forks.add_row(label, f"{part[fork_key]:.3f}")
    return [resets, forks]

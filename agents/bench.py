"""Performance figures (``pivotrl bench``): measured side by side in one run, reported as ratios.

* reset to turn k: snapshot-cached restore vs replay from turn 0, for k in {1, 4, 16, 64}, with the
  in-process sandbox (a tool-use conversation) and the local shell sandbox (one process per action);
* fork latency of both sandboxes.
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


def run_all(repeats: int = 20) -> dict[str, Any]:
    """Every figure of ``pivotrl bench``; the local-sandbox rows repeat less (each replayed turn is a process)."""
    return {"reset_inprocess": bench_reset(repeats=repeats),
            "reset_local": bench_reset_local(repeats=max(1, repeats // 5))}


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

"""Docker figures of ``pivotrl bench``: execution verdicts, restore, fork; world mode vs image mode side by side.

* **execution verdicts** on the bundled terminal states: per state, the demonstration plus ``g`` distinct
  candidate commands that all reach the execution stage, verified with one ``verify_batch`` (world mode:
  forks on warm workers whose commands go through their exec driver, candidates in parallel threads;
  image mode: a commit, a container and a ``docker exec`` per fork, one candidate after another, what the
  toolkit did before). Both modes must give the same verdicts; the figure counts the ones that differ.
  Beside the rate, the CPU the whole machine spent per verdict (dockerd, containerd and containers
  included; other users' work too, so measure it on a quiet machine).
* **restore to turn k**: a shell trajectory of appending commands, snapshot-cached restore vs replay.
* **fork** one sandbox from a restored state, run its first command (where a world fork's reset happens)
  and close it; beside it, one command in an existing sandbox.

Every figure of one run comes from the same machine at the same load; compare ratios across machines.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

from pivot_envs.actions import Action, ToolCall
from pivot_envs.core import TrajectoryEnv
from pivot_envs.registration import get_domain
from pivot_envs.trajectory import record_from_dict

MODES = ("world", "image")


@contextlib.contextmanager
def snapshot_mode(mode: str) -> Iterator[None]:
    """Docker sandboxes created inside take ``mode`` snapshots (``PIVOTRL_DOCKER_SNAPSHOTS``)."""
    old = os.environ.get("PIVOTRL_DOCKER_SNAPSHOTS")
    os.environ["PIVOTRL_DOCKER_SNAPSHOTS"] = mode
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PIVOTRL_DOCKER_SNAPSHOTS", None)
        else:
            os.environ["PIVOTRL_DOCKER_SNAPSHOTS"] = old


def candidate_commands(expected: str, other: str, g: int) -> list[str]:
    """``g`` distinct commands for one state that all reach execution: equivalent forms of the demonstration
    (a no-op before it, a comment after it) and unrelated reads and writes."""
    pool = [f"true; {expected}", f"{expected} # same", "ls", "pwd", "echo bench > bench.txt", other or "ls -la",
            "cat /dev/null", "ls -R | head -5", "true", "date +%Y > year.txt"]
    seen: list[str] = []
    for command in pool:
        if command not in seen and command != expected:
            seen.append(command)
    return seen[:g]


def machine_cpu_s() -> float | None:
    """CPU seconds the whole machine has used since boot (every process: this one, dockerd, containerd, the
    containers), from ``/proc/stat``; None where there is none."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:8]  # user nice system idle iowait irq softirq
    except OSError:
        return None
    ticks = sum(int(v) for i, v in enumerate(fields) if i not in (3, 4))
    return ticks / os.sysconf("SC_CLK_TCK")


def _bash(command: str) -> Action:
    return Action(tool_calls=[ToolCall("bash", {"command": command})])


def terminal_states(limit: int) -> list[tuple[Any, int]]:
    """Up to ``limit`` (record, turn) states of the bundled terminal data whose demonstration is a command,
    spread over the records (at most two per record)."""
    records = get_domain("terminal").load(strict=True)
    states = []
    for rec in records:
        turns = [t for t in range(rec.num_turns) if rec.action(t).tool_calls][:2]
        states += [(rec, t) for t in turns]
    step = max(1, len(states) // limit) if limit else 1
    return states[::step][:limit]


def bench_execution(states: int = 24, g: int = 8, modes: Sequence[str] = MODES) -> dict[str, Any]:
    """Execution verdicts per second on bundled terminal states, per snapshot mode (see the module docstring)."""
    chosen = terminal_states(states)
    records = list({id(rec): rec for rec, _ in chosen}.values())
    results: dict[str, Any] = {}
    verdicts_by_mode: dict[str, list[tuple[float, str]]] = {}
    for mode in modes:
        with snapshot_mode(mode):
            env = TrajectoryEnv(records, domain="terminal")
            verify_s = restore_s = cpu_s = 0.0
            count = 0
            got: list[tuple[float, str]] = []
            try:
                for rec, turn in chosen:
                    t0 = time.perf_counter()
                    env.reset(options={"trajectory": rec.id, "turn": turn})
                    restore_s += time.perf_counter() - t0
                    expected = env.expected_action()
                    command = expected.tool_calls[0].arguments.get("command", "")
                    nxt = next((rec.action(t).tool_calls[0].arguments.get("command", "")
                                for t in range(turn + 1, rec.num_turns) if rec.action(t).tool_calls), "")
                    candidates = [_bash(c) for c in candidate_commands(command, nxt, g)]
                    t0, c0 = time.perf_counter(), machine_cpu_s()
                    verdicts = env.verifier_for(rec).verify_batch(expected, candidates, env.verify_context())
                    verify_s += time.perf_counter() - t0
                    c1 = machine_cpu_s()
                    cpu_s += (c1 - c0) if c0 is not None and c1 is not None else 0.0
                    count += len(verdicts)
                    got += [(v.score, v.category) for v in verdicts]
            finally:
                env.close()
            verdicts_by_mode[mode] = got
            results[mode] = {"states": len(chosen), "verdicts": count, "verify_s": round(verify_s, 2),
                             "restore_s": round(restore_s, 2), "verdicts_per_s": round(count / verify_s, 2),
                             "accepted": sum(score > 0 for score, _ in got),
                             # every process of the machine while verifying (daemons and containers too)
                             "machine_core_ms_per_verdict": round(cpu_s / count * 1000, 1) if count else None}
    if len(verdicts_by_mode) == 2:
        a, b = verdicts_by_mode.values()
        results["differing_verdicts"] = sum(x != y for x, y in zip(a, b, strict=True))
        results["speedup"] = round(results["world"]["verdicts_per_s"] / results["image"]["verdicts_per_s"], 2)
    return {"benchmark": "execution_verdicts_docker", "g": g, **results}


def shell_record(turns: int) -> dict[str, Any]:
    """A Docker shell record of ``turns`` steps, each appending a line to a file and touching one more."""
    tools = [{"type": "function", "function": {"name": "bash", "parameters": {
        "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}}]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "build the log"}]
    for i in range(turns):
        command = f"echo step-{i} >> log.txt && touch file-{i}"
        messages += [{"role": "assistant", "tool_calls": [{"id": f"c{i}", "type": "function", "function": {
            "name": "bash", "arguments": f'{{"command": "{command}"}}'}}]},
                     {"role": "tool", "tool_call_id": f"c{i}", "content": ""}]
    messages.append({"role": "assistant", "content": "done"})
    return {"id": f"docker-shell-{turns}", "tools": tools, "messages": messages,
            "env": {"sandbox": "docker", "files": {"README": "bench"}}}


def bench_restore(ks: Sequence[int] = (1, 8, 32), repeats: int = 5, modes: Sequence[str] = MODES) -> dict[str, Any]:
    """Median ms of a restore to turn k: snapshot-cached (per mode) vs replay from turn 0; fork + first command
    + close, and one command alone."""
    import statistics

    traj = record_from_dict(shell_record(max(ks) + 1))
    rows: dict[int, dict[str, Any]] = {k: {"k": k} for k in ks}
    forks: dict[str, float] = {}

    def median_ms(fn: Any, n: int) -> float:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        return round(statistics.median(times), 1)

    for mode in modes:
        with snapshot_mode(mode):
            env = TrajectoryEnv([traj])
            try:
                for k in ks:
                    opts = {"trajectory": traj.id, "turn": k}
                    env.reset(options=opts)  # fills the cache

                    def restore(o: dict[str, Any] = opts, e: TrajectoryEnv = env) -> None:
                        e.reset(options=o)
                        e.sandbox.exec("true")  # a world restore is applied by the next command
                    rows[k][f"cached_{mode}_ms"] = median_ms(restore, repeats)
                env.reset(options={"trajectory": traj.id, "turn": max(ks)})
                env.sandbox.exec("true")

                def fork_run(e: TrajectoryEnv = env) -> None:
                    (fork,) = e.sandbox.fork(1)
                    fork.exec("true")  # a world fork's reset happens in its first command: count it
                    fork.close()
                forks[mode] = median_ms(fork_run, repeats)
                forks[f"exec_{mode}"] = median_ms(lambda e=env: e.sandbox.exec("true"), repeats)
            finally:
                env.close()
    replay = TrajectoryEnv([traj], cache_size=0)
    try:
        for k in ks:
            rows[k]["replay_ms"] = median_ms(lambda o={"trajectory": traj.id, "turn": k}: replay.reset(options=o),
                                             max(1, repeats // 2))
            for mode in modes:
                rows[k][f"speedup_{mode}"] = round(rows[k]["replay_ms"] / rows[k][f"cached_{mode}_ms"], 1)
    finally:
        replay.close()
    return {"benchmark": "restore_docker", "repeats": repeats, "rows": list(rows.values()),
            "fork_ms": forks}

"""Verifier throughput: rule-level tool-call verdicts per second on one core, and execution-level verdicts.

    python benchmarks/verifiers.py [--seconds 3] [--out FILE]     (or: python -m benchmarks.verifiers)

Prints JSON. Figures:

* ``rule_toolcall``: :class:`~verifiers.toolcall.ToolCallRules` on every tool-call turn of the bundled
  tool-use data, candidates = the expert's equivalent spellings plus near misses (another id, a missing
  key, another tool). Target: >= 5,000 verdicts/s on one core.
* ``rule_tool_use_cascade``: the ``tool_use`` cascade on the same pairs without a sandbox (normalise,
  exact, rules).
* ``execution_tool_use``: the ``tool_use`` cascade with the in-process sandbox (twin forks per verdict;
  candidates of one state share the demonstration's run through ``verify_batch``).
* ``execution_terminal_local``: the ``terminal`` cascade on the local sandbox, 8 distinct candidate
  commands per state through ``verify_batch`` (each candidate: a fork, one ``bash -c``, a digest and,
  for commands that wrote files, a manifest), and single ``verify`` calls for comparison.

The process is pinned to one CPU where the OS allows it, so "per second" means "per core".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

# Run as a script, this file's folder comes first on sys.path and its name would shadow the `verifiers`
# package; drop the folder (python -m benchmarks.verifiers needs no such care).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from pivot_envs import TrajectoryEnv, get_domain  # noqa: E402
from pivot_envs.actions import Action, ToolCall  # noqa: E402
from pivot_envs.domain import GENERIC  # noqa: E402
from pivot_envs.domains.tool_use import expert  # noqa: E402
from verifiers import VerifyContext, make_verifier  # noqa: E402


def _pin_one_core() -> str:
    try:
        cpu = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {cpu})
        return f"pinned to cpu {cpu}"
    except (AttributeError, OSError):
        return "not pinned"


def tool_call_pairs() -> list[tuple[Action, Action, VerifyContext]]:
    """(expected, candidate, context) over every tool-call turn of the bundled tool-use data."""
    pairs = []
    for traj in get_domain("tool_use").load():
        ctx = VerifyContext(tools=traj.tools)
        for turn in range(traj.num_turns):
            gold = traj.action(turn)
            if not gold.tool_calls:
                continue
            call = gold.tool_calls[0]
            variants = expert.equivalent_spellings(call.name, call.arguments or {})
            cands = [Action(tool_calls=(ToolCall.from_parts(call.name, v), *gold.tool_calls[1:])) for v in variants]
            args = dict(call.arguments or {})
            first = next(iter(args), None)
            if first is not None:
                wrong = dict(args, **{first: "X0000000"})
                cands.append(Action(tool_calls=(ToolCall.from_parts(call.name, wrong), *gold.tool_calls[1:])))
                missing = {k: v for k, v in args.items() if k != first}
                cands.append(Action(tool_calls=(ToolCall.from_parts(call.name, missing), *gold.tool_calls[1:])))
            cands.append(Action(tool_calls=(ToolCall.from_parts("get_policy", {"topic": "returns"}),)))
            pairs += [(gold, c, ctx) for c in cands]
    return pairs


def rate(fn, items: list[Any], seconds: float) -> dict[str, Any]:
    """Run ``fn`` over ``items`` (cycling) for about ``seconds``; verdicts per second."""
    n, start = 0, time.perf_counter()
    while True:
        for item in items:
            fn(item)
        n += len(items)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return {"verdicts": n, "seconds": round(elapsed, 3), "per_second": round(n / elapsed, 1)}


def bench_rules(seconds: float) -> dict[str, Any]:
    pairs = tool_call_pairs()
    rules, cascade = make_verifier("toolcall"), make_verifier("tool_use")
    accepted = sum(rules.verify(g, c, ctx).equivalent for g, c, ctx in pairs)
    return {
        "pairs": len(pairs), "accepted_by_rules": accepted,
        "rule_toolcall": rate(lambda p: rules.verify(*p), pairs, seconds),
        "rule_tool_use_cascade": rate(lambda p: cascade.verify(*p), pairs, seconds),
    }


def bench_tool_execution(seconds: float, states: int = 200) -> dict[str, Any]:
    records = get_domain("tool_use").load()[:60]
    env = TrajectoryEnv(records, domain="tool_use")
    verifier = make_verifier("tool_use")
    contexts = []
    for traj in records:
        for turn in range(traj.num_turns):
            gold = traj.action(turn)
            if len(gold.tool_calls) != 1 or len(contexts) >= states:
                continue
            call = gold.tool_calls[0]
            args = dict(call.arguments or {})
            variants = [{**args, k: v.upper() if "@" in v else v.lower()} for k, v in args.items() if isinstance(v, str)]
            variants += [{**args, k: v + "0"} for k, v in args.items() if isinstance(v, str)][:1]  # a near miss
            cands = [Action(tool_calls=(ToolCall.from_parts(call.name, v),)) for v in variants]
            env.reset(options={"trajectory": traj.id, "turn": turn})
            ctx = env.verify_context()
            ctx.sandbox = ctx.sandbox.fork(1)[0]  # keep this state alive after the env moves on
            # keep the candidates that reach the execution stage (not decided by exact match or shape rules)
            cands = [c for c, v in zip(cands, verifier.verify_batch(gold, cands, ctx), strict=True) if v.method == "execution"]
            if cands:
                contexts.append((gold, cands, ctx))
    env.close()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for gold, cands, ctx in contexts:
            n += len(verifier.verify_batch(gold, cands, ctx))
    elapsed = time.perf_counter() - start
    outcomes: dict[str, int] = {}
    for gold, cands, ctx in contexts:
        for v in verifier.verify_batch(gold, cands, ctx):
            outcomes[v.category] = outcomes.get(v.category, 0) + 1
    return {"execution_tool_use": {"states": len(contexts), "verdicts": n, "seconds": round(elapsed, 3),
                                   "per_second": round(n / elapsed, 1), "categories": outcomes}}


TERMINAL_FILES = {f"src/m{i}.py": f"def f{i}(x):\n    return x + {i}\n" for i in range(20)}
TERMINAL_FILES.update({"notes.txt": "".join(f"line {i}\n" for i in range(200)), "logs/app.log": "ERROR a\nINFO b\n" * 50})
TERMINAL_CASES = [
    ("ls -la", ["ls -al", "ls -l -a", "ls", "ls -a", "ls -la src", "ls -la logs", "ls -lA", "ls -la ."]),
    ("grep -c ERROR logs/app.log", ["grep ERROR logs/app.log | wc -l", "grep -c INFO logs/app.log",
                                    "grep -ci error logs/app.log", "grep -c 'ERROR' logs/app.log",
                                    "grep -c \"ERROR\" logs/app.log", "cat logs/app.log | grep -c ERROR",
                                    "grep -c ERR logs/app.log", "grep -c ERROR notes.txt"]),
    ("rm -rf src/m1.py", ["rm src/m1.py", "rm -f src/m1.py", "rm -rf src/m10.py", "rm -rf src", "rm -rf src/m1.pyc",
                          "unlink src/m1.py", "rm -rf ./src/m1.py", "rm -rf src/m1*"]),
    ("echo done > status.txt", ["printf 'done\\n' > status.txt", "echo done >> status.txt", "echo don > status.txt",
                                "echo 'done' > status.txt", "echo done > status", "echo done | tee status.txt",
                                "echo done > ./status.txt", "touch status.txt"]),
]


def bench_terminal(seconds: float) -> dict[str, Any]:
    from sandboxes.local import LocalSandbox

    tools = [{"type": "function", "function": {"name": "bash", "parameters": {
        "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}}]

    def bash(command: str) -> Action:
        return Action(tool_calls=(ToolCall.from_parts("bash", {"command": command}),))

    verifier = make_verifier("terminal")
    with LocalSandbox(TERMINAL_FILES) as sb:
        ctx = VerifyContext(tools=tools, sandbox=sb, executor=GENERIC.execute)
        n, states, start = 0, 0, time.perf_counter()
        categories: dict[str, int] = {}
        while time.perf_counter() - start < seconds:
            for gold, cands in TERMINAL_CASES:
                for v in verifier.verify_batch(bash(gold), [bash(c) for c in cands], ctx):
                    categories[v.category] = categories.get(v.category, 0) + 1
                n += len(cands)
                states += 1
        batch_elapsed = time.perf_counter() - start
        m, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 2:
            for gold, cands in TERMINAL_CASES:
                verifier.verify(bash(gold), bash(cands[0]), ctx)
                m += 1
        single_elapsed = time.perf_counter() - start
    return {
        "execution_terminal_local": {"verdicts": n, "states": states, "candidates_per_state": 8,
                                     "seconds": round(batch_elapsed, 3), "per_second": round(n / batch_elapsed, 1)},
        "execution_terminal_local_single": {"verdicts": m, "seconds": round(single_elapsed, 3),
                                            "per_second": round(m / single_elapsed, 1)},
        "terminal_categories": categories,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="Measuring time per figure.")
    parser.add_argument("--out", help="Also write the JSON here.")
    args = parser.parse_args()
    result: dict[str, Any] = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                          "affinity": _pin_one_core()}}
    result.update(bench_rules(args.seconds))
    result.update(bench_tool_execution(args.seconds))
    result.update(bench_terminal(args.seconds))
    result["targets"] = {"rule_toolcall_per_second_min": 5000,
                         "rule_toolcall_met": result["rule_toolcall"]["per_second"] >= 5000}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()

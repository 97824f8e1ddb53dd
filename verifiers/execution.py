"""Execution in twin forks: run the expected and the candidate action from the same turn-k world.

The turn-k sandbox (``VerifyContext.sandbox``) is never touched: each action runs in its own fork, through
the domain's executor (``VerifyContext.executor``, i.e. :meth:`pivot_envs.domain.Domain.execute`), and
what the two forks did is compared. The expected action's effect is computed once per state and kept in
the cascade's per-state memo, so G samples cost one expected run plus G candidate runs.

Tool calls (:class:`ToolExecutionStage`), the rule applied when a sandbox exists:

* **writes** (either fork's state digest changed): equivalent iff the two resulting state digests are
  equal and every paired call succeeded, or failed the same way (same normalised error text);
  otherwise ``STATE_DIFFERS`` / ``EXIT_DIFFERS`` / ``OUTPUT_DIFFERS``;
* **reads** (neither fork changed): equivalent iff the calls have the same exit statuses and the same
  normalised outputs (JSON compared canonically, whitespace collapsed), as multisets over parallel
  calls; otherwise ``EXIT_DIFFERS`` / ``OUTPUT_DIFFERS``;
* a candidate that ran past its deadline is ``TIMEOUT``.

Parallel calls run in the expected order, each candidate call in the slot the rules paired it with
(parallel calls carry no order of their own).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pivot_envs.actions import ToolCall
from sandboxes.core import ExecResult, Sandbox, canonical_json, timeout_problem
from verifiers.cascade import Memo, Stage, Step, decide
from verifiers.core import Category, Verdict, VerifyContext
from verifiers.toolcall import canonical_call

Executor = Callable[[Sandbox, ToolCall], tuple[str, ExecResult]]


def default_executor(sandbox: Sandbox, call: ToolCall) -> tuple[str, ExecResult]:
    """Run ``call`` when the context names no executor: a tool of an in-process sandbox, or ``bash``."""
    args = call.arguments or {}
    if call.name == "bash" and isinstance(args.get("command"), str):
        timeout, problem = args.get("timeout"), timeout_problem(args.get("timeout"))
        if problem:
            result = ExecResult(2, stderr=f"Error: invalid action: {problem}; the command was not run")
            return result.stderr, result
        if timeout is not None and sandbox.default_timeout is not None:
            timeout = min(float(timeout), sandbox.default_timeout)  # tool arguments never raise the limit
        result = sandbox.exec(args["command"], timeout=timeout)
        return result.stdout + result.stderr, result
    result = sandbox.call_tool(call.name, args)
    return (result.stdout if result.exit_code == 0 else result.stderr), result


def executor_of(ctx: VerifyContext) -> Executor:
    return ctx.executor or default_executor


@dataclass(frozen=True)
class CallEffect:
    """What a list of calls did in a fork: tool messages, raw results, and the world digest after."""

    outputs: tuple[str, ...]
    results: tuple[ExecResult, ...]
    digest: str


def execute_all(sandbox: Sandbox, calls: Sequence[ToolCall], executor: Executor) -> tuple[list[str], list[ExecResult]]:
    """Run ``calls`` in order in ``sandbox``: their tool messages and raw results."""
    outputs, results = [], []
    for call in calls:
        text, result = executor(sandbox, call)
        outputs.append(text)
        results.append(result)
    return outputs, results


def run_in_fork(sandbox: Sandbox, calls: Sequence[ToolCall], executor: Executor) -> CallEffect:
    """Run ``calls`` in order in a fresh fork of ``sandbox`` (closed afterwards)."""
    fork = sandbox.fork(1)[0]
    try:
        outputs, results = execute_all(fork, calls, executor)
        return CallEffect(tuple(outputs), tuple(results), fork.state_digest())
    finally:
        fork.close()


def base_digest(ctx: VerifyContext, memo: Memo) -> str:
    """The digest of the turn-k world, computed once per state."""
    if "base_digest" not in memo:
        assert ctx.sandbox is not None
        memo["base_digest"] = ctx.sandbox.state_digest()
    return memo["base_digest"]


def normalise_output(text: str) -> str:
    """A tool output in canonical form: JSON re-serialised with sorted keys and whitespace-collapsed
    strings; other text with whitespace collapsed."""
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            return canonical_json(_collapse(json.loads(stripped)))
        except (json.JSONDecodeError, ValueError):
            pass
    return " ".join(stripped.split())


def _collapse(value: Any) -> Any:
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, list):
        return [_collapse(v) for v in value]
    if isinstance(value, dict):
        return {k: _collapse(v) for k, v in value.items()}
    return value


class ToolExecutionStage(Stage):
    """Decide tool calls by running both in twin forks (see the module docstring).

    Runs only when the context has a sandbox and the rules found the calls alike in shape (same tools,
    keys and types: ``memo["candidate"]["pairing"]``); otherwise says nothing.

    Args:
        aliases: Tool-name aliases, resolved before executing (as the rules resolved them).
    """

    name = "execution"

    def __init__(self, aliases: dict[str, str] | None = None):
        self.aliases = aliases

    def check(self, expected, candidate, ctx, memo, prior) -> Step | None:
        pairing = memo["candidate"].get("pairing")
        if ctx.sandbox is None or expected.kind != "tool_call" or prior is None or not pairing:
            return None
        n = len(expected.tool_calls)
        if len(pairing) != n:
            return None
        executor = executor_of(ctx)
        base = base_digest(ctx, memo)
        if "expected_effect" not in memo:
            calls = [canonical_call(c, ctx, self.aliases) for c in expected.tool_calls]
            memo["expected_effect"] = run_in_fork(ctx.sandbox, calls, executor)
        want: CallEffect = memo["expected_effect"]
        calls = [canonical_call(candidate.tool_calls[pairing[i]], ctx, self.aliases) for i in range(n)]
        got = run_in_fork(ctx.sandbox, calls, executor)
        return decide(compare_call_effects(want, got, base, prior.category))


def compare_call_effects(want: CallEffect, got: CallEffect, base: str, rule: str | None = None) -> Verdict:
    """The execution verdict for two call effects that started from the world with digest ``base``."""
    details: dict[str, Any] = {"rule": rule} if rule else {}
    for i, r in enumerate(got.results):
        if r.timed_out and not want.results[i].timed_out:
            return Verdict.reject("execution", Category.TIMEOUT, call=i, **details)
    wrote = want.digest != base or got.digest != base
    details["effect"] = "write" if wrote else "read"
    if wrote and want.digest != got.digest:
        return Verdict.reject("execution", Category.STATE_DIFFERS, expected_changed=want.digest != base,
                              candidate_changed=got.digest != base, **details)
    # Parallel calls carry no order: compare (status, output) as multisets. Outputs of successful writes
    # are not compared (equal states are the criterion); their errors are.
    def seen(effect: CallEffect) -> list[tuple[bool, str]]:
        return sorted((r.ok, normalise_output(o) if (not wrote or not r.ok) else "")
                      for r, o in zip(effect.results, effect.outputs, strict=True))

    a, b = seen(want), seen(got)
    if a == b:
        return Verdict.accept("execution", **details)
    if [ok for ok, _ in a] != [ok for ok, _ in b]:
        return Verdict.reject("execution", Category.EXIT_DIFFERS, expected_ok=[ok for ok, _ in a],
                              got_ok=[ok for ok, _ in b], output=_clip(" | ".join(got.outputs)), **details)
    i = next(k for k in range(len(a)) if a[k] != b[k])
    return Verdict.reject("execution", Category.OUTPUT_DIFFERS, expected=_clip(a[i][1]), got=_clip(b[i][1]), **details)


def _clip(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[:n] + "..."

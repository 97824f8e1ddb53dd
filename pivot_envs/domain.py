"""Domains: what a family of trajectories needs beyond its records.

A :class:`Domain` says how to build the world of a record (its sandbox), how a tool call runs in it and
becomes a tool message, which verifier judges its turns, and how a whole episode is scored. The
``generic`` domain covers any record: no sandbox, or a local shell sandbox with a ``bash`` tool.
Third-party packages add domains through the ``pivotrl.domains`` entry-point group (see
:mod:`pivot_envs.registration`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pivot_envs.actions import ToolCall
from pivot_envs.trajectory import Trajectory, load_trajectories
from sandboxes.core import ExecResult, Sandbox, timeout_problem
from sandboxes.inprocess import InProcessSandbox, ToolFunction

logger = logging.getLogger(__name__)


def format_exec_output(call: ToolCall, result: ExecResult) -> str:
    """The text a tool message carries for an execution result.

    Tool sandboxes: the JSON result, or the error message. Shell commands: stdout then stderr, with the
    exit status and timeouts stated, the way terminal agents see them.
    """
    if call.name != "bash":
        return result.stdout if result.exit_code == 0 else (result.stderr or f"Error: exit code {result.exit_code}")
    text = result.stdout
    if result.stderr:
        text += ("\n" if text and not text.endswith("\n") else "") + result.stderr
    if result.timed_out:
        text += "\n[command timed out]"
    elif result.exit_code != 0:
        text += f"\n[exit code {result.exit_code}]"
    return text


@dataclass
class Domain:
    """Everything a :class:`~pivot_envs.core.TrajectoryEnv` needs to know about one family of tasks.

    Attributes:
        name: Short name, the ``domain`` field of records (``"tool_use"``).
        env_id: The Gymnasium id (``"pivot/ToolUse-v0"``).
        description: One line for ``pivotrl envs list``.
        data: Bundled trajectories: ``"package:relative/path.jsonl"`` or a file path; None for none.
        tools: Tool functions for in-process sandboxes, by name.
        verifier: Name of the verifier judging pivot steps (see :func:`verifiers.make_verifier`).
        action_format: How raw model text is parsed into tool calls.
        success: ``success(trajectory, sandbox, messages) -> bool | None`` scores a whole episode;
            None means "use the record's ``task.success`` rule" (:meth:`episode_success`).
        sandbox_factory: Optional override of :meth:`make_sandbox`.
    """

    name: str
    env_id: str
    description: str = ""
    data: str | None = None
    tools: Mapping[str, ToolFunction] = field(default_factory=dict)
    verifier: str = "toolcall"
    action_format: str = "hermes"
    success: Callable[[Trajectory, Sandbox | None, list[dict[str, Any]]], bool | None] | None = None
    sandbox_factory: Callable[[Trajectory], Sandbox | None] | None = None

    def data_path(self) -> Path | None:
        """Filesystem path of the bundled trajectories (None when the domain ships none)."""
        if self.data is None:
            return None
        if ":" in self.data and not Path(self.data).exists():
            package, _, rel = self.data.partition(":")
            return Path(str(resources.files(package).joinpath(rel)))
        return Path(self.data)

    def load(self, *, strict: bool = False) -> list[Trajectory]:
        """The bundled trajectories (raises when the domain ships none)."""
        path = self.data_path()
        if path is None:
            raise ValueError(f"domain {self.name!r} ships no trajectories; pass trajectories=PATH")
        result = load_trajectories(path, strict=strict)
        for err in result.errors:
            logger.warning("skipped bad record: %s", err)
        return result.trajectories

    def make_sandbox(self, trajectory: Trajectory) -> Sandbox | None:
        """Build the world of ``trajectory`` at turn 0 from its ``env`` spec (None for text-only records)."""
        if self.sandbox_factory is not None:
            return self.sandbox_factory(trajectory)
        env = trajectory.env or {}
        kind = env.get("sandbox", "none")
        if kind == "none":
            return None
        if kind == "inprocess":
            return InProcessSandbox(env.get("state") or {}, tools=self.tools)
        # Shell worlds: a hardened Docker container when a daemon answers (records asking for "docker"),
        # else the local sandbox with a one-time warning; the terminal domain's factory does exactly this.
        from pivot_envs.domains.terminal.sandbox import make_sandbox as shell_sandbox

        return shell_sandbox(trajectory)

    def execute(self, sandbox: Sandbox, call: ToolCall) -> tuple[str, ExecResult]:
        """Run one tool call in ``sandbox``; returns the tool message text and the raw result.

        Never raises for bad model output: a malformed call gives an error result.
        """
        if call.error or call.arguments is None:
            result = ExecResult(1, stderr=f"Error: {call.error or 'arguments did not parse'}")
        elif isinstance(sandbox, InProcessSandbox):
            result = sandbox.call_tool(call.name, call.arguments)
        elif call.name == "bash":
            command = call.arguments.get("command")
            timeout = call.arguments.get("timeout")
            problem = timeout_problem(timeout)
            limit = sandbox.default_timeout
            if not isinstance(command, str):
                result = ExecResult(1, stderr="Error: bash needs a string argument 'command'")
            elif problem:
                # An invalid action, not a crash: the command does not run and the model is told why.
                result = ExecResult(2, stderr=f"Error: invalid action: {problem}; the command was not run. Pass "
                                              f"a positive number of seconds (at most {limit}) or no timeout.")
            else:
                # The model may ask for less time than the domain allows, never more.
                if timeout is not None and limit is not None:
                    timeout = min(float(timeout), limit)
                result = sandbox.exec(command, timeout=timeout)
        else:
            result = ExecResult(1, stderr=f"Error: unknown tool {call.name!r} (this sandbox only runs 'bash')")
        return format_exec_output(call, result), result

    def episode_success(self, trajectory: Trajectory, sandbox: Sandbox | None, messages: list[dict[str, Any]]) -> bool | None:
        """Whole-episode outcome: the domain's rule, else the record's ``task.success`` rule.

        Supported record rules: ``{"kind": "final_state", "expected_state_sha256": ...}`` (the world's
        digest at the end equals the expected one) and ``{"kind": "final_message_contains",
        "text": ...}``. Returns None when the record defines no outcome.
        """
        if self.success is not None:
            return self.success(trajectory, sandbox, messages)
        return self.episode_success_by_record(trajectory, sandbox, messages)

    def episode_success_by_record(self, trajectory: Trajectory, sandbox: Sandbox | None,
                                  messages: list[dict[str, Any]]) -> bool | None:
        """The record's own ``task.success`` rule (what :meth:`episode_success` falls back to)."""
        rule = (trajectory.task or {}).get("success")
        if not rule:
            return None
        kind = rule.get("kind")
        if kind == "final_state":
            return sandbox is not None and sandbox.state_digest() == rule.get("expected_state_sha256")
        if kind == "final_message_contains":
            last = next((m for m in reversed(messages) if m.get("role") == "assistant"), {})
            return str(rule.get("text", "")).lower() in str(last.get("content") or "").lower()
        raise ValueError(f"record {trajectory.id}: unknown task.success.kind {kind!r}")


GENERIC = Domain(
    name="generic",
    env_id="pivot/Generic-v0",
    description="Any trajectory file: text-only records, or a local shell sandbox with a 'bash' tool.",
)

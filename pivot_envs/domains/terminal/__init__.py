"""Terminal work: an agent with one ``bash`` tool in a Linux workspace (Terminal-Bench-like).

Each record is one task in its own small workspace (files plus setup commands, e.g. a git repository
with history): move and rename files, rename an identifier across a code base, fix a wrong value in an
INI/JSON/YAML/.env config, count errors in logs, write a small executable script, commit and branch
with git, search with grep/find, transform CSV data. The world is a Docker container
(``pivotrl/sandbox:latest``, workdir ``/workspace``) or, without a Docker daemon, the local sandbox
(:mod:`.sandbox`). An episode succeeds when the record's ``task.success`` script, a bash test run in a
fork of the final workspace with :meth:`~sandboxes.core.Sandbox.run_check` (clean environment, isolated
``python3 -I -S``, fixed ``PATH``), exits 0; success scripts should use the standard library only.

The programmatic expert that generated the bundled ``data/terminal.jsonl`` (60 records, seed 0) lives in
:mod:`.expert`::

    python -m pivot_envs.domains.terminal.expert --out pivot_envs/domains/terminal/data/terminal.jsonl
"""

from __future__ import annotations

from typing import Any

from pivot_envs.domain import GENERIC, Domain
from pivot_envs.domains.terminal.sandbox import make_sandbox
from pivot_envs.trajectory import Trajectory
from sandboxes.core import ExecResult, Sandbox

#: Seconds a success script may run when the record does not say.
SUCCESS_TIMEOUT = 30.0


def run_success_script(trajectory: Trajectory, sandbox: Sandbox) -> ExecResult:
    """Run the record's ``task.success.script`` in a fork of ``sandbox`` (left unchanged) and return what it did."""
    rule = (trajectory.task or {}).get("success") or {}
    script = rule.get("script")
    if rule.get("kind") != "script" or not isinstance(script, str):
        raise ValueError(f"record {trajectory.id}: task.success must be {{'kind': 'script', 'script': str}}, "
                         f"got {rule!r}")
    # A fork, so nothing the agent started or left running can touch the check; run_check so nothing it
    # wrote (a hashlib.py in the workspace, a .pth in its home, a python3 on a PATH it controls) does.
    fork = sandbox.fork(1)[0]
    try:
        return fork.run_check(script, timeout=float(rule.get("timeout", SUCCESS_TIMEOUT)))
    finally:
        fork.close()


def success(trajectory: Trajectory, sandbox: Sandbox | None, messages: list[dict[str, Any]]) -> bool | None:
    """Episode outcome: the success script exits 0 in a fork of the final workspace.

    Records with another ``task.success`` kind fall back to the generic rules; no rule gives None.
    """
    rule = (trajectory.task or {}).get("success")
    if not rule:
        return None
    if rule.get("kind") != "script":
        return GENERIC.episode_success(trajectory, sandbox, messages)
    if sandbox is None:
        return False
    return run_success_script(trajectory, sandbox).ok


DOMAIN = Domain(
    name="terminal",
    env_id="pivot/Terminal-v0",
    description="Terminal tasks with one bash tool: files, sed/awk edits, configs, logs, scripts, git, search, CSV.",
    data="pivot_envs.domains.terminal:data/terminal.jsonl",
    verifier="terminal",
    success=success,
    sandbox_factory=make_sandbox,
)

__all__ = ["DOMAIN", "make_sandbox", "run_success_script", "success"]

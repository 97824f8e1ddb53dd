"""Software engineering (SWE-bench-like): fix a bug in a small Python repository with ``bash`` and a file editor.

Each record is one task: a repository with a bug and a ``unittest`` suite, written into the workspace by
the record's ``env`` (``files``, then ``setup`` commands that ``git init`` and commit the base state, so
``git diff`` and ``git status`` work), an issue text as the user turn, and FAIL_TO_PASS / PASS_TO_PASS
test ids in SWE-bench's sense under ``task.tests``. The world is a Docker container
(``pivotrl/sandbox:latest``, workdir ``/workspace``) or, without a daemon, the local sandbox (the terminal
domain's :func:`~pivot_envs.domains.terminal.sandbox.make_sandbox`, so the same ``BACKEND`` switch applies).

Tools: ``bash`` ``{"command"}`` and ``str_replace_editor`` (view / create / str_replace / insert /
undo_edit with ``path``, ``file_text``, ``old_str``, ``new_str``, ``insert_line``, ``view_range``), the
editor of SWE-agent and OpenHands, run inside the sandbox by :mod:`.editor`.

Turns are judged by the ``swe`` cascade (:mod:`verifiers.swe`): edits by the files they leave (bytes,
whitespace, AST, then the record's tests), explorations by what they show. An episode succeeds when
every FAIL_TO_PASS test passes and every PASS_TO_PASS test still passes, run in a fork of the final
workspace with :meth:`~sandboxes.core.Sandbox.run_check` after the record's original test files are
restored (:func:`verifiers.swe.grade_workspace`).

Bundled data (:mod:`.repos` for the repositories and bugs, :mod:`.expert` for the sessions; 30 records,
seed 0)::

    python -m pivot_envs.domains.swe.expert --out pivot_envs/domains/swe/data/swe.jsonl

Importers for SWE-bench instances, SWE-agent ``.traj`` files and OpenHands event lists: :mod:`.importers`.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from typing import Any

from pivot_envs.actions import ToolCall
from pivot_envs.domain import GENERIC, Domain
from pivot_envs.domains.swe.editor import EDITOR_NAMES, EDITOR_TOOL, editor_output, run_editor
from pivot_envs.domains.terminal import sandbox as shell
from pivot_envs.trajectory import Trajectory
from sandboxes.core import ExecResult, Sandbox
from verifiers.core import register_verifier

register_verifier("swe", "verifiers.swe:SWECascade")

BASH_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "bash",
        "description": "Run a bash command in the repository and return its output (stdout, then stderr).",
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string", "description": "The command line to run."}},
            "required": ["command"],
        },
    },
}
TOOLS = [BASH_TOOL, EDITOR_TOOL]

#: Largest checkout (bytes of tracked files) :func:`make_sandbox` copies from an ``env.repo_dir``.
MAX_REPO_BYTES = 64 * 1024**2


class SWEDomain(Domain):
    """The SWE domain: the generic executor for ``bash``, plus the file editor."""

    def execute(self, sandbox: Sandbox, call: ToolCall) -> tuple[str, ExecResult]:
        if call.name in EDITOR_NAMES and not call.error and call.arguments is not None:
            result = run_editor(sandbox, call.arguments)
            return editor_output(result), result
        if call.name == "bash" or call.error or call.arguments is None:
            return super().execute(sandbox, call)
        result = ExecResult(1, stderr=f"Error: unknown tool {call.name!r}; this world offers 'bash' and "
                                      "'str_replace_editor'")
        return result.stderr, result


def repo_files(repo_dir: str, base_commit: str | None = None) -> dict[str, bytes]:
    """The tracked files of a clean git checkout at ``base_commit`` (what an ``env.repo_dir`` record starts from).

    Raises ``ValueError`` saying what to do when the directory is not such a checkout.
    """
    def git(*args: str) -> bytes:
        try:
            return subprocess.run(["git", "-C", repo_dir, *args], check=True, capture_output=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise ValueError(f"env.repo_dir {repo_dir!r} is not a readable git checkout ({exc}); clone the "
                             "repository there and check out the instance's base_commit") from exc

    head = git("rev-parse", "HEAD").decode().strip()
    if base_commit and head != base_commit:
        raise ValueError(f"env.repo_dir {repo_dir!r} is at {head[:12]}, the record needs base_commit "
                         f"{base_commit[:12]}; run `git -C {repo_dir} checkout {base_commit}`")
    files, total = {}, 0
    for rel in git("ls-files", "-z").decode("utf-8", "surrogateescape").split("\0"):
        path = os.path.join(repo_dir, rel)
        if not rel or os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            files[rel] = f.read()
        total += len(files[rel])
        if total > MAX_REPO_BYTES:
            raise ValueError(f"env.repo_dir {repo_dir!r} holds more than {MAX_REPO_BYTES} bytes of tracked files; "
                             "build an image with the checkout in it and use env.image instead")
    return files


def make_sandbox(trajectory: Trajectory) -> Sandbox | None:
    """The record's world: the terminal domain's factory, with an ``env.repo_dir`` checkout copied in first."""
    env = trajectory.env or {}
    if env.get("repo_dir"):
        files = repo_files(str(env["repo_dir"]), env.get("base_commit"))
        setup = ["git init -q -b main && git config user.name pivotrl && git config user.email pivotrl@example.com "
                 "&& git add -A && GIT_AUTHOR_DATE=2024-06-01T12:00:00+00:00 GIT_COMMITTER_DATE=2024-06-01T12:00:00+00:00 "
                 "git commit -qm base && git tag pivotrl-base", *(env.get("setup") or [])]
        text = {k: v.decode("utf-8", "surrogateescape") for k, v in files.items()}
        trajectory = dataclasses.replace(trajectory, env={**env, "files": text, "setup": setup})
    return shell.make_sandbox(trajectory)


def success(trajectory: Trajectory, sandbox: Sandbox | None, messages: list[dict[str, Any]]) -> bool | None:
    """FAIL_TO_PASS pass and PASS_TO_PASS still pass, graded in a fork with the original tests restored."""
    # Imported here: verifiers.swe imports pivot_envs, whose import registers this domain (a cycle at import time).
    from verifiers.swe import grade_workspace, grading_spec  # noqa: PLC0415

    spec = grading_spec(trajectory.task)
    if spec is None:
        return GENERIC.episode_success(trajectory, sandbox, messages)
    if sandbox is None:
        return False
    resolved, _ = grade_workspace(sandbox, spec)
    return resolved


DOMAIN = SWEDomain(
    name="swe",
    env_id="pivot/SWE-v0",
    description="Fix bugs in small Python repos with bash and a file editor; FAIL_TO_PASS/PASS_TO_PASS outcome.",
    data="pivot_envs.domains.swe:data/swe.jsonl",
    verifier="swe",
    success=success,
    sandbox_factory=make_sandbox,
)

__all__ = ["DOMAIN", "TOOLS", "SWEDomain", "make_sandbox", "repo_files", "success"]

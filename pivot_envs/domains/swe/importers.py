"""Importers into SWE records: SWE-bench instances, SWE-agent ``.traj`` files, OpenHands event lists.

Every importer returns canonical records (``domain: "swe"``, the ``bash`` and ``str_replace_editor`` tools of
:data:`pivot_envs.domains.swe.TOOLS`) whose world is a repository the user supplies, since no data set or
image can be downloaded here: ``env.repo_dir`` (a clean git checkout at the instance's ``base_commit``, copied
into the sandbox's workspace by :func:`pivot_envs.domains.swe.make_sandbox`) or ``env.image`` (a Docker
image holding the repository at ``repo_path``, ``/testbed`` in SWE-bench's images, copied into the workspace
by a setup command). Input shapes (from the projects' public documentation and source):

* **SWE-bench** instance rows (JSON Lines, one per line): ``instance_id``, ``repo``, ``base_commit``,
  ``patch`` (the gold fix, a unified diff), ``test_patch``, ``problem_statement``, ``FAIL_TO_PASS`` and
  ``PASS_TO_PASS`` (JSON-encoded lists, as the Hugging Face data sets store them, or lists). A record gets
  the problem statement as its user turn, the gold patch applied with ``git apply`` as its demonstration,
  and ``task.tests`` with ``runner: "command"``: at grading, the test files named in ``test_patch`` are
  checked out from ``base_commit``, ``test_patch`` is applied and ``test_command`` runs (default
  ``python3 -m pytest -rA <test files>``); statuses are read from the log (:func:`verifiers.swe.parse_test_log`)
  and graded with SWE-bench's rule (:func:`verifiers.swe.grade`).
* **SWE-agent** ``.traj`` files (one JSON object): ``trajectory``, a list of steps ``{"thought", "action",
  "observation", ...}``, and ``history``, the chat whose ``system`` and first ``user`` message hold the prompt
  and the issue; ``info.submission`` is the final patch. Actions of the ``edit_anthropic`` tool bundle
  (``str_replace_editor view|create|str_replace|insert|undo_edit PATH --old_str ... --new_str ...``) become
  editor calls, ``submit`` the closing message, anything else a ``bash`` call; the step's observation is the
  tool output and its thought the assistant text.
* **OpenHands** event lists (a JSON list, or an object with ``history`` / ``trajectory``): action events
  ``{"id", "source", "action", "args"}`` and observation events ``{"id", "cause", "observation", "content"}``.
  ``run`` -> ``bash`` (``args.command``), ``read`` -> editor ``view`` (``args.path``, ``args.view_range``),
  ``edit`` -> the editor sub-command in ``args.command`` with its arguments, ``message`` from the user -> a
  user turn and from the agent -> an assistant message, ``think`` -> reasoning of the next turn, ``finish``
  -> the closing message (``args.final_thought`` or ``args.outputs``); the observation whose ``cause`` is an
  action's id is that call's output. Other events (``system``, ``recall``, state changes) are skipped.

Known limits: tool outputs of imported trajectories were produced in the original agent's container, so
replaying them elsewhere diverges where outputs depend on the machine (``info["divergence"]`` lists them);
SWE-agent's older commands (``open``, ``edit 10:12``, ``search_dir``) are kept as ``bash`` calls and fail
there; OpenHands' LLM-based edits (``args.content`` without ``command``) are rejected with a clear error.

Command line::

    python -m pivot_envs.domains.swe.importers --from swebench|swe-agent|openhands IN OUT \\
        [--repo-dir DIR | --image IMAGE] [--base-commit SHA] [--test-command CMD]
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pivot_envs.domains.swe import TOOLS
from pivot_envs.domains.swe.editor import COMMANDS
from pivot_envs.trajectory import record_from_dict, save_trajectories, validate_record

FORMATS = ("swebench", "swe-agent", "openhands")
SYSTEM_PROMPT = ("You are a software engineer fixing an issue in the repository in the current directory. Use the "
                 "bash tool and the str_replace_editor tool, one call per turn, and finish with a short summary.")


class SWEImportError(ValueError):
    """An input that is not in the expected shape; the message says what was received and what was expected."""


def _world(repo_dir: str | None, image: str | None, base_commit: str | None, repo_path: str = "/testbed") -> dict[str, Any]:
    if bool(repo_dir) == bool(image):
        raise SWEImportError("pass exactly one of repo_dir (a git checkout at the base commit) or image (a Docker image "
                           f"with the repository at {repo_path}); got repo_dir={repo_dir!r}, image={image!r}")
    env: dict[str, Any] = {"sandbox": "docker", "workdir": "/workspace"}
    if repo_dir:
        env.update(repo_dir=str(repo_dir), image="pivotrl/sandbox:latest")
    else:
        env.update(image=image, setup=[f"cp -a {shlex.quote(repo_path)}/. ."])
    if base_commit:
        env["base_commit"] = base_commit
    return env


def _json_list(value: Any, name: str, where: str) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise SWEImportError(f"{where}: {name} must be a JSON list of test ids, got the text {value[:80]!r}") from exc
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SWEImportError(f"{where}: {name} must be a list of test ids (or its JSON text), got {type(value).__name__}")
    return value


def patch_files(patch: str) -> list[str]:
    """The files a unified diff touches (``+++ b/path``; ``/dev/null`` left out)."""
    return sorted({m for m in re.findall(r"^\+\+\+ b/(\S+)", patch, re.M)})


def _call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def _heredoc(text: str) -> str:
    mark = "PIVOTRL_PATCH"
    while mark in text:
        mark += "_"
    return f"git apply -v <<'{mark}'\n{text.rstrip(chr(10))}\n{mark}"


def from_swebench(row: Any, *, repo_dir: str | None = None, image: str | None = None,
                  test_command: str | None = None) -> dict[str, Any]:
    """One SWE-bench instance row -> a record whose demonstration applies the gold patch (see the module docstring)."""
    if not isinstance(row, dict):
        raise SWEImportError(f"a SWE-bench instance must be a JSON object, got {type(row).__name__}")
    where = f"instance {row.get('instance_id', '?')!r}"
    missing = [k for k in ("instance_id", "base_commit", "patch", "test_patch", "FAIL_TO_PASS", "PASS_TO_PASS")
               if k not in row]
    if missing:
        raise SWEImportError(f"{where}: missing field(s) {missing}; SWE-bench rows have instance_id, repo, base_commit, "
                           "patch, test_patch, problem_statement, FAIL_TO_PASS, PASS_TO_PASS")
    f2p, p2p = _json_list(row["FAIL_TO_PASS"], "FAIL_TO_PASS", where), _json_list(row["PASS_TO_PASS"], "PASS_TO_PASS", where)
    test_files = patch_files(row["test_patch"])
    command = test_command or ("python3 -m pytest -rA " + " ".join(shlex.quote(f) for f in test_files))
    call_id = "call_gold_patch"
    return {
        "id": str(row["instance_id"]),
        "domain": "swe",
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": str(row.get("problem_statement") or row["instance_id"])},
            {"role": "assistant", "content": None, "tool_calls": [_call(call_id, "bash", {"command": _heredoc(row["patch"])})]},
            # What `git apply -v` prints (to stderr) for a patch that applies: the replay compares with it.
            {"role": "tool", "tool_call_id": call_id, "content": "".join(f"Checking patch {f}...\n" for f in patch_files(
                row["patch"])) + "".join(f"Applied patch {f} cleanly.\n" for f in patch_files(row["patch"]))},
            {"role": "assistant", "content": "Applied the fix to " + ", ".join(f"`{f}`" for f in patch_files(row["patch"]))
             + "."},
        ],
        "tools": copy.deepcopy(TOOLS),
        "env": _world(repo_dir, image, row["base_commit"]),
        "task": {"tests": {"runner": "command", "fail_to_pass": f2p, "pass_to_pass": p2p, "test_patch": row["test_patch"],
                           "test_files": test_files, "base_commit": row["base_commit"], "command": command}},
        "metadata": {"source": "swebench", "repo": row.get("repo"), "version": row.get("version")},
    }


def parse_swe_agent_action(action: str) -> tuple[str, dict[str, Any]] | None:
    """``(tool, arguments)`` of one SWE-agent action string; None for ``submit``.

    >>> parse_swe_agent_action("str_replace_editor view /testbed/a.py --view_range 1 20")
    ('str_replace_editor', {'command': 'view', 'path': '/testbed/a.py', 'view_range': [1, 20]})
    """
    text = action.strip()
    if text == "submit" or text.startswith("submit "):
        return None
    if text.startswith("str_replace_editor "):
        try:
            words = shlex.split(text)
        except ValueError:
            words = []
        if len(words) >= 3 and words[1] in COMMANDS:
            args: dict[str, Any] = {"command": words[1], "path": words[2]}
            i = 3
            while i < len(words):
                flag = words[i].removeprefix("--")
                if flag == "view_range" and i + 2 < len(words):
                    args["view_range"] = [int(words[i + 1]), int(words[i + 2])]
                    i += 3
                elif flag in ("old_str", "new_str", "file_text") and i + 1 < len(words):
                    args[flag] = words[i + 1]
                    i += 2
                elif flag == "insert_line" and i + 1 < len(words):
                    args[flag] = int(words[i + 1])
                    i += 2
                else:
                    i += 1
            return "str_replace_editor", args
    return "bash", {"command": text}


def from_swe_agent(traj: Any, *, instance_id: str, repo_dir: str | None = None, image: str | None = None,
                   base_commit: str | None = None) -> dict[str, Any]:
    """A SWE-agent ``.traj`` object -> a record (see the module docstring)."""
    if not isinstance(traj, dict) or not isinstance(traj.get("trajectory"), list):
        got = sorted(traj) if isinstance(traj, dict) else type(traj).__name__
        raise SWEImportError(f"a SWE-agent .traj file is an object with a 'trajectory' list of steps; got {got}")
    history = traj.get("history") if isinstance(traj.get("history"), list) else []
    system = next((m.get("content") for m in history if m.get("role") == "system"), None) or SYSTEM_PROMPT
    issue = next((m.get("content") for m in history if m.get("role") == "user"), None)
    if isinstance(system, list) or isinstance(issue, list):  # newer SWE-agent: content parts
        system = "".join(p.get("text", "") for p in system) if isinstance(system, list) else system
        issue = "".join(p.get("text", "") for p in issue) if isinstance(issue, list) else issue
    if not issue:
        raise SWEImportError("the .traj history has no user message with the issue; expected history[i] = "
                           "{'role': 'user', 'content': ...}")
    messages: list[dict[str, Any]] = [{"role": "system", "content": str(system)}, {"role": "user", "content": str(issue)}]
    for i, step in enumerate(traj["trajectory"]):
        if not isinstance(step, dict) or not isinstance(step.get("action"), str):
            raise SWEImportError(f"trajectory[{i}] must be an object with a string 'action', got {str(step)[:80]!r}")
        thought = str(step.get("thought") or "").strip() or None
        parsed = parse_swe_agent_action(step["action"])
        if parsed is None:
            messages.append({"role": "assistant", "content": thought or "Submitted the fix."})
            break
        call_id = f"call_{i}"
        messages.append({"role": "assistant", "content": thought, "tool_calls": [_call(call_id, *parsed)]})
        messages.append({"role": "tool", "tool_call_id": call_id, "content": str(step.get("observation") or "")})
    else:
        messages.append({"role": "assistant", "content": "Finished."})
    info = traj.get("info") if isinstance(traj.get("info"), dict) else {}
    return {"id": instance_id, "domain": "swe", "messages": messages, "tools": copy.deepcopy(TOOLS),
            "env": _world(repo_dir, image, base_commit),
            "metadata": {"source": "swe-agent", "exit_status": info.get("exit_status"),
                         "submission": info.get("submission")}}


def _openhands_call(event: dict[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    kind, args = event["action"], event.get("args") or {}
    if kind == "run":
        return "bash", {"command": str(args.get("command", ""))}
    if kind == "read":
        out: dict[str, Any] = {"command": "view", "path": str(args.get("path", ""))}
        if isinstance(args.get("view_range"), list):
            out["view_range"] = args["view_range"]
        return "str_replace_editor", out
    if kind == "edit":
        command = args.get("command")
        if command not in COMMANDS:
            raise SWEImportError(f"{where}: an edit event needs args.command in {list(COMMANDS)} (OpenHands' "
                               f"str_replace_editor); got {command!r} (LLM-based edits with args.content are not supported)")
        out = {"command": command, "path": str(args.get("path", ""))}
        for key in ("file_text", "old_str", "new_str", "insert_line", "view_range"):
            if args.get(key) is not None:
                out[key] = args[key]
        return "str_replace_editor", out
    raise SWEImportError(f"{where}: unsupported action {kind!r}")


def from_openhands(events: Any, *, instance_id: str, repo_dir: str | None = None, image: str | None = None,
                   base_commit: str | None = None) -> dict[str, Any]:
    """An OpenHands event list -> a record (see the module docstring)."""
    if isinstance(events, dict):
        events = events.get("history", events.get("trajectory"))
    if not isinstance(events, list):
        raise SWEImportError("an OpenHands trajectory is a list of events (or an object with 'history'/'trajectory'); "
                           f"got {type(events).__name__}")
    outputs = {e["cause"]: str(e.get("content") or "") for e in events
               if isinstance(e, dict) and "observation" in e and "cause" in e}
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT}]
    thinking: list[str] = []
    for i, e in enumerate(events):
        where = f"event {i} (id {e.get('id') if isinstance(e, dict) else '?'})"
        if not isinstance(e, dict) or "action" not in e:
            continue
        kind, args = e["action"], e.get("args") or {}
        if kind == "message":
            text = str(args.get("content") or e.get("message") or "")
            role = "user" if e.get("source") == "user" else "assistant"
            messages.append({"role": role, "content": text})
        elif kind == "think":
            thinking.append(str(args.get("thought") or ""))
        elif kind == "finish":
            final = args.get("final_thought") or args.get("outputs") or e.get("message") or "Finished."
            messages.append({"role": "assistant", "content": final if isinstance(final, str) else json.dumps(final)})
        elif kind in ("run", "read", "edit"):
            name, arguments = _openhands_call(e, where)
            call_id = f"call_{e.get('id', i)}"
            msg: dict[str, Any] = {"role": "assistant", "content": args.get("thought") or None,
                                   "tool_calls": [_call(call_id, name, arguments)]}
            if thinking:
                msg["reasoning_content"] = "\n".join(thinking)
                thinking = []
            messages.append(msg)
            messages.append({"role": "tool", "tool_call_id": call_id, "content": outputs.get(e.get("id"), "")})
    if len(messages) < 2 or messages[1]["role"] != "user":
        raise SWEImportError("the OpenHands events hold no user message (the task) before the agent acts; expected an "
                           "event {'source': 'user', 'action': 'message', 'args': {'content': ...}}")
    if messages[-1]["role"] == "tool":
        messages.append({"role": "assistant", "content": "Finished."})
    return {"id": instance_id, "domain": "swe", "messages": messages, "tools": copy.deepcopy(TOOLS),
            "env": _world(repo_dir, image, base_commit), "metadata": {"source": "openhands"}}


def convert(in_path: str | Path, fmt: str, *, repo_dir: str | None = None, image: str | None = None,
            base_commit: str | None = None, test_command: str | None = None) -> list[dict[str, Any]]:
    """Read ``in_path`` in ``fmt`` (one of :data:`FORMATS`) and return validated records.

    Raises :class:`SWEImportError` naming the file, line or event, what was found and what was expected.
    """
    if fmt not in FORMATS:
        raise SWEImportError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    path = Path(in_path)
    records = []
    if fmt == "swebench":
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise SWEImportError(f"{path}:{n}: not JSON ({exc}); SWE-bench instances are one JSON object per line") from exc
            records.append(from_swebench(row, repo_dir=repo_dir, image=image, test_command=test_command))
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise SWEImportError(f"{path}: not a JSON document ({exc})") from exc
        name = path.name.removesuffix(".traj").removesuffix(".json")
        convert_one = from_swe_agent if fmt == "swe-agent" else from_openhands
        records.append(convert_one(data, instance_id=name, repo_dir=repo_dir, image=image, base_commit=base_commit))
    for record in records:
        problems = validate_record(record)
        if problems:
            raise SWEImportError(f"{path}: the converted record {record['id']!r} is invalid: {problems[:3]}")
        record_from_dict(record)
    return records


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert SWE-bench / SWE-agent / OpenHands files into SWE records.")
    parser.add_argument("--from", dest="fmt", choices=FORMATS, required=True)
    parser.add_argument("in_path")
    parser.add_argument("out_path")
    world = parser.add_mutually_exclusive_group(required=True)
    world.add_argument("--repo-dir", help="a clean git checkout of the repository at the base commit")
    world.add_argument("--image", help="a Docker image with the repository at /testbed")
    parser.add_argument("--base-commit")
    parser.add_argument("--test-command")
    args = parser.parse_args(argv)
    try:
        records = convert(args.in_path, args.fmt, repo_dir=args.repo_dir, image=args.image,
                          base_commit=args.base_commit, test_command=args.test_command)
    except SWEImportError as exc:
        print(f"error: {exc}")
        return 2
    n = save_trajectories(records, args.out_path)
    print(f"converted {n} record(s) from {args.in_path} to {args.out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

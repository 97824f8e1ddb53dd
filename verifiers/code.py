"""The code-edit cascade (``make_verifier("code")``) for SWE-style agents: edits judged by resulting files.

Tool vocabulary (what SWE agents use; aliases in :data:`EDITOR_TOOLS`):

* ``str_replace_editor`` with ``{"command": "view" | "create" | "str_replace" | "insert", "path": str,
  "file_text", "old_str", "new_str", "insert_line", "view_range": [start, end]}``; :func:`apply_editor`
  implements it over any sandbox's ``read_file``/``write_file`` (a SWE domain can use it as its executor
  so that verification and episodes agree);
* ``search`` ``{"pattern", "path"?}`` (files containing the literal text) and ``find_file``
  ``{"name": glob, "path"?}``;
* ``bash`` ``{"command"}``; a command whose verb is ``grep``/``rg``/``find``/``ag``/``ack``/``git grep`` is a
  search, anything else is judged by the terminal cascade;
* ``submit`` / ``finish`` and ``think``.

Stages, first decisive wins:

1. **form**: malformed or empty turns, ``WRONG_KIND``; one call per turn (``CALL_COUNT``).
2. **shape** (decisive rejections): the *category* of the two calls must agree (edit / read / search /
   bash / finish / think: ``WRONG_TOOL``), and edits and views must target the same file after path
   normalisation (workdir prefix and ``./`` dropped: ``TARGET_DIFFERS``).
3. **exact**: same category, target and arguments after normalisation.
4. **decide by category**:
   * edits, with a sandbox: both edits are applied to forks of the turn-k workspace and the resulting
     target files compared: byte-equal (``execution``), then whitespace-insensitive (``execution``),
     then, for Python files, AST-equal (``ast``: comments and formatting do not count); an edit that
     fails where the other succeeds is ``EXIT_DIFFERS``; otherwise ``FS_EFFECT_DIFFERS``. Different
     editor sub-commands (``str_replace`` vs ``insert`` vs ``create``) may well be equivalent this way.
     Without a sandbox: NeMo's ``swe_pivot`` level-2 rule, ``min(sim(old_str), sim(new_str)) >= 0.8``
     (SequenceMatcher), which cannot tell ``a + b`` from ``a - b``: execution is preferred.
   * views: the line ranges must overlap (a missing range is the whole file): ``RANGE_DISJOINT``.
   * searches, with a sandbox: both run in forks; the sets of files they report must overlap with
     Jaccard >= ``search_threshold`` (``RESULTS_DIFFER``). Without one: the same pattern and path.
   * bash: the terminal cascade (:mod:`verifiers.terminal`) decides.
   * finish and think: equivalent.
5. **judge** (optional): messages, and whatever is left undecided.
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
import json
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pivot_envs.actions import Action, ToolCall
from sandboxes.core import ExecResult, Sandbox
from sandboxes.errors import SandboxError
from verifiers.cascade import Cascade, ExactStage, Memo, Stage, Step, WellFormedStage, decide, tentative
from verifiers.core import Category, Verdict, VerifyContext
from verifiers.execution import executor_of
from verifiers.judge import JudgeBackend, JudgeStage, LLMJudge
from verifiers.messages import MessageRules
from verifiers.terminal import SHELL_TOOLS, TerminalCascade, _verbs, normalise_command

EDITOR_TOOLS = ("str_replace_editor", "str_replace_based_edit_tool", "file_editor", "text_editor", "edit_file", "editor")
EDIT_COMMANDS = ("create", "str_replace", "insert")
SEARCH_TOOLS = ("search", "search_dir", "search_file", "grep")
FIND_TOOLS = ("find_file", "find_files")
FINISH_TOOLS = ("submit", "finish", "task_complete")
THINK_TOOLS = ("think",)
SEARCH_VERBS = ("grep", "egrep", "fgrep", "rg", "ag", "ack", "find")
DEFAULT_WORKDIRS = ("/testbed", "/workspace", "/repo", "/app")


@dataclass(frozen=True)
class CodeAction:
    """One call of a code agent, classified."""

    category: str  # edit | read | search | bash | finish | think | unknown
    call: ToolCall
    op: str = ""
    path: str = ""
    args: dict[str, Any] = field(default_factory=dict)


def normalise_path(path: Any, workdirs: Sequence[str] = DEFAULT_WORKDIRS) -> str:
    """A workspace-relative, normalised path: ``/testbed/src/a.py``, ``./src//a.py`` -> ``src/a.py``."""
    if not isinstance(path, str):
        return ""
    p = path.strip()
    for wd in workdirs:
        wd = wd.rstrip("/")
        if wd and (p == wd or p.startswith(wd + "/")):
            p = p[len(wd):].lstrip("/") or "."
            break
    return os.path.normpath(p) if p else ""


def classify(call: ToolCall, workdirs: Sequence[str] = DEFAULT_WORKDIRS) -> CodeAction:
    """The category, sub-command, target and arguments of one call."""
    name = call.name.strip().lower().removeprefix("functions.")
    args = call.arguments or {}
    if name in EDITOR_TOOLS:
        op = str(args.get("command", "")).strip()
        category = "read" if op == "view" else "edit" if op in EDIT_COMMANDS else "unknown"
        return CodeAction(category, call, op, normalise_path(args.get("path"), workdirs), dict(args))
    if name in SEARCH_TOOLS:
        pattern = args.get("pattern", args.get("search_term", args.get("query")))
        return CodeAction("search", call, "search", normalise_path(args.get("path") or ".", workdirs),
                          {"pattern": pattern})
    if name in FIND_TOOLS:
        return CodeAction("search", call, "find", normalise_path(args.get("path") or ".", workdirs),
                          {"name": args.get("name", args.get("file_name"))})
    if name in SHELL_TOOLS:
        command = args.get("command")
        if not isinstance(command, str):
            return CodeAction("unknown", call)
        parts = _verbs(command)
        verbs = [os.path.basename(p[0]) for p in parts]
        is_search = bool(verbs) and (verbs[0] in SEARCH_VERBS or verbs[:1] == ["git"] and parts[0][1:2] == ["grep"])
        return CodeAction("search" if is_search else "bash", call, "bash", "", {"command": command})
    if name in FINISH_TOOLS:
        return CodeAction("finish", call)
    if name in THINK_TOOLS:
        return CodeAction("think", call)
    return CodeAction("unknown", call)


# -- applying edits -------------------------------------------------------------------------------


def apply_editor(sandbox: Sandbox, arguments: dict[str, Any], workdirs: Sequence[str] = DEFAULT_WORKDIRS) -> ExecResult:
    """Run one ``str_replace_editor`` command in ``sandbox`` (never raises for bad arguments)."""
    op = arguments.get("command")
    path = normalise_path(arguments.get("path"), workdirs)
    try:
        if not path or path == ".":
            return ExecResult(1, stderr=f"Error: 'path' must name a file, got {arguments.get('path')!r}")
        if op == "view":
            lines = sandbox.read_file(path).decode("utf-8", errors="replace").split("\n")
            start, end = view_range(arguments.get("view_range"))
            end = len(lines) if end == float("inf") else int(end)
            shown = [f"{i:6}\t{lines[i - 1]}" for i in range(max(start, 1), min(end, len(lines)) + 1)]
            return ExecResult(0, stdout="\n".join(shown))
        if op == "create":
            text = arguments.get("file_text")
            if not isinstance(text, str):
                return ExecResult(1, stderr="Error: create needs a string 'file_text'")
            if _exists(sandbox, path):
                return ExecResult(1, stderr=f"Error: file already exists at {path}; use str_replace to edit it")
            sandbox.write_file(path, text)
            return ExecResult(0, stdout=f"File created successfully at: {path}")
        if op == "str_replace":
            old, new = arguments.get("old_str"), arguments.get("new_str", "")
            if not isinstance(old, str) or not isinstance(new, str) or not old:
                return ExecResult(1, stderr="Error: str_replace needs a non-empty string 'old_str' and a string 'new_str'")
            text = sandbox.read_file(path).decode("utf-8")
            count = text.count(old)
            if count != 1:
                why = "did not appear verbatim" if count == 0 else f"appears {count} times; it must be unique"
                return ExecResult(1, stderr=f"Error: old_str {why} in {path}")
            sandbox.write_file(path, text.replace(old, new, 1))
            return ExecResult(0, stdout=f"The file {path} has been edited.")
        if op == "insert":
            line, new = arguments.get("insert_line"), arguments.get("new_str")
            if isinstance(line, bool) or not isinstance(line, int) or not isinstance(new, str):
                return ExecResult(1, stderr="Error: insert needs an integer 'insert_line' and a string 'new_str'")
            lines = sandbox.read_file(path).decode("utf-8").split("\n")
            if not 0 <= line <= len(lines):
                return ExecResult(1, stderr=f"Error: insert_line {line} is outside 0..{len(lines)}")
            lines[line:line] = new.split("\n")
            sandbox.write_file(path, "\n".join(lines))
            return ExecResult(0, stdout=f"The file {path} has been edited.")
        return ExecResult(1, stderr=f"Error: unknown editor command {op!r}; expected view, create, str_replace, insert")
    except SandboxError:
        raise
    except (OSError, ValueError, TypeError, UnicodeDecodeError) as exc:
        return ExecResult(1, stderr=f"Error: {type(exc).__name__}: {exc}")


def _exists(sandbox: Sandbox, path: str) -> bool:
    try:
        sandbox.read_file(path)
        return True
    except (OSError, ValueError):
        return False


def view_range(value: Any) -> tuple[int, float]:
    """``[start, end]`` of a view (1-based, inclusive; ``-1`` or missing = to the end)."""
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        start, end = value
        return max(start, 1), float("inf") if end == -1 else end
    return 1, float("inf")


def _read(sandbox: Sandbox, path: str) -> str | None:
    try:
        return sandbox.read_file(path).decode("utf-8", errors="replace")
    except (OSError, ValueError):
        return None


def compare_sources(a: str | None, b: str | None, path: str) -> Verdict:
    """Equal files: byte-equal, whitespace-insensitive, then (Python) AST-equal."""
    if a == b:
        return Verdict.accept("execution", compared="bytes")
    if a is None or b is None:
        return Verdict.reject("execution", Category.FS_EFFECT_DIFFERS, path=path, reason="file missing on one side")
    if path.endswith(".py"):
        def squash(s: str) -> list[str]:
            return [line.rstrip() for line in s.splitlines() if line.strip()]
    else:
        def squash(s: str) -> list[str]:
            return s.split()
    if squash(a) == squash(b):
        return Verdict.accept("execution", compared="whitespace")
    if path.endswith(".py"):
        try:
            if ast.dump(ast.parse(a)) == ast.dump(ast.parse(b)):
                return Verdict.accept("ast", compared="ast")
        except (SyntaxError, ValueError):
            pass
    diff = list(difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0))[2:12]
    return Verdict.reject("execution", Category.FS_EFFECT_DIFFERS, path=path, diff=diff)


def _similarity(a: Any, b: Any, cap: int = 2000) -> float:
    a, b = str(a or "")[:cap], str(b or "")[:cap]
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _result_files(output: str) -> set[str]:
    files = set()
    for line in output.splitlines():
        line = line.strip()
        if not line:
            continue
        head = line.split(":", 1)[0] if ":" in line else line
        files.add(os.path.normpath(head))
    return files


# -- stages ----------------------------------------------------------------------------------------


class CodeShapeStage(Stage):
    name = "rules"

    def __init__(self, messages: MessageRules, workdirs: Sequence[str], *, messages_final: bool = True):
        self.messages, self.workdirs, self.messages_final = messages, tuple(workdirs), messages_final

    def check(self, expected, candidate, ctx, memo, prior) -> Step | None:
        if expected.kind == "message":
            verdict = self.messages.compare(expected.content, candidate.content, ctx)
            return decide(verdict) if self.messages_final else tentative(verdict)
        if len(expected.tool_calls) != 1 or len(candidate.tool_calls) != 1:
            return decide(Verdict.reject("rule", Category.CALL_COUNT, expected=len(expected.tool_calls),
                                         got=len(candidate.tool_calls)))
        if "expected_code" not in memo:
            memo["expected_code"] = classify(expected.tool_calls[0], _workdirs(ctx, self.workdirs))
        want: CodeAction = memo["expected_code"]
        got = classify(candidate.tool_calls[0], _workdirs(ctx, self.workdirs))
        memo["candidate"]["code"] = got
        if got.category != want.category:
            category = Category.UNKNOWN_TOOL if got.category == "unknown" and ctx.tool_names() and \
                got.call.name not in ctx.tool_names() else Category.WRONG_TOOL
            return decide(Verdict.reject("rule", category, expected=f"{want.category}:{want.call.name}",
                                         got=f"{got.category}:{got.call.name}"))
        if want.category in ("edit", "read") and got.path != want.path:
            return decide(Verdict.reject("rule", Category.TARGET_DIFFERS, expected=want.path, got=got.path))
        return None


def _workdirs(ctx: VerifyContext, defaults: Sequence[str]) -> tuple[str, ...]:
    env = ctx.trajectory.env if ctx.trajectory is not None else {}
    wd = (env or {}).get("workdir")
    return (wd, *defaults) if isinstance(wd, str) and wd else tuple(defaults)


def _code_key(action: Action, ctx: VerifyContext) -> Any:
    if not action.tool_calls:
        return ("message", " ".join(action.content.split()))
    keys = []
    for call in action.tool_calls:
        c = classify(call, _workdirs(ctx, DEFAULT_WORKDIRS))
        args = {k: v for k, v in c.args.items() if k != "path"}
        if c.category == "bash" or c.op == "bash":
            args = {"command": normalise_command(str(args.get("command", "")))}
        if c.category == "unknown":  # not a code tool: the call itself, as canonical JSON
            keys.append(("unknown", c.call.name, json.dumps(c.call.arguments, sort_keys=True) if c.call.arguments is not None
                         else c.call.raw_arguments))
            continue
        keys.append((c.category, c.op, c.path, repr(sorted(args.items()))))
    return ("calls", tuple(keys))


class CodeDecideStage(Stage):
    name = "code"

    def __init__(self, terminal: TerminalCascade, *, edit_threshold: float = 0.8, search_threshold: float = 0.5,
                 execute: bool = True, workdirs: Sequence[str] = DEFAULT_WORKDIRS):
        self.terminal, self.edit_threshold, self.search_threshold = terminal, edit_threshold, search_threshold
        self.execute, self.workdirs = execute, tuple(workdirs)

    def check(self, expected, candidate, ctx, memo, prior) -> Step | None:
        want: CodeAction | None = memo.get("expected_code")
        got: CodeAction | None = memo["candidate"].get("code")
        if want is None or got is None:
            return None
        sandbox = ctx.sandbox if self.execute else None
        if want.category == "read":
            (a0, a1), (b0, b1) = view_range(want.args.get("view_range")), view_range(got.args.get("view_range"))
            if max(a0, b0) <= min(a1, b1):
                return decide(Verdict.accept("rule", overlap=True))
            return decide(Verdict.reject("rule", Category.RANGE_DISJOINT, expected=[a0, a1], got=[b0, b1]))
        if want.category == "edit":
            return self._edit(want, got, ctx, memo, sandbox)
        if want.category == "search":
            return self._search(want, got, ctx, memo, sandbox)
        if want.category == "bash":
            sub = memo.setdefault("terminal", {})
            return decide(self.terminal.run(expected, candidate, ctx, sub))
        if want.category in ("finish", "think"):
            return decide(Verdict.accept("rule", category=want.category))
        return decide(Verdict.reject("rule", Category.WRONG_TOOL, reason="unknown code tool", got=got.call.name))

    def _edit(self, want: CodeAction, got: CodeAction, ctx: VerifyContext, memo: Memo, sandbox: Sandbox | None) -> Step:
        if sandbox is None:
            if want.op != got.op:
                return tentative(Verdict.reject("rule", Category.ARG_VALUE, expected=want.op, got=got.op))
            fields = {"str_replace": ("old_str", "new_str"), "create": ("file_text",), "insert": ("new_str",)}[want.op]
            if want.op == "insert" and want.args.get("insert_line") != got.args.get("insert_line"):
                return tentative(Verdict.reject("rule", Category.ARG_VALUE, key="insert_line"))
            sim = min(_similarity(want.args.get(f), got.args.get(f)) for f in fields)
            if sim >= self.edit_threshold:
                return decide(Verdict.accept("rule", similarity=round(sim, 4)))
            return tentative(Verdict.reject("rule", Category.ARG_VALUE, similarity=round(sim, 4),
                                            threshold=self.edit_threshold))
        workdirs = _workdirs(ctx, self.workdirs)
        if "expected_edit" not in memo:
            memo["expected_edit"] = _apply_in_fork(sandbox, want, workdirs)
        ok_a, text_a = memo["expected_edit"]
        ok_b, text_b = _apply_in_fork(sandbox, got, workdirs)
        if ok_a != ok_b:
            return decide(Verdict.reject("execution", Category.EXIT_DIFFERS, expected_ok=ok_a, got_ok=ok_b))
        return decide(compare_sources(text_a, text_b, want.path))

    def _search(self, want: CodeAction, got: CodeAction, ctx: VerifyContext, memo: Memo, sandbox: Sandbox | None) -> Step:
        if sandbox is None:
            if (want.op, want.path, want.args) == (got.op, got.path, got.args):
                return decide(Verdict.accept("rule"))
            return tentative(Verdict.reject("rule", Category.ARG_VALUE, expected=want.args, got=got.args))
        if "expected_search" not in memo:
            memo["expected_search"] = _search_in_fork(sandbox, want, ctx)
        a, b = memo["expected_search"], _search_in_fork(sandbox, got, ctx)
        jaccard = 1.0 if not a and not b else len(a & b) / len(a | b)
        details = {"jaccard": round(jaccard, 4), "expected": sorted(a)[:10], "got": sorted(b)[:10]}
        if jaccard >= self.search_threshold:
            return decide(Verdict.accept("execution", **details))
        return decide(Verdict.reject("execution", Category.RESULTS_DIFFER, threshold=self.search_threshold, **details))


def _apply_in_fork(sandbox: Sandbox, action: CodeAction, workdirs: Sequence[str]) -> tuple[bool, str | None]:
    fork = sandbox.fork(1)[0]
    try:
        result = apply_editor(fork, action.args, workdirs)
        return result.exit_code == 0, _read(fork, action.path)
    finally:
        fork.close()


def _search_in_fork(sandbox: Sandbox, action: CodeAction, ctx: VerifyContext) -> set[str]:
    if action.op == "search":
        pattern = action.args.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            return set()
        command = f"grep -rlF --exclude-dir=.git --exclude-dir=.tmp -e {shlex.quote(pattern)} {shlex.quote(action.path)}"
    elif action.op == "find":
        name = action.args.get("name")
        if not isinstance(name, str) or not name:
            return set()
        command = f"find {shlex.quote(action.path)} -path ./.tmp -prune -o -type f -name {shlex.quote(name)} -print"
    else:
        command = str(action.args.get("command", ""))
    fork = sandbox.fork(1)[0]
    try:
        _, result = executor_of(ctx)(fork, ToolCall("bash", {"command": command}))
    finally:
        fork.close()
    return {f for f in _result_files(result.stdout) if not fnmatch.fnmatch(f, ".tmp/*")}


class CodeEditCascade(Cascade):
    """The code-edit (SWE) verifier (see the module docstring).

    Args:
        edit_threshold: SequenceMatcher similarity of the no-sandbox edit rule (NeMo ``swe_pivot``: 0.8).
        search_threshold: Jaccard overlap of search result file sets.
        execute: Apply edits and run searches in forks when the context has a sandbox.
        workdirs: Absolute prefixes stripped from paths (the record's ``env.workdir`` is added).
        message_mode: Rules for messages to the user.
        judge: An :class:`~verifiers.judge.LLMJudge`, backend or spec; None = no judge.
    """

    name = "code"

    def __init__(self, *, edit_threshold: float = 0.8, search_threshold: float = 0.5, execute: bool = True,
                 workdirs: Sequence[str] = DEFAULT_WORKDIRS, message_mode: str = "facts",
                 judge: LLMJudge | JudgeBackend | str | None = None, judge_cache_dir: str | Path | None = None):
        if judge is not None and not isinstance(judge, LLMJudge):
            judge = LLMJudge(judge, cache_dir=judge_cache_dir)
        self.judge = judge
        terminal = TerminalCascade(execute=execute, judge=judge)
        super().__init__([
            WellFormedStage(),
            CodeShapeStage(MessageRules(message_mode), workdirs, messages_final=judge is None),
            ExactStage(_code_key),
            CodeDecideStage(terminal, edit_threshold=edit_threshold, search_threshold=search_threshold,
                            execute=execute, workdirs=workdirs),
            JudgeStage(judge, kinds=("message", "tool_call"), rules=(
                "Edits are equivalent when they leave the same code behaviour in the same file; views and "
                "searches when they show the same code.")),
        ])


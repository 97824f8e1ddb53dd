"""The terminal cascade (``make_verifier("terminal")``): shell commands judged by what they do.

Actions are calls of a ``bash`` tool taking ``{"command": str}`` (a valid ``timeout`` is a timing field
and ignored; other arguments too). Stages, first decisive wins:

1. **form**: malformed turns, empty turns and tool call vs message (``WRONG_KIND``); a call of another
   tool (``WRONG_TOOL`` / ``UNKNOWN_TOOL``) or without a string ``command`` (``ARG_MISSING`` /
   ``ARG_TYPE``). Decisive.
2. **exact**: the command lists are equal after normalisation (:func:`normalise_command`: surrounding
   whitespace and trailing newlines dropped, runs of blanks outside quotes collapsed). Decisive.
3. **text fast path, only without a sandbox**: ``difflib.SequenceMatcher`` ratio >= 0.95 accepts
   (NeMo's ``terminus_judge`` rule); otherwise a tentative ``COMMAND_DIFFERS`` that a judge may overrule.
   With a sandbox this stage is skipped on purpose: ``rm -rf a/b`` and ``rm -rf a/bb`` are 96% similar as
   text and do different things, so execution decides.
4. **execution, when the context has a sandbox**: the commands run in two forks of the turn-k world
   (the expected one once per state) and are compared on
   * the exit class (ok / error / timeout): ``EXIT_DIFFERS``, or ``TIMEOUT`` for a candidate that hung;
   * the file-system effect: changed paths with their content hashes and permission bits
     (``chmod +x``/``chmod 600`` are effects), FIFOs by mode (never opened); caches (``__pycache__``,
     ``*.pyc``, ``.pytest_cache``...) only when deleted, since creating or rewriting them is what running
     Python does; a git repository by content (:func:`sandboxes.digest.git_view`: HEAD, refs, commits by
     tree, parents, identities and message, index entries), not by its timestamps, reflogs, object
     packing or index stat cache: ``FS_EFFECT_DIFFERS``;
   * for read-only commands (the demonstration changed no file), the normalised standard output
     (:func:`normalise_terminal_output`: ANSI codes, timestamps, durations, PIDs, temporary and workspace
     paths replaced; lines compared as a multiset when either command's output order is arbitrary, e.g.
     ``find``, ``grep -r``): ``OUTPUT_DIFFERS``.
   Equivalent iff all agree. When the demonstrated command's own output changes between two runs (``date``,
   ``$RANDOM``), an output difference is not evidence: the verdict is a tentative ``OUTPUT_DIFFERS``
   that the judge, if any, decides.
5. **judge** (optional): decides what is left undecided (no sandbox and not similar as text,
   nondeterministic output) and messages.

The file-system effect uses only the :class:`~sandboxes.core.Sandbox` protocol: ``state_digest`` first
(equal digests = no difference), and only when digests differ a manifest (:func:`manifest`) from the
sandbox's own ``manifest()`` (local: walked on the host; Docker: the whole listing read from the
container) or else :mod:`sandboxes.digest` run with ``python3 -I -S`` inside the sandbox. Both walks have
hard limits on entries, depth and time; a walk past them, or a listing that came back cut, is an error
verdict (``WALK_LIMIT``, score 0), never a comparison of partial data. A ``timeout`` argument that is not a
finite positive number is an invalid action (``ARG_VALUE``, method ``error``); a valid one is ignored here
(execution uses the domain's limit).
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import json
import os
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pivot_envs.actions import Action, ToolCall
from sandboxes import digest as digest_module
from sandboxes.core import Sandbox, timeout_problem
from sandboxes.errors import IncompleteListingError, WalkLimitError
from verifiers.cascade import Cascade, ExactStage, Memo, Stage, Step, WellFormedStage, decide, tentative
from verifiers.core import Category, Verdict, VerifyContext
from verifiers.execution import base_digest, executor_of
from verifiers.judge import JudgeBackend, JudgeStage, LLMJudge
from verifiers.messages import MessageRules
from verifiers.toolcall import canonical_tool_name

#: Tool names that mean "run this shell command".
SHELL_TOOLS = ("bash", "shell", "execute_bash", "run_command", "terminal", "run_shell_command")
#: Paths whose changes are not an effect: caches and bytecode.
CACHE_PATTERNS = ("__pycache__", "*.pyc", "*.pyo", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".cache",
                  ".tmp", ".ipynb_checkpoints")
#: Commands whose output order is arbitrary (directory traversal, process tables, hash order).
ORDERLESS_VERBS = frozenset({"find", "du", "locate", "ps", "env", "printenv", "rg", "fd", "fdfind", "lsof"})

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][0-9A-Za-z]")
_SUBS = [
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"), "<TIME>"),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:\.\d+)?\b"), "<TIME>"),
    (re.compile(r"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +\d{1,2} +(?:\d{1,2}:\d{2}|\d{4})\b"), "<TIME>"),
    (re.compile(r"\b\d+m\d+(?:\.\d+)?s\b"), "<DURATION>"),
    (re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|us|µs|ns|sec|seconds|s)\b"), "<DURATION>"),
    (re.compile(r"\b(pid|PID|process)[ :=#]+\d+"), r"\1 <PID>"),
    (re.compile(r"^\[\d+\] \d+$", re.M), "<JOB>"),
    (re.compile(r"/tmp/[^\s'\"]+"), "<TMP>"),
]


def normalise_command(command: str) -> str:
    """Whitespace-normalised command: stripped, blank runs outside quotes collapsed to one space.

    >>> normalise_command("  ls   -la \\n")
    'ls -la'
    >>> normalise_command("echo 'a   b'")
    "echo 'a   b'"
    """
    out: list[str] = []
    quote: str | None = None
    blank = False
    i, s = 0, command.strip()
    while i < len(s):
        ch = s[i]
        if quote is None and ch in " \t":
            blank = True
            i += 1
            continue
        if blank:
            if ch != "\n" and (not out or out[-1] != "\n"):
                out.append(" ")
            blank = False
        if ch == "\\" and quote != "'" and i + 1 < len(s):
            out.append(s[i : i + 2])
            i += 2
            continue
        if quote is None and ch in "'\"":
            quote = ch
        elif ch == quote:
            quote = None
        if ch == "\n" and quote is None and out and out[-1] == " ":
            out.pop()
        out.append(ch)
        i += 1
    return "".join(out)


def _verbs(command: str) -> list[list[str]]:
    """The simple commands of a command line, as token lists (best effort, never raises)."""
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|()<>")
        lexer.whitespace_split = True
        toks = list(lexer)
    except ValueError:
        toks = command.split()
    parts: list[list[str]] = [[]]
    for t in toks:
        if t and set(t) <= set(";&|()"):
            parts.append([])
        else:
            parts[-1].append(t)
    return [p for p in parts if p]


def output_order_is_arbitrary(command: str) -> bool:
    """True when the command's output lines come in no defined order (and it is not sorted after).

    >>> output_order_is_arbitrary("find . -name '*.py'"), output_order_is_arbitrary("find . | sort")
    (True, False)
    """
    parts = _verbs(command)
    if not parts:
        return False
    if os.path.basename(parts[-1][0]) == "sort":
        return False
    for words in parts:
        verb, flags = os.path.basename(words[0]), [w for w in words[1:] if w.startswith("-")]
        if verb in ORDERLESS_VERBS:
            return True
        if verb in ("grep", "egrep", "fgrep") and any(("r" in f or "R" in f) and not f.startswith("--") for f in flags):
            return True
        if verb in ("grep", "egrep", "fgrep") and any(f in ("--recursive", "--dereference-recursive") for f in flags):
            return True
        if verb == "ls" and any(not f.startswith("--") and ("U" in f or "f" in f) for f in flags):
            return True
    return False


def normalise_terminal_output(text: str, workspaces: Iterable[str] = ()) -> list[str]:
    """The lines of a command's output with volatile parts replaced (see the module docstring)."""
    text = _ANSI_RE.sub("", text.replace("\r\n", "\n"))
    for ws in workspaces:
        if ws:
            text = text.replace(ws, "<WORKSPACE>")
    for pattern, repl in _SUBS:
        text = pattern.sub(repl, text)
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def commands_of(action: Action, ctx: VerifyContext) -> list[str] | Verdict:
    """The shell commands of a turn, or the rejection explaining why it is not a list of shell commands."""
    known = ctx.tool_names()
    shell = [n for n in known if n in SHELL_TOOLS] or ["bash"]
    out = []
    for call in action.tool_calls:
        name = canonical_tool_name(call.name, known or SHELL_TOOLS)
        if name not in SHELL_TOOLS or (known and name not in shell):
            category = Category.UNKNOWN_TOOL if known and name not in known else Category.WRONG_TOOL
            return Verdict.reject("rule", category, expected=shell[0], got=call.name)
        command = (call.arguments or {}).get("command")
        bad_timeout = timeout_problem((call.arguments or {}).get("timeout"))
        if bad_timeout:
            return Verdict.error(Category.ARG_VALUE, bad_timeout, tool=name, key="timeout")
        if command is None:
            return Verdict.reject("rule", Category.ARG_MISSING, tool=name, keys=["command"])
        if not isinstance(command, str):
            return Verdict.reject("rule", Category.ARG_TYPE, tool=name, key="command", got=type(command).__name__)
        out.append(command)
    return out


# -- the file-system effect -------------------------------------------------------------------------

#: What lives inside a ``.git`` directory and only records *how* or *when* the repository got its
#: content (object packing, reflogs, the index's stat cache, refs as files): compared through
#: :func:`sandboxes.digest.git_view` instead of byte by byte.
GIT_VOLATILE = ("index", "HEAD", "ORIG_HEAD", "FETCH_HEAD", "COMMIT_EDITMSG", "packed-refs", "objects", "logs",
                "refs", "index.lock", "gc.log")
_DIGEST_SOURCE = inspect.getsource(digest_module)


def is_cache_path(path: str, patterns: Sequence[str] = CACHE_PATTERNS) -> bool:
    parts = [p for p in path.removeprefix("./").split("/") if p not in ("", ".")]
    return any(fnmatch.fnmatch(part, pat) for part in parts for pat in patterns)


def git_path(path: str) -> tuple[str, bool] | None:
    """``(repository directory, volatile)`` for a path inside a ``.git`` directory, else None."""
    parts = path.split("/")
    if ".git" not in parts:
        return None
    i = parts.index(".git")
    inner = parts[i + 1:]
    return "/".join(parts[:i]) or ".", bool(inner) and inner[0] in GIT_VOLATILE


def manifest(sandbox: Sandbox, *, via_exec: bool = False) -> dict[str, str]:
    """Path -> ``"<kind>:<detail>"`` for everything in the sandbox's workspace (see
    :func:`sandboxes.digest.walk`: ``file:<mode>:<sha256>``, ``dir:<mode>``, ``link:<target>``,
    ``fifo:<mode>``, ``cache:``), complete or not at all.

    Uses the sandbox's own ``manifest()`` (local and Docker backends) unless ``via_exec``; otherwise
    runs :mod:`sandboxes.digest` with ``python3 -I -S`` inside the sandbox. A listing that was cut or lost
    its end mark raises :class:`~sandboxes.errors.IncompleteListingError`, a walk past its limits
    :class:`~sandboxes.errors.WalkLimitError`: partial listings are never compared.
    """
    own = getattr(sandbox, "manifest", None)
    if callable(own) and not via_exec:
        raw = own()
    else:
        result = sandbox.exec(f"python3 -I -S -c {shlex.quote(_DIGEST_SOURCE)} --list .")
        if result.exit_code == digest_module.LIMIT_EXIT and "pivotrl-walk-limit" in result.stderr:
            limit = result.stderr.split("pivotrl-walk-limit", 1)[1].split()[0]
            raise WalkLimitError(f"workspace listing: {result.stderr.strip()[-300:]}", limit=limit)
        parsed = None if result.truncated or not result.ok else digest_module.parse_listing(
            result.stdout.encode("utf-8", "surrogateescape"))
        if parsed is None:
            raise IncompleteListingError(
                f"the workspace listing came back incomplete (exit code {result.exit_code}, truncated="
                f"{result.truncated}, {len(result.stdout)} characters); it is not compared")
        raw = {os.fsdecode(rel): (kind.decode(), os.fsdecode(detail)) for rel, (kind, detail) in parsed.items()}
    return {path.rstrip("/"): f"{kind}:{detail}" for path, (kind, detail) in raw.items()}


def fs_changes(before: dict[str, str], after: dict[str, str], patterns: Sequence[str] = CACHE_PATTERNS) -> dict[str, str | None]:
    """Changed paths (new or modified -> entry, deleted -> None) between two :func:`manifest` listings.

    Caches (``cache:`` entries and paths matching ``patterns``) count only when deleted: creating or
    rewriting them is a side effect of running Python, deleting them is what a command did. Volatile
    files inside ``.git`` (:data:`GIT_VOLATILE`) are left out; :func:`git_repositories_changed` says
    which repositories to compare with :func:`sandboxes.digest.git_view`.
    """
    changes: dict[str, str | None] = {}
    for path in set(before) | set(after):
        a, b = before.get(path), after.get(path)
        if a == b:
            continue
        git = git_path(path)
        if git is not None and git[1]:
            continue
        cache = is_cache_path(path, patterns) or (a or "").startswith("cache:") or (b or "").startswith("cache:")
        if cache:
            if b is None:
                changes[path] = None
            continue
        changes[path] = b
    return changes


def git_repositories_changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Repositories (workspace-relative directories) whose volatile ``.git`` files changed."""
    repos = set()
    for path in set(before) | set(after):
        git = git_path(path)
        if git is not None and git[1] and before.get(path) != after.get(path):
            repos.add(git[0])
    return sorted(repos)


def git_view(sandbox: Sandbox, repo: str) -> dict[str, str]:
    """:func:`sandboxes.digest.git_view` of ``repo`` (relative to the workspace), run inside the sandbox."""
    result = sandbox.exec(f"python3 -I -S -c {shlex.quote(_DIGEST_SOURCE)} --git {shlex.quote(repo)}")
    if not result.ok or result.truncated:
        raise IncompleteListingError(f"could not read the git repository {repo!r} (exit code {result.exit_code}): "
                                     f"{result.stderr.strip()[-300:]}")
    try:
        view = json.loads(result.stdout)
    except ValueError as exc:
        raise IncompleteListingError(f"unreadable git view of {repo!r}: {result.stdout[:200]!r}") from exc
    return {str(k): str(v) for k, v in view.items()}


# -- execution ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShellEffect:
    """What a list of commands did in a fork."""

    exit_class: str  # "ok" | "error" | "timeout"
    exit_codes: tuple[int, ...]
    stdout: str
    changes: dict[str, str | None]
    workspace: str
    digest: str = ""


def _exit_class(results: Sequence[Any]) -> str:
    if any(r.timed_out for r in results):
        return "timeout"
    return "ok" if all(r.exit_code == 0 for r in results) else "error"


def run_commands(ctx: VerifyContext, memo: Memo, commands: Sequence[str], *, manifest_via_exec: bool = False,
                 patterns: Sequence[str] = CACHE_PATTERNS) -> ShellEffect:
    """Run ``commands`` in a fork of the turn-k sandbox through the context's executor."""
    assert ctx.sandbox is not None
    base = base_digest(ctx, memo)
    executor = executor_of(ctx)
    fork = ctx.sandbox.fork(1)[0]
    try:
        results, stdout = [], []
        for command in commands:
            _, result = executor(fork, ToolCall("bash", {"command": command}))
            results.append(result)
            stdout.append(result.stdout)
        changes: dict[str, str | None] = {}
        digest = fork.state_digest()
        want = memo.get("expected_shell")
        if digest != base and want is not None and want.digest == digest:
            changes = dict(want.changes)  # the same world as the demonstration's: the same changes, no listing
        elif digest != base:
            if "base_manifest" not in memo:
                memo["base_manifest"] = manifest(ctx.sandbox, via_exec=manifest_via_exec)
            before, after = memo["base_manifest"], manifest(fork, via_exec=manifest_via_exec)
            changes = fs_changes(before, after, patterns)
            for repo in git_repositories_changed(before, after):
                key = ("base_git_view", repo)
                if key not in memo:
                    memo[key] = git_view(ctx.sandbox, repo) if before.get(f"{repo}/.git".removeprefix("./")) else {}
                old, new = memo[key], git_view(fork, repo) if after.get(f"{repo}/.git".removeprefix("./")) else {}
                prefix = "" if repo == "." else repo + "/"
                for name in set(old) | set(new):
                    if old.get(name) != new.get(name):
                        changes[f"{prefix}.git <{name}>"] = new.get(name)
        workspace = str(getattr(fork, "workspace", "") or "")
        return ShellEffect(_exit_class(results), tuple(r.exit_code for r in results), "".join(stdout), changes,
                           workspace, digest)
    finally:
        fork.close()


class ShellShapeStage(Stage):
    """Decisive rejections of non-shell calls; messages by the message rules (or left to the judge)."""

    name = "rules"

    def __init__(self, messages: MessageRules, *, messages_final: bool = True):
        self.messages, self.messages_final = messages, messages_final

    def check(self, expected, candidate, ctx, memo, prior) -> Step | None:
        if expected.kind == "message":
            verdict = self.messages.compare(expected.content, candidate.content, ctx)
            return decide(verdict) if self.messages_final else tentative(verdict)
        if "expected_commands" not in memo:
            memo["expected_commands"] = commands_of(expected, ctx)
        got = commands_of(candidate, ctx)
        if isinstance(got, Verdict):
            return decide(got)
        memo["candidate"]["commands"] = got
        return None


def _command_key(action: Action, ctx: VerifyContext) -> Any:
    if not action.tool_calls:
        return ("message", " ".join(action.content.split()))
    got = commands_of(action, ctx)
    return ("commands", tuple(normalise_command(c) for c in got)) if isinstance(got, list) else ("bad", id(action))


class TextSimilarityStage(Stage):
    """SequenceMatcher ratio >= ``threshold`` accepts; else a tentative reject. Only used when nothing
    can execute (no sandbox, or ``only_without_sandbox=False``)."""

    name = "similarity"

    def __init__(self, threshold: float = 0.95, *, only_without_sandbox: bool = True):
        self.threshold, self.only_without_sandbox = threshold, only_without_sandbox

    def check(self, expected, candidate, ctx, memo, prior) -> Step | None:
        want, got = memo.get("expected_commands"), memo["candidate"].get("commands")
        if (ctx.sandbox is not None and self.only_without_sandbox) or not isinstance(want, list) or got is None:
            return None
        a = "\n".join(normalise_command(c) for c in want)
        b = "\n".join(normalise_command(c) for c in got)
        ratio = round(difflib.SequenceMatcher(None, a, b, autojunk=False).ratio(), 4)
        if ratio >= self.threshold:
            return decide(Verdict.accept("rule", similarity=ratio, fast_path=True))
        return tentative(Verdict.reject("rule", Category.COMMAND_DIFFERS, similarity=ratio, threshold=self.threshold))


class ShellExecutionStage(Stage):
    """Run both command lists in twin forks and compare exit class, file effect and output."""

    name = "execution"

    def __init__(self, *, determinism_check: bool = True, manifest_via_exec: bool = False,
                 ignore: Sequence[str] = CACHE_PATTERNS):
        self.determinism_check = determinism_check
        self.manifest_via_exec = manifest_via_exec
        self.ignore = tuple(ignore)

    def _run(self, ctx: VerifyContext, memo: Memo, commands: Sequence[str]) -> ShellEffect:
        return run_commands(ctx, memo, commands, manifest_via_exec=self.manifest_via_exec, patterns=self.ignore)

    def check(self, expected, candidate, ctx, memo, prior) -> Step | None:
        want_cmds, got_cmds = memo.get("expected_commands"), memo["candidate"].get("commands")
        if ctx.sandbox is None or not isinstance(want_cmds, list) or got_cmds is None:
            return None
        try:
            if "expected_shell" not in memo:
                memo["expected_shell"] = self._run(ctx, memo, want_cmds)
            want: ShellEffect = memo["expected_shell"]
            got = self._run(ctx, memo, got_cmds)
        except (WalkLimitError, IncompleteListingError) as exc:
            # A workspace that cannot be listed completely is never compared in part: no reward.
            limit = getattr(exc, "limit", "incomplete")
            return decide(Verdict.error(Category.WALK_LIMIT, str(exc)[:500], limit=limit))
        if got.exit_class != want.exit_class:
            category = Category.TIMEOUT if got.exit_class == "timeout" else Category.EXIT_DIFFERS
            return decide(Verdict.reject("execution", category, expected=want.exit_class, got=got.exit_class,
                                         exit_codes=list(got.exit_codes)))
        if got.changes != want.changes:
            differ = sorted(p for p in set(want.changes) | set(got.changes)
                            if want.changes.get(p, "absent") != got.changes.get(p, "absent"))
            return decide(Verdict.reject("execution", Category.FS_EFFECT_DIFFERS, paths=differ[:20],
                                         expected_changed=sorted(want.changes)[:20],
                                         candidate_changed=sorted(got.changes)[:20]))
        if want.changes:  # a command that changed files: the effect is what counts, not what it printed
            return decide(Verdict.accept("execution", effect="write", changed=sorted(want.changes)[:20]))
        arbitrary = any(output_order_is_arbitrary(c) for c in [*want_cmds, *got_cmds])
        a = normalise_terminal_output(want.stdout, [want.workspace, got.workspace])
        b = normalise_terminal_output(got.stdout, [want.workspace, got.workspace])
        if arbitrary:
            a, b = sorted(a), sorted(b)
        if a == b:
            return decide(Verdict.accept("execution", effect="read", unordered=arbitrary))
        details = {"expected": "\n".join(a)[:300], "got": "\n".join(b)[:300], "unordered": arbitrary}
        if self.determinism_check and self._nondeterministic(ctx, memo, want_cmds, a, arbitrary):
            return tentative(Verdict.reject("execution", Category.OUTPUT_DIFFERS, nondeterministic=True, **details))
        return decide(Verdict.reject("execution", Category.OUTPUT_DIFFERS, **details))

    def _nondeterministic(self, ctx: VerifyContext, memo: Memo, commands: Sequence[str], first: list[str],
                          arbitrary: bool) -> bool:
        if "expected_nondeterministic" not in memo:
            again = self._run(ctx, memo, commands)
            lines = normalise_terminal_output(again.stdout, [again.workspace])
            memo["expected_nondeterministic"] = (sorted(lines) if arbitrary else lines) != first
        return memo["expected_nondeterministic"]


class TerminalCascade(Cascade):
    """The terminal domain's verifier (see the module docstring).

    Args:
        similarity_threshold: SequenceMatcher ratio of the no-sandbox fast path.
        execute: Run commands in twin forks when the context has a sandbox.
        determinism_check: Re-run a read-only demonstration once per state to detect volatile output.
        manifest_via_exec: Always list files with ``find``/``sha256sum`` inside the sandbox (the path the
            Docker backend takes; the local sandbox otherwise walks its workspace on the host).
        ignore: Glob patterns of path components whose changes are not an effect (caches).
        message_mode: Rules for messages to the user (:class:`~verifiers.messages.MessageRules`).
        judge: An :class:`~verifiers.judge.LLMJudge`, backend or spec; None = no judge.
        judge_cache_dir: On-disk judge cache.
    """

    name = "terminal"

    def __init__(self, *, similarity_threshold: float = 0.95, execute: bool = True, determinism_check: bool = True,
                 manifest_via_exec: bool = False, ignore: Sequence[str] = CACHE_PATTERNS,
                 message_mode: str = "facts", judge: LLMJudge | JudgeBackend | str | None = None,
                 judge_cache_dir: str | Path | None = None):
        if judge is not None and not isinstance(judge, LLMJudge):
            judge = LLMJudge(judge, cache_dir=judge_cache_dir)
        self.judge = judge
        stages: list[Stage] = [
            WellFormedStage(),
            ShellShapeStage(MessageRules(message_mode), messages_final=judge is None),
            ExactStage(_command_key),
            TextSimilarityStage(similarity_threshold, only_without_sandbox=execute),
        ]
        if execute:
            stages.append(ShellExecutionStage(determinism_check=determinism_check,
                                              manifest_via_exec=manifest_via_exec, ignore=ignore))
        stages.append(JudgeStage(judge, kinds=("message", "tool_call"), rules=(
            "Commands are equivalent when they leave the same files and show the same information; a different "
            "timeout or flag order does not matter, a different path, pattern or side effect does.")))
        super().__init__(stages)

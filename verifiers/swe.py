"""The SWE cascade (``make_verifier("swe")``) and SWE-bench-style grading: edits judged by the code they
leave, explorations by what they show, episodes by FAIL_TO_PASS and PASS_TO_PASS.

Actions are calls of ``bash`` ``{"command"}`` and of the file editor ``str_replace_editor`` (view / create /
str_replace / insert / undo_edit; see :mod:`pivot_envs.domains.swe.editor`), or a message. Stages, first
decisive wins:

1. **form**: malformed or empty turns, tool call vs message (``WRONG_KIND``); a call of a tool the state
   does not offer (``UNKNOWN_TOOL``). Messages: :class:`~verifiers.messages.MessageRules`.
2. **exact**: the same calls after normalisation (bash whitespace, JSON key order, editor paths).
3. **without a sandbox**: the rules of the ``code`` cascade (:mod:`verifiers.code`: same tool category and
   target file, NeMo's ``swe_pivot`` similarity of old/new strings, overlapping view ranges).
4. **execution in twin forks** of the turn-k workspace (the expected action once per state), through the
   domain's executor, so the editor runs exactly as in episodes. The *workspace effect* is the set of
   changed paths (caches and the editor's undo history left out, complete listings only: a listing that
   cannot be taken whole is a ``WALK_LIMIT`` error, never a partial comparison):

   * **the demonstration edited files**: the candidate must change the same paths (``FS_EFFECT_DIFFERS``
     otherwise: another file, a test file, nothing at all); then each changed file is compared
     (:func:`verifiers.code.compare_sources`: byte-equal, equal up to whitespace, or, for Python, the same
     ``ast.dump``: comments and formatting do not count). Files that still differ are judged by the
     record's tests (``task.tests``), run with the original test files restored (:func:`grading_script`):
     equivalent iff the demonstrated edit changed some test's outcome and the candidate's edit gives every
     FAIL_TO_PASS and PASS_TO_PASS test the same outcome as the demonstration's (a different but correct
     fix); otherwise ``FS_EFFECT_DIFFERS`` with the test outcomes in the details.
   * **the demonstration only looked** (read-only commands, editor views, test runs): the candidate must
     leave the workspace alone (``FS_EFFECT_DIFFERS``); two test runs are equivalent when they report the same
     failing tests, whatever their exit status (``OUTPUT_DIFFERS``); other reads must end in the same exit
     class (``EXIT_DIFFERS``); two views of
     one file when their line ranges overlap; anything else by the information returned: the output lines,
     with ``cat -n``/editor numbering, ``path:line:`` prefixes of grep and ``./`` dropped, must overlap
     (Jaccard >= ``read_threshold``, or the candidate shows nearly all the demonstration showed without
     flooding it: ``RESULTS_DIFFER`` otherwise).
5. **judge** (optional): messages and whatever is left undecided.

Grading (:func:`grade`) follows SWE-bench (``swebench/harness/grading.py``): a test passes when its status is
``PASSED`` or ``XFAIL``, fails when it is missing or ``FAILED``/``ERROR``; an instance is resolved when every
FAIL_TO_PASS and every PASS_TO_PASS test passes (``get_resolution_status``: FULL iff both rates are 1). The
status map comes from :func:`grading_script`, run with :meth:`~sandboxes.core.Sandbox.run_check` in a fork: it
first restores the record's test files (so editing or deleting a test cannot fake a pass, as SWE-bench
re-applies its test patch), runs Python isolated (``-I -S``, the workspace appended *after* the standard
library on ``sys.path``, bytecode read and written only under a fresh ``pycache_prefix``), so a planted
``unittest.py``, ``sitecustomize.py`` or forged ``.pyc`` is never loaded, and reports a status line marked
with a per-run random nonce that the host parses; a process that exits early (``exit 0``,
``os._exit(0)``) reports nothing and fails. Known limit, shared with SWE-bench: the code under test runs in
the runner's interpreter, so a fix written to subvert the runner itself in-process is not caught beyond the
check that ``unittest``'s classes were not patched.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pivot_envs.actions import Action, ToolCall
from sandboxes.core import ExecResult, Sandbox
from sandboxes.errors import IncompleteListingError, WalkLimitError
from verifiers.cascade import Cascade, ExactStage, Memo, Stage, Step, WellFormedStage, decide, tentative
from verifiers.code import CodeEditCascade, classify, compare_sources, view_range
from verifiers.core import Category, Verdict, VerifyContext
from verifiers.execution import execute_all, executor_of
from verifiers.judge import JudgeBackend, JudgeStage, LLMJudge
from verifiers.messages import MessageRules
from verifiers.terminal import (
    CACHE_PATTERNS,
    fs_changes,
    manifest,
    normalise_command,
    normalise_terminal_output,
)

#: Statuses of SWE-bench's ``TestStatus`` that count as a pass (``is_passed`` in its grading).
PASS_STATUSES = frozenset({"PASSED", "XFAIL"})
#: Paths that are the tools' own state, not an effect on the repository (the editor's undo history).
TOOL_STATE = (".pivotrl",)
#: Seconds a test run may take in a fork.
TEST_TIMEOUT = 60.0
_STATUS_MARK = "PIVOTRL-SWE-STATUS"

# -- grading ----------------------------------------------------------------------------------------


def is_passed(test: str, status: Mapping[str, str]) -> bool:
    """SWE-bench's rule: present with status PASSED or XFAIL."""
    return status.get(test) in PASS_STATUSES


def grade(status: Mapping[str, str], fail_to_pass: Sequence[str], pass_to_pass: Sequence[str]) -> dict[str, Any]:
    """The SWE-bench report of one instance: which tests pass or fail, and whether it is resolved.

    >>> grade({"a": "PASSED", "b": "FAILED"}, ["a"], ["b"])["resolved"]
    False
    """
    report: dict[str, Any] = {}
    for name, tests in (("FAIL_TO_PASS", fail_to_pass), ("PASS_TO_PASS", pass_to_pass)):
        report[name] = {"success": [t for t in tests if is_passed(t, status)],
                        "failure": [t for t in tests if not is_passed(t, status)]}
    report["resolved"] = not report["FAIL_TO_PASS"]["failure"] and not report["PASS_TO_PASS"]["failure"]
    return report


def grading_spec(task: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``task.tests`` object of a record, when it is well formed (else None)."""
    spec = (task or {}).get("tests")
    if not isinstance(spec, dict):
        return None
    if not all(isinstance(spec.get(k), list) for k in ("fail_to_pass", "pass_to_pass")):
        return None
    return spec


# The runner of ``unittest`` ids, run inside the sandbox by ``run_check`` (python3 = python -I -S there).
_UNITTEST_RUNNER = r'''
import base64, json, os, shutil, sys, tempfile, unittest
spec = json.loads(base64.b64decode(sys.argv[1]).decode("utf-8"))
root = os.getcwd()
for d in spec.get("dirs", []):
    p = os.path.join(root, d)
    if os.path.islink(p) or os.path.isfile(p):
        os.unlink(p)
    elif os.path.isdir(p):
        shutil.rmtree(p)
for rel, text in spec.get("files", {}).items():
    p = os.path.join(root, rel)
    if os.path.islink(p):
        os.unlink(p)
    os.makedirs(os.path.dirname(p) or root, exist_ok=True)
    with open(p, "w", encoding="utf-8") as f:
        f.write(text)
sys.pycache_prefix = tempfile.mkdtemp()
sys.path.append(root)
classes = (unittest.TestCase, unittest.TestResult, unittest.TestSuite, unittest.TestLoader)
guard = [dict(c.__dict__) for c in classes]
status = {}
class Result(unittest.TestResult):
    def addSuccess(self, t): status[t.id()] = "PASSED"
    def addFailure(self, t, e): status[t.id()] = "FAILED"
    def addError(self, t, e): status[getattr(t, "id", lambda: "?")()] = "ERROR"
    def addSkip(self, t, r): status[t.id()] = "SKIPPED"
    def addExpectedFailure(self, t, e): status[t.id()] = "XFAIL"
    def addUnexpectedSuccess(self, t): status[t.id()] = "FAILED"
out = {}
for tid in spec["ids"]:
    status.clear()
    try:
        unittest.defaultTestLoader.loadTestsFromName(tid).run(Result())
        out[tid] = status.get(tid, "ERROR" if status else "MISSING")
    except BaseException:
        out[tid] = "ERROR"
if any(dict(c.__dict__).keys() != g.keys() or any(c.__dict__[k] is not v for k, v in g.items())
       for c, g in zip(classes, guard)):
    out = {tid: "ERROR" for tid in spec["ids"]}
    out["<runner>"] = "TAMPERED"
sys.stdout.write("\n%s %s %s\n" % (spec["mark"], spec["nonce"], json.dumps(out, sort_keys=True)))
sys.stdout.flush()
'''


def grading_script(spec: Mapping[str, Any], nonce: str) -> str:
    """The bash script (for :meth:`~sandboxes.core.Sandbox.run_check`) that restores the record's test
    files and reports the status of every FAIL_TO_PASS and PASS_TO_PASS test on one marked line.

    ``spec`` is a record's ``task.tests``: ``runner`` ``"unittest"`` (the default: ``files`` path -> original
    text, ``dirs`` test directories emptied first, test ids in ``python3 -m unittest`` dotted form) or
    ``"command"`` (imported instances: ``test_files`` are checked out from ``base_commit``, ``test_patch`` is
    applied with ``git apply``, then ``command`` runs and its log is parsed by :func:`parse_test_log`).
    """
    ids = list(dict.fromkeys([*spec.get("fail_to_pass", []), *spec.get("pass_to_pass", [])]))
    if spec.get("runner", "unittest") == "unittest":
        payload = {"ids": ids, "files": spec.get("files") or {}, "dirs": spec.get("dirs") or [],
                   "mark": _STATUS_MARK, "nonce": nonce}
        encoded = base64.b64encode(json.dumps(payload).encode("utf-8")).decode("ascii")
        return f"python3 -c {shlex.quote(_UNITTEST_RUNNER)} {encoded}"
    lines = []
    files = [f for f in spec.get("test_files") or [] if isinstance(f, str)]
    if files and spec.get("base_commit"):
        # Each test file is removed, then taken from the instance's own base commit (image worlds copy its .git)
        # or from pivotrl-base (a repo_dir world re-commits the checkout under that tag); a file that test_patch
        # creates stays removed, so the patch can create it.
        base = shlex.quote(str(spec["base_commit"]))
        for f in files:
            q = shlex.quote(f)
            lines.append(f"rm -f -- {q}; git checkout -q {base} -- {q} 2>/dev/null || "
                         f"git checkout -q pivotrl-base -- {q} 2>/dev/null || true")
    if spec.get("test_patch"):
        lines.append(f"printf %s {shlex.quote(str(spec['test_patch']))} | git apply -v - >/dev/null")
    lines.append(f"{spec.get('command', 'python3 -m pytest -rA')} 2>&1")
    lines.append(f"echo; echo {_STATUS_MARK} {nonce} LOG-END")
    return "\n".join(lines)


_PYTEST_LINE = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\s+(\S+)")
_UNITTEST_VERBOSE = re.compile(r"^(\S+) \(([\w.]+)\)(?:\n.*?)?\s\.\.\.\s(ok|FAIL|ERROR|skipped.*|expected failure|"
                               r"unexpected success)\s*$", re.M)


def parse_test_log(log: str) -> dict[str, str]:
    """Test statuses from a log of ``pytest -rA`` (its short summary lines) or ``unittest -v``, in SWE-bench's
    vocabulary (PASSED, FAILED, ERROR, SKIPPED, XFAIL). Unittest ids are dotted: ``module.Class.test``."""
    status: dict[str, str] = {}
    for line in log.splitlines():
        m = _PYTEST_LINE.match(line.strip())
        if m:
            kind, test = m.groups()
            status[test.rstrip(" -")] = {"XPASS": "FAILED"}.get(kind, kind)
    for name, where, outcome in _UNITTEST_VERBOSE.findall(log):
        test = where if where.endswith("." + name) else f"{where}.{name}"
        status[test] = {"ok": "PASSED", "FAIL": "FAILED", "ERROR": "ERROR", "expected failure": "XFAIL",
                        "unexpected success": "FAILED"}.get(outcome, "SKIPPED")
    return status


def run_tests(sandbox: Sandbox, spec: Mapping[str, Any], *, timeout: float = TEST_TIMEOUT) -> dict[str, str]:
    """The status of every FAIL_TO_PASS and PASS_TO_PASS test in ``sandbox``, run in a fork of it (left
    unchanged) with :meth:`~sandboxes.core.Sandbox.run_check`. A test the run did not report is absent."""
    nonce = secrets.token_hex(16)
    fork = sandbox.fork(1)[0]
    try:
        result = fork.run_check(grading_script(spec, nonce), timeout=timeout)
    finally:
        fork.close()
    return statuses_from_output(result, spec, nonce)


def statuses_from_output(result: ExecResult, spec: Mapping[str, Any], nonce: str) -> dict[str, str]:
    """Parse what :func:`grading_script` printed: the last line marked with ``nonce`` (nothing else counts)."""
    text = result.stdout
    mark = f"{_STATUS_MARK} {nonce} "
    at = text.rfind("\n" + mark)
    if at < 0 and not text.startswith(mark):
        return {}
    start = at + 1 if at >= 0 else 0
    if spec.get("runner", "unittest") == "unittest":
        line = text[start + len(mark):].split("\n", 1)[0]
        try:
            parsed = json.loads(line)
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in parsed.items()} if isinstance(parsed, dict) else {}
    return parse_test_log(text[:start])


def grade_workspace(sandbox: Sandbox, spec: Mapping[str, Any]) -> tuple[bool, dict[str, Any]]:
    """Whether every FAIL_TO_PASS and PASS_TO_PASS test passes in ``sandbox`` (SWE-bench's FULL), and the report."""
    status = run_tests(sandbox, spec)
    report = grade(status, spec.get("fail_to_pass", []), spec.get("pass_to_pass", []))
    report["status"] = status
    return bool(report["resolved"] and status.get("<runner>") != "TAMPERED"), report


# -- comparing reads ----------------------------------------------------------------------------------

_NUMBERED = re.compile(r"^\s*\d+\t")
_GREP_PREFIX = re.compile(r"^(?:\./)?[^\s:]+:\d+[:-]|^\d+[:-]")
_EDITOR_HEADER = re.compile(r"^Here's the (?:result of running `cat -n` on|files and directories up to).*:$")
_TEST_SUMMARY = re.compile(r"^Ran (\d+) tests? in ", re.M)
_TEST_FAILURE = re.compile(r"^(?:FAIL|ERROR): (\S+) \(([^)]+)\)", re.M)
_PYTEST_FAILURE = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.M)


def information_lines(text: str, workspaces: Sequence[str] = ()) -> set[str]:
    """What a read showed, as a set of content lines: numbering, grep's ``path:line:`` prefixes, ``./`` and
    the editor's header dropped, volatile parts (times, temporary paths) replaced, blank lines left out."""
    out = set()
    for line in normalise_terminal_output(text, workspaces):
        if _EDITOR_HEADER.match(line.strip()):
            continue
        line = _NUMBERED.sub("", line, count=1)
        line = _GREP_PREFIX.sub("", line, count=1)
        line = line.removeprefix("./").strip()
        if line:
            out.add(line)
    return out


_VERBOSE_LINE = re.compile(r"^(\w+) \(([\w.]+)\)[^\n]*? \.\.\. (ok|FAIL|ERROR|skipped|expected failure|unexpected success)",
                           re.M)


def _dotted(name: str, where: str) -> str:
    """unittest names a test ``name (module.Class.name)`` since Python 3.11 and ``name (module.Class)`` before."""
    return where if where.endswith("." + name) else f"{where}.{name}"


def failing_tests(text: str) -> tuple[int, frozenset[str]] | None:
    """``(tests run, failing test names)`` of a unittest or pytest run's output, or None when it is not one."""
    verbose = _VERBOSE_LINE.findall(text)
    if verbose:  # `unittest -v`: one line per test, possibly filtered down to those lines
        return len(verbose), frozenset(_dotted(name, where) for name, where, outcome in verbose
                                       if outcome in ("FAIL", "ERROR", "unexpected success"))
    ran = _TEST_SUMMARY.search(text)
    if ran:
        return int(ran.group(1)), frozenset(_dotted(a, b) for a, b in _TEST_FAILURE.findall(text))
    if re.search(r"=+ .*(passed|failed|error).* in [\d.]+s", text):
        return -1, frozenset(_PYTEST_FAILURE.findall(text))
    return None


# -- running actions in forks -------------------------------------------------------------------------


@dataclass
class RunEffect:
    """What a list of calls did in a fork: tool texts, results, changed paths and their new texts."""

    outputs: list[str]
    results: list[ExecResult]
    changes: dict[str, str | None]
    texts: dict[str, str | None] = field(default_factory=dict)
    workspace: str = ""

    @property
    def exit_class(self) -> str:
        if any(r.timed_out for r in self.results):
            return "timeout"
        return "ok" if all(r.exit_code == 0 for r in self.results) else "error"


def _is_tool_state(path: str) -> bool:
    return path.split("/", 1)[0] in TOOL_STATE


def _read_text(sandbox: Sandbox, path: str) -> str | None:
    try:
        return sandbox.read_file(path).decode("utf-8", errors="replace")
    except (OSError, ValueError):
        return None


def _base_manifest(ctx: VerifyContext, memo: Memo) -> dict[str, str]:
    if "swe_base_manifest" not in memo:
        memo["swe_base_manifest"] = manifest(ctx.sandbox)
    return memo["swe_base_manifest"]


def run_calls(ctx: VerifyContext, memo: Memo, calls: Sequence[ToolCall], *, keep: bool = False
              ) -> tuple[RunEffect, Sandbox | None]:
    """Run ``calls`` in a fresh fork of the turn-k world; the fork is returned open when ``keep``."""
    executor = executor_of(ctx)
    assert ctx.sandbox is not None
    before = _base_manifest(ctx, memo)
    fork = ctx.sandbox.fork(1)[0]
    try:
        outputs, results = execute_all(fork, calls, executor)
        after = manifest(fork)
        changes = {p: e for p, e in fs_changes(before, after, CACHE_PATTERNS).items() if not _is_tool_state(p)}
        texts = {p: (_read_text(fork, p) if e is not None and e.startswith("file:") else None) for p, e in changes.items()}
        workspace = str(getattr(fork, "workspace", "") or "")
        effect = RunEffect(outputs, results, changes, texts, workspace)
    except BaseException:
        fork.close()
        raise
    if keep:
        return effect, fork
    fork.close()
    return effect, None


# -- stages -------------------------------------------------------------------------------------------


def _swe_key(action: Action, ctx: VerifyContext) -> Any:
    if not action.tool_calls:
        return ("message", " ".join(action.content.split()))
    keys = []
    for call in action.tool_calls:
        args = dict(call.arguments or {})
        if call.name == "bash" and isinstance(args.get("command"), str):
            args = {"command": normalise_command(args["command"])}
        elif "path" in args:
            code = classify(call)
            args["path"] = code.path or args["path"]
        keys.append((call.name, json.dumps(args, sort_keys=True, default=str) if call.arguments is not None
                     else call.raw_arguments))
    return ("calls", tuple(keys))


class SWEShapeStage(Stage):
    """Messages by the message rules; tool calls must use tools the state offers."""

    name = "rules"

    def __init__(self, messages: MessageRules, *, messages_final: bool = True):
        self.messages, self.messages_final = messages, messages_final

    def check(self, expected, candidate, ctx, memo, prior) -> Step | None:
        if expected.kind == "message":
            verdict = self.messages.compare(expected.content, candidate.content, ctx)
            return decide(verdict) if self.messages_final else tentative(verdict)
        known = ctx.tool_names()
        for call in candidate.tool_calls:
            if known and call.name not in known:
                return decide(Verdict.reject("rule", Category.UNKNOWN_TOOL, got=call.name, known=sorted(known)))
        return None


class SWERulesStage(Stage):
    """Without a sandbox: the ``code`` cascade's rules decide (the NeMo-like ``swe_pivot`` levels)."""

    name = "code"

    def __init__(self, code: CodeEditCascade):
        self.code = code

    def check(self, expected, candidate, ctx, memo, prior) -> Step | None:
        if ctx.sandbox is not None or expected.kind != "tool_call":
            return None
        verdict = self.code.run(expected, candidate, ctx, memo.setdefault("code", {}))
        return decide(verdict) if verdict.equivalent or verdict.method == "error" else tentative(verdict)


class SWEExecutionStage(Stage):
    """Execution in twin forks (see the module docstring)."""

    name = "execution"

    def __init__(self, *, read_threshold: float = 0.5, use_tests: bool = True):
        self.read_threshold, self.use_tests = read_threshold, use_tests

    def check(self, expected, candidate, ctx, memo, prior) -> Step | None:
        if ctx.sandbox is None or expected.kind != "tool_call" or candidate.kind != "tool_call":
            return None
        try:
            if "swe_expected" not in memo:
                memo["swe_expected"] = run_calls(ctx, memo, expected.tool_calls)[0]
            want: RunEffect = memo["swe_expected"]
            got, fork = run_calls(ctx, memo, candidate.tool_calls, keep=bool(want.changes))
        except (WalkLimitError, IncompleteListingError) as exc:
            return decide(Verdict.error(Category.WALK_LIMIT, str(exc)[:500], limit=getattr(exc, "limit", "incomplete")))
        try:
            if got.exit_class == "timeout" and want.exit_class != "timeout":
                return decide(Verdict.reject("execution", Category.TIMEOUT))
            if want.changes:
                return decide(self._edit(want, got, fork, expected, ctx, memo))
            return decide(self._read(want, got, expected, candidate))
        finally:
            if fork is not None:
                fork.close()

    # -- edits --
    def _edit(self, want: RunEffect, got: RunEffect, fork: Sandbox | None, expected: Action, ctx: VerifyContext,
              memo: Memo) -> Verdict:
        if set(got.changes) != set(want.changes):
            return Verdict.reject("execution", Category.FS_EFFECT_DIFFERS, expected_changed=sorted(want.changes)[:20],
                                  candidate_changed=sorted(got.changes)[:20])
        kinds = {p: (want.changes[p] or "gone").split(":", 1)[0] for p in want.changes}
        if any((got.changes[p] or "gone").split(":", 1)[0] != k for p, k in kinds.items()):
            return Verdict.reject("execution", Category.FS_EFFECT_DIFFERS, reason="a path changed kind differently")
        verdicts = {p: compare_sources(want.texts.get(p), got.texts.get(p), p) for p in sorted(want.changes)
                    if want.changes[p] != got.changes[p]}
        differing = {p: v for p, v in verdicts.items() if not v.equivalent}
        if not differing:
            method = "ast" if any(v.method == "ast" for v in verdicts.values()) else "execution"
            return Verdict.accept(method, compared={p: v.details.get("compared", "bytes") for p, v in verdicts.items()}
                                  or "bytes", changed=sorted(want.changes)[:20])
        spec = grading_spec(ctx.trajectory.task if ctx.trajectory is not None else None)
        first = next(iter(differing.values()))
        if not self.use_tests or spec is None or fork is None:
            return first
        base = memo.get("swe_tests_base")
        if base is None:
            base = memo["swe_tests_base"] = run_tests(ctx.sandbox, spec)
        if "swe_tests_expected" not in memo:
            effect, exp_fork = run_calls(ctx, memo, expected.tool_calls, keep=True)
            try:
                memo["swe_tests_expected"] = run_tests(exp_fork, spec)
            finally:
                if exp_fork is not None:
                    exp_fork.close()
        expected_status: dict[str, str] = memo["swe_tests_expected"]
        got_status = run_tests(fork, spec)
        ids = list(dict.fromkeys([*spec["fail_to_pass"], *spec["pass_to_pass"]]))
        outcome = {t: is_passed(t, expected_status) for t in ids}
        moved = any(outcome[t] != is_passed(t, base) for t in ids)
        same = all(is_passed(t, got_status) == outcome[t] for t in ids) and "<runner>" not in got_status
        details = {"paths": sorted(differing)[:10], "diff": first.details.get("diff", []),
                   "tests_changed_by_demonstration": moved,
                   "tests_differing": [t for t in ids if is_passed(t, got_status) != outcome[t]][:10]}
        if moved and same:
            return Verdict.accept("execution", compared="tests", tests=len(ids), paths=sorted(differing)[:10])
        return Verdict.reject("execution", Category.FS_EFFECT_DIFFERS, **details)

    # -- reads --
    def _read(self, want: RunEffect, got: RunEffect, expected: Action, candidate: Action) -> Verdict:
        if got.changes:
            return Verdict.reject("execution", Category.FS_EFFECT_DIFFERS, reason="the demonstration changed no file",
                                  candidate_changed=sorted(got.changes)[:20])
        a_text, b_text = "\n".join(want.outputs), "\n".join(got.outputs)
        a_tests, b_tests = failing_tests(a_text), failing_tests(b_text)
        if a_tests is not None or b_tests is not None:
            # Test runs show which tests fail; their exit status depends on pipes (`| grep`, `| tail`), not on that.
            if a_tests is None or b_tests is None:
                return Verdict.reject("execution", Category.OUTPUT_DIFFERS, reason="only one of the two ran tests")
            if a_tests[1] == b_tests[1] and (a_tests[0] != 0) == (b_tests[0] != 0):
                return Verdict.accept("execution", effect="tests", failing=sorted(a_tests[1])[:10])
            return Verdict.reject("execution", Category.OUTPUT_DIFFERS, expected_failing=sorted(a_tests[1])[:10],
                                  got_failing=sorted(b_tests[1])[:10])
        if got.exit_class != want.exit_class:
            return Verdict.reject("execution", Category.EXIT_DIFFERS, expected=want.exit_class, got=got.exit_class)
        views = [classify(c) for c in (*expected.tool_calls, *candidate.tool_calls)]
        if len(views) == 2 and all(v.category == "read" for v in views) and views[0].path == views[1].path:
            (a0, a1), (b0, b1) = view_range(views[0].args.get("view_range")), view_range(views[1].args.get("view_range"))
            if max(a0, b0) <= min(a1, b1):
                return Verdict.accept("rule", effect="view", overlap=True)
            return Verdict.reject("rule", Category.RANGE_DISJOINT, expected=[a0, a1], got=[b0, b1])
        spaces = [w for w in (want.workspace, got.workspace) if w]
        a, b = information_lines(a_text, spaces), information_lines(b_text, spaces)
        if not a and not b:
            return Verdict.accept("execution", effect="read", empty=True)
        common = len(a & b)
        jaccard = common / len(a | b)
        covers = bool(a) and common >= 0.9 * len(a) and len(b) <= 3 * len(a)
        details = {"jaccard": round(jaccard, 4), "expected_lines": len(a), "candidate_lines": len(b)}
        if jaccard >= self.read_threshold or covers:
            return Verdict.accept("execution", effect="read", covers=covers, **details)
        return Verdict.reject("execution", Category.RESULTS_DIFFER, threshold=self.read_threshold, **details)


class SWECascade(Cascade):
    """The SWE domain's verifier (see the module docstring).

    Args:
        read_threshold: Jaccard overlap of what two reads show.
        use_tests: Judge edits whose files differ by the record's tests.
        message_mode: Rules for messages to the user.
        judge: An :class:`~verifiers.judge.LLMJudge`, backend or spec; None = no judge.
        judge_cache_dir: On-disk judge cache.
    """

    name = "swe"

    def __init__(self, *, read_threshold: float = 0.5, use_tests: bool = True, message_mode: str = "facts",
                 judge: LLMJudge | JudgeBackend | str | None = None, judge_cache_dir: str | Path | None = None):
        if judge is not None and not isinstance(judge, LLMJudge):
            judge = LLMJudge(judge, cache_dir=judge_cache_dir)
        self.judge = judge
        super().__init__([
            WellFormedStage(),
            SWEShapeStage(MessageRules(message_mode), messages_final=judge is None),
            ExactStage(_swe_key),
            SWERulesStage(CodeEditCascade(execute=False)),
            SWEExecutionStage(read_threshold=read_threshold, use_tests=use_tests),
            JudgeStage(judge, kinds=("message", "tool_call"), rules=(
                "Edits are equivalent when they leave code that behaves the same in the same files; reads when they "
                "show the same code or output.")),
        ])


__all__ = ["PASS_STATUSES", "SWECascade", "grade", "information_lines", "parse_test_log", "run_tests",
           "grading_script", "grade_workspace", "grading_spec"]

"""The terminal cascade against a bash tool on the local sandbox."""

from __future__ import annotations

import pytest
from labelled import BASH_TOOLS, bash

from pivot_envs.domain import GENERIC
from sandboxes.local import LocalSandbox
from verifiers import Category, VerifyContext, make_verifier
from verifiers.judge import CallableBackend
from verifiers.terminal import (
    TerminalCascade,
    fs_changes,
    manifest,
    normalise_command,
    normalise_terminal_output,
    output_order_is_arbitrary,
)

FILES = {"notes.txt": "alpha\nbeta\nerror one\nError two\nerror three\n", "a/b/f": "1\n", "a/bb/f": "2\n",
         "src/app.py": "import util\nprint(util.X)\n", "src/util.py": "X = 3\n"}


@pytest.fixture(scope="module")
def sandbox():
    sb = LocalSandbox(FILES, timeout=2)
    yield sb
    sb.close()


class Counting:
    def __init__(self):
        self.commands = []

    def __call__(self, sb, call):
        self.commands.append(call.arguments["command"])
        return GENERIC.execute(sb, call)


@pytest.fixture
def ctx(sandbox):
    return VerifyContext(tools=BASH_TOOLS, sandbox=sandbox, executor=Counting())


def test_normalisation():
    assert normalise_command("  ls   -la \n\n") == "ls -la"
    assert normalise_command("echo 'a   b'  |  wc") == "echo 'a   b' | wc"
    assert normalise_command("cd x \n  ls") == "cd x\nls"
    assert output_order_is_arbitrary("grep -rn foo .") and output_order_is_arbitrary("find . -type f")
    assert not output_order_is_arbitrary("find . | sort") and not output_order_is_arbitrary("ls -la")
    out = normalise_terminal_output("\x1b[31mok\x1b[0m 2026-01-02T03:04:05Z in 0.25s pid 4242\n/tmp/tmp.abc x\n/w/ws\n\n",
                                    ["/w/ws"])
    assert out == ["ok <TIME> in <DURATION> pid <PID>", "<TMP> x", "<WORKSPACE>"]


@pytest.mark.parametrize("gold, candidate, equivalent, category", [
    ("ls -la", "ls -al", True, "EQUIVALENT"),
    ("grep -c error notes.txt", "grep error notes.txt | wc -l", True, "EQUIVALENT"),
    ("rm -rf a/b", "rm -rf a/bb", False, "FS_EFFECT_DIFFERS"),
    ("cat notes.txt", "cat notes.tx", False, "EXIT_DIFFERS"),
    ("echo hi > g.txt", "printf 'hi\\n' > g.txt", True, "EQUIVALENT"),
    ("find . -name '*.py'", 'find . -type f -name "*.py"', True, "EQUIVALENT"),
    ("echo \"$HOME\"", "echo '$HOME'", False, "OUTPUT_DIFFERS"),
    ("cat notes.txt", "rm notes.txt", False, "FS_EFFECT_DIFFERS"),
    ("ls", "sleep 5; ls", False, "TIMEOUT"),
])
def test_execution_decides(ctx, gold, candidate, equivalent, category):
    verdict = make_verifier("terminal").verify(bash(gold), bash(candidate), ctx)
    assert (verdict.equivalent, verdict.category) == (equivalent, category), verdict
    assert verdict.method == "execution"


def test_caches_are_not_an_effect(ctx):
    # Importing util writes src/__pycache__/util.*.pyc in one fork and not the other.
    verdict = make_verifier("terminal").verify(bash("cd src && python3 -c 'import util; print(util.X)'"),
                                               bash("echo 3"), ctx)
    assert verdict.equivalent, verdict


def test_the_exec_listing_works_like_the_host_walk(sandbox):
    fork = sandbox.fork(1)[0]
    try:
        before = manifest(fork, via_exec=True)
        assert before["notes.txt"].startswith("file:644:") and before["a/b"] == "dir:755"
        assert not any(p.startswith(".tmp") for p in before)
        assert before == manifest(fork)  # one walk (sandboxes.digest), inside the sandbox or on the host
        fork.exec("rm -rf a/b && echo x > new.txt && mkdir -p .cache/z && echo c > .cache/z/c")
        changes = fs_changes(before, manifest(fork, via_exec=True))
        assert set(changes) == {"a/b", "a/b/f", "new.txt"} and changes["a/b"] is None
    finally:
        fork.close()
    v = TerminalCascade(manifest_via_exec=True)
    ctx = VerifyContext(tools=BASH_TOOLS, sandbox=sandbox, executor=GENERIC.execute)
    assert v.verify(bash("rm -rf a/b"), bash("rm -rf a/bb"), ctx).category == Category.FS_EFFECT_DIFFERS
    assert v.verify(bash("rm -rf a/b"), bash("rm -r a/b/"), ctx).equivalent


def test_without_a_sandbox_the_fast_path_is_text_similarity():
    v = make_verifier("terminal")
    ctx = VerifyContext(tools=BASH_TOOLS)
    near_miss = v.verify(bash("rm -rf a/b"), bash("rm -rf a/bb"), ctx)
    assert near_miss.equivalent and near_miss.details["fast_path"]  # the danger execution removes
    assert v.verify(bash("ls -la"), bash("ls -al"), ctx).category == Category.COMMAND_DIFFERS
    assert v.verify(bash("ls -la"), bash("  ls -la\n"), ctx).method == "exact"


def test_shape_rejections(ctx):
    from pivot_envs.actions import Action, ToolCall

    v = make_verifier("terminal")
    assert v.verify(bash("ls"), Action(content="Let me list the files."), ctx).category == Category.WRONG_KIND
    other = Action(tool_calls=(ToolCall.from_parts("python", {"code": "print(1)"}),))
    assert v.verify(bash("ls"), other, ctx).category == Category.UNKNOWN_TOOL
    assert v.verify(bash("ls"), Action(tool_calls=(ToolCall.from_parts("bash", {"cmd": "ls"}),)), ctx).category == Category.ARG_MISSING
    assert v.verify(bash("ls"), Action(tool_calls=(ToolCall.from_parts("bash", {"command": 3}),)), ctx).category == Category.ARG_TYPE
    timed = Action(tool_calls=(ToolCall.from_parts("bash", {"command": "ls", "timeout": 30}),))
    assert v.verify(bash("ls"), timed, ctx).method == "exact"  # timing fields do not count


def test_verify_batch_runs_the_demonstration_once(ctx):
    v = make_verifier("terminal", determinism_check=False)
    cands = [bash(c) for c in ("ls -al", "ls -a -l", "ls", "ls -al")]
    verdicts = v.verify_batch(bash("ls -la"), cands, ctx)
    assert [x.equivalent for x in verdicts] == [True, True, False, True]
    assert ctx.executor.commands.count("ls -la") == 1 and len(ctx.executor.commands) == 1 + 3


def test_volatile_output_goes_to_the_judge(ctx):
    # `date +%N` differs between two runs of the demonstration itself: output is no evidence.
    plain = make_verifier("terminal").verify(bash("date +%N"), bash("date +%N | cat"), ctx)
    assert not plain.equivalent and plain.details.get("nondeterministic")
    judged = TerminalCascade(judge=CallableBackend(lambda p: "Both print nanoseconds. [[A=B]]", "fake"))
    verdict = judged.verify(bash("date +%N"), bash("date +%N | cat"), ctx)
    assert verdict.equivalent and verdict.method == "judge"

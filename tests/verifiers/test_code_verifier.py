"""The code-edit cascade: edits judged by the files they leave, views by ranges, searches by results."""

from __future__ import annotations

import json

import pytest

from pivot_envs.actions import Action, ToolCall
from pivot_envs.domain import GENERIC
from sandboxes import InProcessSandbox
from sandboxes.local import LocalSandbox
from verifiers import Category, VerifyContext, make_verifier
from verifiers.code import apply_editor, classify, normalise_path

SRC = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
FILES = {"pkg/calc.py": SRC, "pkg/__init__.py": "", "README.md": "Calc: add and sub.\n", "tests/test_calc.py":
         "from pkg.calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"}


def ed(**args):
    return Action(tool_calls=(ToolCall.from_parts("str_replace_editor", json.dumps(args)),))


def tool(tool_name, **args):
    return Action(tool_calls=(ToolCall.from_parts(tool_name, json.dumps(args)),))


@pytest.fixture(scope="module")
def ctx():
    sb = LocalSandbox(FILES)
    yield VerifyContext(sandbox=sb, executor=GENERIC.execute)
    sb.close()


GOLD = ed(command="str_replace", path="/testbed/pkg/calc.py", old_str="return a + b", new_str="return b + a")


@pytest.mark.parametrize("candidate, equivalent, method, category", [
    (ed(command="str_replace", path="pkg/calc.py", old_str="    return a + b", new_str="    return b + a"), True, "execution", "EQUIVALENT"),
    (ed(command="str_replace", path="./pkg/calc.py", old_str="return a + b", new_str="return b + a  # commutative"), True, "ast", "EQUIVALENT"),
    (ed(command="str_replace", path="pkg/calc.py", old_str="return a + b", new_str="return (b + a)"), True, "ast", "EQUIVALENT"),
    (ed(command="str_replace", path="pkg/calc.py", old_str="return a + b", new_str="return b - a"), False, "execution", "FS_EFFECT_DIFFERS"),
    (ed(command="str_replace", path="pkg/calc.py", old_str="return a * b", new_str="return b + a"), False, "execution", "EXIT_DIFFERS"),
    (ed(command="str_replace", path="README.md", old_str="add", new_str="plus"), False, "rule", "TARGET_DIFFERS"),
    (ed(command="view", path="pkg/calc.py"), False, "rule", "WRONG_TOOL"),
    (tool("bash", command="sed -i 's/a + b/b + a/' pkg/calc.py"), False, "rule", "WRONG_TOOL"),
])
def test_edits_are_compared_by_resulting_files(ctx, candidate, equivalent, method, category):
    verdict = make_verifier("code").verify(GOLD, candidate, ctx)
    assert (verdict.equivalent, verdict.method, verdict.category) == (equivalent, method, category), verdict


def test_different_editor_commands_can_be_equivalent(ctx):
    gold = ed(command="insert", path="pkg/calc.py", insert_line=6, new_str="\n\ndef mul(a, b):\n    return a * b")
    cand = ed(command="str_replace", path="pkg/calc.py", old_str="    return a - b\n",
              new_str="    return a - b\n\n\ndef mul(a, b):\n    return a * b\n")
    verdict = make_verifier("code").verify(gold, cand, ctx)
    assert verdict.equivalent and verdict.method in ("execution", "ast"), verdict


def test_without_a_sandbox_similarity_decides_and_misses_a_sign():
    v = make_verifier("code")
    near_miss = ed(command="str_replace", path="pkg/calc.py", old_str="return a + b", new_str="return b - a")
    assert v.verify(GOLD, near_miss, VerifyContext()).equivalent  # NeMo's swe_pivot rule cannot see it
    other = ed(command="str_replace", path="pkg/calc.py", old_str="return a + b", new_str="raise NotImplementedError")
    assert not v.verify(GOLD, other, VerifyContext()).equivalent


def test_views_by_overlapping_ranges(ctx):
    v = make_verifier("code")
    gold = ed(command="view", path="pkg/calc.py", view_range=[1, 3])
    assert v.verify(gold, ed(command="view", path="/testbed/pkg/calc.py", view_range=[3, -1]), ctx).equivalent
    assert v.verify(gold, ed(command="view", path="pkg/calc.py"), ctx).equivalent
    assert v.verify(gold, ed(command="view", path="pkg/calc.py", view_range=[4, 6]), ctx).category == Category.RANGE_DISJOINT
    assert v.verify(gold, ed(command="view", path="README.md"), ctx).category == Category.TARGET_DIFFERS


def test_searches_by_overlapping_results(ctx):
    v = make_verifier("code")
    gold = tool("search", pattern="add", path="pkg")
    assert v.verify(gold, tool("bash", command="grep -rl 'add' pkg"), ctx).equivalent
    assert v.verify(gold, tool("bash", command="grep -rn 'def add' pkg/"), ctx).equivalent
    wide = v.verify(gold, tool("bash", command="grep -rl add ."), ctx)
    assert not wide.equivalent and wide.category == Category.RESULTS_DIFFER  # 1 of 3 files in common
    assert v.verify(tool("find_file", name="*.py", path="pkg"), tool("bash", command="find pkg -name '*.py'"), ctx).equivalent


def test_bash_goes_to_the_terminal_cascade(ctx):
    v = make_verifier("code")
    assert v.verify(tool("bash", command="python3 -m pytest -q tests 2>/dev/null | tail -1 ; true"),
                    tool("bash", command="python3 -m pytest -q tests 2>/dev/null | tail -n 1 ; true"), ctx).equivalent
    assert v.verify(tool("bash", command="ls pkg"), tool("bash", command="ls tests"), ctx).category == Category.OUTPUT_DIFFERS
    assert v.verify(tool("submit"), tool("finish"), ctx).equivalent


def test_editor_semantics_on_any_sandbox():
    sb = InProcessSandbox({"files": {"a.py": "x = 1\nx = 1\n"}})
    assert apply_editor(sb, {"command": "str_replace", "path": "a.py", "old_str": "x = 1", "new_str": "y"}).exit_code == 1
    assert apply_editor(sb, {"command": "create", "path": "a.py", "file_text": ""}).exit_code == 1
    assert apply_editor(sb, {"command": "create", "path": "/testbed/b.py", "file_text": "b\n"}).exit_code == 0
    assert apply_editor(sb, {"command": "insert", "path": "b.py", "insert_line": 0, "new_str": "a"}).exit_code == 0
    assert sb.read_file("b.py") == b"a\nb\n"
    assert "2\tb" in apply_editor(sb, {"command": "view", "path": "b.py", "view_range": [2, -1]}).stdout
    assert apply_editor(sb, {"command": "delete", "path": "b.py"}).exit_code == 1
    assert normalise_path("/workspace/./src//a.py") == "src/a.py"
    assert classify(ToolCall.from_parts("bash", {"command": "git grep foo"})).category == "search"

"""SWE importers on hand-made files in each public format: SWE-bench instances, SWE-agent .traj, OpenHands events."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pivot_envs import TrajectoryEnv
from pivot_envs.actions import Action
from pivot_envs.domains.swe import DOMAIN
from pivot_envs.domains.swe.importers import (
    SWEImportError,
    convert,
    from_swebench,
    main,
    parse_swe_agent_action,
)
from pivot_envs.domains.terminal import sandbox as terminal_sandbox
from pivot_envs.trajectory import record_from_dict

DATA = Path(__file__).resolve().parents[1] / "data" / "swe"
OPS = 'def clamp(x, lo, hi):\n    """`x` limited to [lo, hi]."""\n    return max(lo, min(x, hi - 1))\n'
TESTS = ("import unittest\n\nfrom calc.ops import clamp\n\n\nclass TestOps(unittest.TestCase):\n"
         "    def test_inside(self):\n        self.assertEqual(clamp(5, 0, 10), 5)\n\n"
         "    def test_below(self):\n        self.assertEqual(clamp(-5, 0, 10), 0)\n")


#: The grading command runs with run_check's isolated python3 (-I -S): it puts the workspace on sys.path itself,
#: after the standard library (pytest does the same on its own).
UNITTEST = ("python3 -c 'import sys, unittest; sys.path.append(\".\"); "
            "unittest.main(module=None, argv=[\"t\", \"-v\", \"tests.test_ops\"])'")


@pytest.fixture
def checkout(tmp_path) -> tuple[str, str]:
    """A git checkout of the instance's repository at its base commit: (directory, commit)."""
    repo = tmp_path / "calc"
    (repo / "calc").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "calc" / "__init__.py").write_text("")
    (repo / "calc" / "ops.py").write_text(OPS)
    (repo / "tests" / "__init__.py").write_text("")
    (repo / "tests" / "test_ops.py").write_text(TESTS)

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@e", *args],
                              check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "base")
    return str(repo), git("rev-parse", "HEAD")


def test_swebench_rows_become_records_with_tests_and_a_world():
    records = convert(DATA / "swebench_instances.jsonl", "swebench", image="sweb.eval.x86_64.example__calc-1")
    assert [r["id"] for r in records] == ["example__calc-1", "example__calc-2"]
    first, second = records
    tests = first["task"]["tests"]
    assert tests["fail_to_pass"] == ["tests.test_ops.TestOps.test_upper_bound_included"]  # decoded from JSON text
    assert second["task"]["tests"]["pass_to_pass"] == ["tests.test_ops.TestOps.test_inside"]  # lists kept
    assert tests["test_files"] == ["tests/test_ops.py"] and tests["runner"] == "command"
    assert first["env"]["image"] == "sweb.eval.x86_64.example__calc-1" and first["env"]["setup"] == ["cp -a /testbed/. ."]
    call = record_from_dict(first).action(0).tool_calls[0]
    assert call.name == "bash" and call.arguments["command"].startswith("git apply -v <<'PIVOTRL_PATCH'\ndiff --git")


def test_swebench_errors_say_what_is_wrong():
    with pytest.raises(SWEImportError, match="missing field"):
        from_swebench({"instance_id": "x"}, image="i")
    row = json.loads((DATA / "swebench_instances.jsonl").read_text().splitlines()[0])
    with pytest.raises(SWEImportError, match="JSON list of test ids"):
        from_swebench({**row, "FAIL_TO_PASS": "test_a"}, image="i")
    with pytest.raises(SWEImportError, match="exactly one of repo_dir"):
        from_swebench(row)


def test_swebench_gold_patch_resolves_the_instance_from_a_checkout(checkout, monkeypatch, tmp_path):
    monkeypatch.setattr(terminal_sandbox, "BACKEND", "local")
    repo, commit = checkout
    row = json.loads((DATA / "swebench_instances.jsonl").read_text().splitlines()[0])
    row["base_commit"] = commit
    (tmp_path / "one.jsonl").write_text(json.dumps(row) + "\n")
    [record] = convert(tmp_path / "one.jsonl", "swebench", repo_dir=repo, test_command=UNITTEST)
    traj = record_from_dict(record)
    env = TrajectoryEnv([traj], domain="swe", mode="episode")
    try:
        env.reset(options={"trajectory": traj.id, "turn": 0})
        start = env.sandbox.fork(1)[0]
        try:
            assert DOMAIN.episode_success(traj, start, traj.messages) is False  # the bug is there
        finally:
            start.close()
        _, _, _, _, info = env.step(traj.action(0))
        assert info["tool_outputs"][0].strip() == traj.messages[3]["content"].strip()  # replay matches the record
        _, reward, terminated, _, info = env.step(traj.action(1))
        assert terminated and reward == 1.0 and info["success"] is True
    finally:
        env.close()
    # A checkout at another commit is refused with the command that fixes it.
    row["base_commit"] = "0" * 40
    (tmp_path / "two.jsonl").write_text(json.dumps(row) + "\n")
    [other] = convert(tmp_path / "two.jsonl", "swebench", repo_dir=repo)
    with pytest.raises(ValueError, match="checkout"):
        DOMAIN.make_sandbox(record_from_dict(other))


def test_swe_agent_traj_maps_editor_bash_and_submit():
    [record] = convert(DATA / "example__calc-1.traj", "swe-agent", repo_dir="/src/calc", base_commit="abc")
    traj = record_from_dict(record)
    assert traj.id == "example__calc-1" and traj.messages[1]["content"].endswith("upper bound should be included.")
    calls = [traj.action(k).tool_calls for k in range(traj.num_turns)]
    assert calls[0][0].name == "bash" and calls[0][0].arguments == {"command": "grep -rn 'def clamp' /testbed"}
    assert calls[1][0].arguments == {"command": "view", "path": "/testbed/calc/ops.py", "view_range": [1, 3]}
    assert calls[2][0].arguments == {"command": "str_replace", "path": "/testbed/calc/ops.py",
                                     "old_str": "return max(lo, min(x, hi - 1))", "new_str": "return max(lo, min(x, hi))"}
    assert calls[-1] == () and traj.messages[-1]["content"] == "Done."  # submit closes with the thought
    assert traj.tool_outputs(0) == {"call_0": "/testbed/calc/ops.py:1:def clamp(x, lo, hi):\n"}
    assert record["env"]["repo_dir"] == "/src/calc" and record["metadata"]["exit_status"] == "submitted"
    assert parse_swe_agent_action("submit") is None
    assert parse_swe_agent_action("str_replace_editor undo_edit /testbed/a.py") == (
        "str_replace_editor", {"command": "undo_edit", "path": "/testbed/a.py"})


def test_openhands_events_map_run_read_edit_think_finish(tmp_path):
    [record] = convert(DATA / "openhands_example__calc-1.json", "openhands", image="calc:base")
    traj = record_from_dict(record)
    assert [m["role"] for m in traj.messages] == ["system", "user", "assistant", "tool", "assistant", "tool",
                                                  "assistant", "tool", "assistant"]
    run, read, edit = (traj.action(k).tool_calls[0] for k in range(3))
    assert run.arguments == {"command": "grep -rn 'def clamp' ."} and traj.tool_outputs(0) == {
        "call_4": "./calc/ops.py:1:def clamp(x, lo, hi):"}
    assert traj.messages[2]["reasoning_content"] == "I should look at the code first."
    assert read.arguments == {"command": "view", "path": "/workspace/calc/ops.py"}
    assert edit.arguments["command"] == "str_replace" and edit.arguments["new_str"] == "return max(lo, min(x, hi))"
    assert traj.action(3) == Action(content="Fixed clamp in calc/ops.py so the upper bound is included.")
    events = json.loads((DATA / "openhands_example__calc-1.json").read_text())
    events[8]["args"] = {"path": "/workspace/calc/ops.py", "content": "whole new file"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(events))
    with pytest.raises(SWEImportError, match="LLM-based edits"):
        convert(bad, "openhands", image="calc:base")


def test_command_line(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert main(["--from", "openhands", str(DATA / "openhands_example__calc-1.json"), str(out), "--image", "i"]) == 0
    assert out.read_text().count("\n") == 1
    assert main(["--from", "swe-agent", str(DATA / "openhands_example__calc-1.json"), str(out), "--image", "i"]) == 2
    assert "trajectory" in capsys.readouterr().out

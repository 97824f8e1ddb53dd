"""The ``swe`` cascade and SWE-bench grading: labelled pairs (precision >= 0.95 on Docker), edit equivalence,
reads by their information, malformed actions, and reward hacking of the episode outcome."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from pivot_envs import TrajectoryEnv, get_domain
from pivot_envs.actions import Action, ToolCall
from pivot_envs.domains.terminal import sandbox as terminal_sandbox
from verifiers import make_verifier
from verifiers.core import Category
from verifiers.swe import failing_tests, grade, information_lines, parse_test_log

PAIRS = Path(__file__).resolve().parents[1] / "data" / "swe_pairs.jsonl"


def load_pairs() -> list[dict]:
    with open(PAIRS) as f:
        return [json.loads(line) for line in f if line.strip()]


def score_pairs(rows: list[dict], records) -> list[tuple[dict, object]]:
    """One restore per (trajectory, turn), its candidates judged in one batch (the expected action runs once)."""
    env = TrajectoryEnv(records, domain="swe")
    verifier = make_verifier("swe")
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["trajectory_id"], row["turn"]].append(row)
    out = []
    try:
        for (traj, turn), members in groups.items():
            env.reset(options={"trajectory": traj, "turn": turn})
            actions = [Action.coerce(m["action"]) for m in members]
            verdicts = verifier.verify_batch(env.expected_action(), actions, env.verify_context())
            out += list(zip(members, verdicts, strict=True))
    finally:
        env.close()
    return out


def precision_recall(scored) -> tuple[float, float, list[str]]:
    tp = sum(1 for r, v in scored if r["label"] and v.equivalent)
    fp = [f"{r['trajectory_id']}@{r['turn']}: {r['note']} ({v.category})" for r, v in scored if not r["label"] and v.equivalent]
    fn = [f"{r['trajectory_id']}@{r['turn']}: {r['note']} ({v.category} {v.details})" for r, v in scored
          if r["label"] and not v.equivalent]
    precision = tp / (tp + len(fp)) if tp + len(fp) else 1.0
    recall = tp / (tp + len(fn)) if tp + len(fn) else 1.0
    return precision, recall, fp + fn


@pytest.fixture(scope="module")
def records():
    return get_domain("swe").load(strict=True)


def test_pairs_file_is_balanced_and_names_bundled_turns(records):
    rows = load_pairs()
    by_id = {r.id: r for r in records}
    assert len(rows) >= 60
    share = sum(r["label"] for r in rows) / len(rows)
    assert 0.35 <= share <= 0.65, share
    for row in rows:
        assert set(row) == {"trajectory_id", "turn", "action", "label", "note"}
        assert 0 <= row["turn"] < by_id[row["trajectory_id"]].num_turns
    notes = " ".join(r["note"] for r in rows)
    for kind in ("another correct fix", "git grep", "grep -rn", "editor", "edits the failing test", "deletes the failing test",
                 "no-op", "another file", "wrong fix"):
        assert kind in notes, kind


@pytest.mark.docker
def test_labelled_pairs_on_docker(records, monkeypatch):
    monkeypatch.setattr(terminal_sandbox, "BACKEND", "docker")
    scored = score_pairs(load_pairs(), records)
    precision, recall, misses = precision_recall(scored)
    print(f"\nswe pairs on Docker: n={len(scored)} precision={precision:.3f} recall={recall:.3f}")
    for m in misses:
        print("  miss:", m)
    assert precision >= 0.95, misses
    assert recall >= 0.8, misses


# -- grading and parsing (no sandbox) ------------------------------------------------------------------


def test_grade_follows_swebench():
    status = {"a": "PASSED", "b": "XFAIL", "c": "FAILED", "d": "ERROR", "e": "SKIPPED"}
    assert grade(status, ["a", "b"], [])["resolved"]
    assert not grade(status, ["a"], ["c"])["resolved"]
    assert not grade(status, ["missing"], [])["resolved"]  # a test that did not run is a failure
    assert not grade(status, ["e"], [])["resolved"]  # skipped is not passed
    report = grade(status, ["a", "d"], ["b"])
    assert report["FAIL_TO_PASS"] == {"success": ["a"], "failure": ["d"]}


def test_parse_test_log_reads_pytest_and_unittest():
    log = ("PASSED tests/test_a.py::test_one\nFAILED tests/test_a.py::test_two - AssertionError\n"
           "XFAIL tests/test_a.py::test_three\n"
           "test_x (tests.test_b.TestB.test_x) ... ok\ntest_y (tests.test_b.TestB.test_y) ... FAIL\n")
    assert parse_test_log(log) == {"tests/test_a.py::test_one": "PASSED", "tests/test_a.py::test_two": "FAILED",
                                   "tests/test_a.py::test_three": "XFAIL", "tests.test_b.TestB.test_x": "PASSED",
                                   "tests.test_b.TestB.test_y": "FAILED"}


def test_information_lines_strip_numbering_and_grep_prefixes():
    viewed = "Here's the result of running `cat -n` on a.py:\n     1\tdef f():\n     2\t    return 1\n"
    grepped = "./a.py:1:def f():\na.py:2:    return 1\n"
    assert information_lines(viewed) == information_lines(grepped) == {"def f():", "return 1"}
    assert failing_tests("t (m.C.t) ... ok\nu (m.C.u) ... FAIL\nFAILED (failures=1)") == (2, frozenset({"m.C.u"}))
    assert failing_tests("hello") is None


# -- on the local backend ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_env(records):
    import pivot_envs.domains.terminal.sandbox as shell

    old, shell.BACKEND = shell.BACKEND, "local"
    env = TrajectoryEnv(records[:5], domain="swe")
    yield env
    env.close()
    shell.BACKEND = old


def edit_turn(traj) -> int:
    for k in range(traj.num_turns):
        a = traj.action(k)
        if a.tool_calls and ("str_replace" in json.dumps(a.tool_calls[0].arguments) or "sed -i" in
                             json.dumps(a.tool_calls[0].arguments) or "python3 - <<" in json.dumps(a.tool_calls[0].arguments)):
            return k
    raise AssertionError(f"{traj.id} has no edit turn")


def editor(**arguments) -> Action:
    return Action(tool_calls=(ToolCall.from_parts("str_replace_editor", arguments),))


def bash(command: str) -> Action:
    return Action(tool_calls=(ToolCall.from_parts("bash", {"command": command}),))


def test_malformed_and_unknown_actions_score_zero_with_a_reason(local_env):
    traj = local_env.trajectories["swe-000000"]
    local_env.reset(options={"trajectory": traj.id, "turn": edit_turn(traj)})
    bad = local_env.verify('<tool_call>{"name": "bash", "arguments": {"command": </tool_call>')
    assert bad.score == 0 and bad.method == "error" and bad.category in (Category.BAD_JSON, Category.BAD_FORMAT)
    unknown = local_env.verify(Action(tool_calls=(ToolCall.from_parts("open_file", {"path": "x"}),)))
    assert unknown.score == 0 and unknown.category == Category.UNKNOWN_TOOL
    # An editor call with a bad sub-command does nothing, so it is not the demonstrated edit.
    wrong = local_env.verify(editor(command="replace_all", path="ledger/counting.py"))
    assert wrong.score == 0 and wrong.category == Category.FS_EFFECT_DIFFERS


def test_reward_hacking_edits_score_zero(local_env, records):
    from pivot_envs.domains.swe.repos import make_task

    traj = local_env.trajectories["swe-000000"]
    task = make_task(traj.metadata["index"], traj.metadata["seed"])
    local_env.reset(options={"trajectory": traj.id, "turn": edit_turn(traj)})
    test_path = "tests/" + task.test_module.split(".")[-1] + ".py"
    expected = str(sum(range(1, 7)))  # what the buggy code returns for the F2P input of this record (21)
    hacks = {
        "test rewritten to expect the bug": bash(f"sed -i 's/self.assertEqual(total_upto(7), 28)/self.assertEqual(total_upto(7), {expected})/' {test_path}"),
        "test deleted": bash(f"rm {test_path}"),
        "unittest.py planted": bash("printf 'import sys\\nsys.exit(0)\\n' > unittest.py"),
        "sitecustomize planted": bash("printf 'import os\\nos._exit(0)\\n' > sitecustomize.py"),
        "exit 0 wrapper": bash("printf '#!/bin/sh\\nexit 0\\n' > python3 && chmod +x python3"),
    }
    verdicts = local_env.unwrapped.verifier_for(traj).verify_batch(local_env.expected_action(), list(hacks.values()),
                                                                    local_env.verify_context())
    for name, verdict in zip(hacks, verdicts, strict=True):
        assert verdict.score == 0, (name, verdict)


def test_the_verifier_builds_by_name_in_a_fresh_process():
    # verifiers.swe imports pivot_envs, which registers the SWE domain, which uses verifiers.swe: no import cycle
    # may drop the domain or the verifier, whichever is imported first.
    import subprocess
    import sys

    code = ("from verifiers import make_verifier; import pivot_envs; "
            "print(make_verifier('swe').name, pivot_envs.get_domain('swe').env_id)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["swe", "pivot/SWE-v0"], out.stderr[-2000:]
    assert "skipping domain plugin" not in out.stderr

"""pivot/SWE-v0: bundled repositories and expert, the editor tool, episode outcomes and their integrity, Docker."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

import pivot_envs
from pivot_envs import TrajectoryEnv, check_trajectory_env, get_domain
from pivot_envs.actions import Action, ToolCall
from pivot_envs.domains.swe import DOMAIN, success
from pivot_envs.domains.swe.editor import EDITOR_SCRIPT, editor_command, run_editor
from pivot_envs.domains.swe.expert import generate
from pivot_envs.domains.swe.repos import FAMILIES, apply_fix, make_task
from pivot_envs.domains.terminal import sandbox as terminal_sandbox
from sandboxes.core import ExecResult
from sandboxes.local import LocalSandbox
from verifiers.swe import grade_workspace


@pytest.fixture(scope="module")
def records():
    return get_domain("swe").load(strict=True)


@pytest.fixture(scope="module")
def local():
    old, terminal_sandbox.BACKEND = terminal_sandbox.BACKEND, "local"
    yield
    terminal_sandbox.BACKEND = old


def test_domain_is_registered_with_its_verifier():
    assert "pivot/SWE-v0" in gym.registry
    assert pivot_envs.get_domain("pivot/SWE-v0") is DOMAIN
    from verifiers import make_verifier

    assert make_verifier(DOMAIN.verifier).name == "swe"


def test_bundled_file_is_generate_30_seed_0(records):
    # The generator is deterministic: the first records regenerate byte for byte.
    fresh = generate(2, seed=0)
    assert [json.dumps(r, sort_keys=True) for r in fresh] == [json.dumps(r.to_dict(), sort_keys=True) for r in records[:2]]
    assert len(records) == 30


def test_records_are_varied_and_well_formed(records):
    families = {r.metadata["family"] for r in records}
    assert families == set(FAMILIES)
    assert len({r.metadata["variant"] for r in records}) >= 9
    turns = [r.num_turns for r in records]
    assert min(turns) >= 4 and max(turns) <= 9
    calls = [json.dumps(r.action(k).tool_calls[0].arguments) for r in records for k in range(r.num_turns)
             if r.action(k).tool_calls]
    names = {r.action(k).tool_calls[0].name for r in records for k in range(r.num_turns) if r.action(k).tool_calls}
    assert names == {"bash", "str_replace_editor"}
    for how in ("str_replace", "\"insert\"", "sed -i", "python3 - <<", "git grep -n", "grep -rn", "view_range"):
        assert any(how in c for c in calls), how
    for r in records:
        spec = r.task["tests"]
        assert spec["fail_to_pass"] and spec["pass_to_pass"] and not set(spec["fail_to_pass"]) & set(spec["pass_to_pass"])
        assert all(p.startswith("tests/") for p in spec["files"])
        assert r.env["sandbox"] == "docker" and r.env["workdir"] == "/workspace"
        assert not r.messages[-1].get("tool_calls")  # finishes with a message
    # Several equivalent fixes across records of one variant.
    fixes = {(r.metadata["variant"], r.metadata["fix"]) for r in records}
    assert len(fixes) > len({v for v, _ in fixes})


def test_every_fix_of_every_task_resolves_it_and_the_bug_does_not():
    for i in range(len(FAMILIES) * 2):
        task = make_task(i)
        base = LocalSandbox(files=task.files)
        spec = {"fail_to_pass": task.fail_to_pass, "pass_to_pass": task.pass_to_pass, "files": task.test_files,
                "dirs": ["tests"]}
        try:
            resolved, report = grade_workspace(base, spec)
            assert not resolved and not report["FAIL_TO_PASS"]["success"] and not report["PASS_TO_PASS"]["failure"]
            for fix in task.fixes:
                fixed = LocalSandbox(files=apply_fix(task.files, fix))
                try:
                    assert grade_workspace(fixed, spec)[0], (task.variant, fix)
                finally:
                    fixed.close()
        finally:
            base.close()


# -- the editor ----------------------------------------------------------------------------------------


def test_editor_commands_and_undo():
    with LocalSandbox(files={"pkg/a.py": "x = 1\ny = 2\n"}) as sb:
        assert run_editor(sb, {"command": "view", "path": "/workspace/pkg/a.py", "view_range": [2, 2]}).stdout \
            .endswith("     2\ty = 2\n")
        assert run_editor(sb, {"command": "str_replace", "path": "pkg/a.py", "old_str": "y = 2", "new_str": "y = 3"}).ok
        assert run_editor(sb, {"command": "insert", "path": "pkg/a.py", "insert_line": 0, "new_str": "# top"}).ok
        assert sb.read_file("pkg/a.py") == b"# top\nx = 1\ny = 3\n"
        assert run_editor(sb, {"command": "undo_edit", "path": "pkg/a.py"}).ok
        assert sb.read_file("pkg/a.py") == b"x = 1\ny = 3\n"
        assert run_editor(sb, {"command": "create", "path": "pkg/b.py", "file_text": "z = 0\n"}).ok
        again = run_editor(sb, {"command": "create", "path": "pkg/b.py", "file_text": "other"})
        assert again.exit_code == 1 and "already exists" in again.stderr
        twice = run_editor(sb, {"command": "str_replace", "path": "pkg/a.py", "old_str": "=", "new_str": ":"})
        assert twice.exit_code == 1 and "occurs 2 times" in twice.stderr


def test_editor_refuses_paths_outside_the_workspace_and_odd_arguments():
    with LocalSandbox(files={"a.py": "x\n"}) as sb:
        sb.exec("ln -s / escape")
        for path in ("../etc/passwd", "/etc/passwd", "escape/etc/passwd", ".git/config", ""):
            result = run_editor(sb, {"command": "view", "path": path})
            assert result.exit_code == 1 and result.stderr.startswith("Error:"), (path, result)
        odd = run_editor(sb, {"command": "view", "path": "a.py", "view_range": "1-2"})
        assert odd.exit_code == 1 and "view_range" in odd.stderr
        assert run_editor(sb, {"command": "explode", "path": "a.py"}).exit_code == 1
        # Shell metacharacters in arguments are data: nothing runs.
        run_editor(sb, {"command": "create", "path": "b.py", "file_text": "$(touch pwned)`touch pwned`'; touch pwned"})
        assert not sb.exec("test -e pwned").ok


def test_editor_arguments_never_reach_the_shell_and_big_payloads_are_refused():
    command = editor_command({"command": "create", "path": "x", "file_text": "'; rm -rf / #"})
    assert isinstance(command, str) and "rm -rf" not in command.replace(EDITOR_SCRIPT, "")
    too_big = editor_command({"command": "create", "path": "x", "file_text": "a" * 70_000})
    assert isinstance(too_big, ExecResult) and too_big.exit_code == 1 and "smaller parts" in too_big.stderr


def test_domain_execute_turns_bad_calls_into_results(local):
    with LocalSandbox(files={"a.py": "x\n"}) as sb:
        text, result = DOMAIN.execute(sb, ToolCall.from_parts("str_replace_editor", {"command": "view", "path": "nope.py"}))
        assert result.exit_code == 1 and "does not exist" in text
        text, result = DOMAIN.execute(sb, ToolCall.from_parts("rm_rf", {}))
        assert result.exit_code == 1 and "str_replace_editor" in text


# -- episodes and their integrity -----------------------------------------------------------------------


def final_world(record, extra: str | None = None):
    """The record's world after its demonstrated calls (and ``extra`` bash), on the local backend."""
    sb = DOMAIN.make_sandbox(record)
    for k in range(record.num_turns):
        for call in record.action(k).tool_calls:
            DOMAIN.execute(sb, call)
    if extra:
        sb.exec(extra)
    return sb


def test_demonstrations_succeed_and_the_untouched_repo_fails(records, local):
    record = records[0]
    start = DOMAIN.make_sandbox(record)
    end = final_world(record)
    try:
        assert success(record, end, record.messages) is True
        assert success(record, start, record.messages) is False
        assert success(record, None, record.messages) is False
    finally:
        start.close()
        end.close()


@pytest.mark.parametrize("hack", [
    "sed -i 's/self.assert/pass  # self.assert/' tests/test_counting.py",  # tests edited to pass
    "rm -f tests/test_counting.py",  # the failing test deleted
    "rm -rf tests && mkdir tests && touch tests/__init__.py",
    "printf 'import sys\\nsys.exit(0)\\n' > unittest.py",  # a planted unittest
    "printf 'import os\\nos._exit(0)\\n' > sitecustomize.py",  # a planted site hook
    "printf '#!/bin/sh\\nexit 0\\n' > python3 && chmod +x python3 && printf 'exit 0\\n' > .bashrc",  # exit 0 wrappers
    "printf 'import os\\nos._exit(0)\\n' >> ledger/__init__.py",  # exits before the runner reports
    "printf 'import unittest\\nunittest.TestCase.run = lambda self, result=None: None\\n' >> ledger/__init__.py",
])
def test_reward_hacks_do_not_succeed(records, local, hack):
    record = records[0]  # ledger/counting.py, tests/test_counting.py
    assert record.env["files"].get("ledger/counting.py")
    sb = DOMAIN.make_sandbox(record)
    try:
        sb.exec(hack)
        assert success(record, sb, record.messages) is False, hack
    finally:
        sb.close()


def test_random_policy_scores_near_zero_and_replay_full(records, local):
    env = TrajectoryEnv(records[:3], domain="swe")
    try:
        for record in records[:3]:
            k = next(k for k in range(record.num_turns) if record.action(k).tool_calls)
            env.reset(options={"trajectory": record.id, "turn": k})
            assert env.verify(env.expected_action()).score == 1.0
            assert env.verify(Action(content="I am done.")).score == 0.0
    finally:
        env.close()


# -- Docker ------------------------------------------------------------------------------------------------


@pytest.mark.docker
def test_a_few_records_pass_the_checker_on_docker(records, monkeypatch):
    pytest.importorskip("sandboxes.docker")
    monkeypatch.setattr(terminal_sandbox, "BACKEND", "docker")
    picked = [records[0], records[4]]  # an off-by-one fix and a two-edit refactor
    env = TrajectoryEnv(picked, domain="swe")
    try:
        report = check_trajectory_env(env, gym_checks=False, world_turns=1)
    finally:
        env.close()
    assert report.trajectories == 2 and report.turns == sum(r.num_turns for r in picked)
    assert report.perturbations >= 1


@pytest.mark.docker
def test_reward_hacks_fail_on_docker(records, monkeypatch):
    monkeypatch.setattr(terminal_sandbox, "BACKEND", "docker")
    record = records[0]
    end = final_world(record)
    try:
        assert success(record, end, record.messages) is True
        end.exec("rm -f tests/test_counting.py && printf 'import sys\\nsys.exit(0)\\n' > unittest.py")
        end.exec("sed -i 's/range(n + 1)/range(n)/' ledger/counting.py")
        assert success(record, end, record.messages) is False
    finally:
        end.close()

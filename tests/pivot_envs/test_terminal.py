"""The terminal domain: its expert, its bundled trajectories, its sandboxes and its episode outcome.

Tests that run commands are parametrized over the sandbox backends: ``local`` always runs; ``docker``
is marked and skips without a daemon (tests/conftest.py), so the same checks run on containers in CI.
"""

from __future__ import annotations

import json
import logging
import re
import struct
from collections import Counter

import pytest

from pivot_envs import TrajectoryEnv, load_trajectories
from pivot_envs.checker import check_trajectory_env
from pivot_envs.domains.terminal import DOMAIN, expert, run_success_script, success
from pivot_envs.domains.terminal import sandbox as terminal_sandbox
from pivot_envs.domains.terminal.sandbox import make_sandbox
from pivot_envs.trajectory import Trajectory, record_from_dict
from sandboxes.digest import git_index_entries
from sandboxes.local import LocalSandbox

N_BUNDLED = 60


@pytest.fixture(scope="module")
def records() -> list[Trajectory]:
    return load_trajectories(DOMAIN.data_path(), strict=True).trajectories


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def backend(request, monkeypatch) -> str:
    """Which sandbox the domain's factory builds for the test (``auto`` would pick Docker when it runs)."""
    if request.param == "docker":
        pytest.importorskip("sandboxes.docker")
    monkeypatch.setattr(terminal_sandbox, "BACKEND", request.param)
    return request.param


def per_type(records: list[Trajectory], k: int) -> list[Trajectory]:
    """The first ``k`` records of every task type (bundled records cycle through the types)."""
    seen: Counter[str] = Counter()
    out = []
    for r in records:
        t = r.metadata["task_type"]
        if seen[t] < k:
            seen[t] += 1
            out.append(r)
    return out


def bash(command: str) -> dict:
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": "call_x", "type": "function",
                            "function": {"name": "bash", "arguments": json.dumps({"command": command})}}]}


def commands(records: list[Trajectory]) -> list[str]:
    return [c.arguments["command"] for r in records for t in range(r.num_turns) for c in r.action(t).tool_calls]


# ---------------------------------------------------------------------------------------------------
# The expert and the bundled file


def test_generator_is_deterministic():
    a, b = expert.generate(8, seed=3), expert.generate(8, seed=3)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys() and len(x["messages"]) == len(y["messages"]), x["id"]
        for m, n in zip(x["messages"], y["messages"], strict=True):
            assert m == n, x["id"]
        assert json.dumps(x) == json.dumps(y)
    assert json.dumps(a[:2]) != json.dumps(expert.generate(2, seed=4))


def test_bundled_file_is_generate_60_seed_0(records):
    assert DOMAIN.data_path().is_file() and DOMAIN.data_path().stat().st_size < 400_000
    assert len(records) == N_BUNDLED and len({r.id for r in records}) == N_BUNDLED
    fresh = expert.generate(N_BUNDLED, seed=0)
    assert [r.to_dict() for r in records] == [record_from_dict(d).to_dict() for d in fresh]


def test_records_are_varied_and_well_formed(records):
    types = Counter(r.metadata["task_type"] for r in records)
    assert set(types) == set(expert.TASK_TYPES) and min(types.values()) >= 6
    variants = {(r.metadata["task_type"], r.metadata["variant"]) for r in records}
    assert variants == {(t, v) for t, (_, vs) in expert.TASKS.items() for v in vs}
    cmds = commands(records)
    # Equivalent ways to do the same step all appear.
    for alternatives in (("grep -c", "| wc -l"), ("sed -i", "python3 -c", "python3 - <<"), ("git checkout -b", "git switch -c"),
                         ("cat > ", "printf '%s\\n'"), ("cat ", "head -n"), ("| sort -u", "| uniq"),
                         ("git commit -q -a", "git commit -qam", "git add ")):
        found = [a for a in alternatives if any(a in c for c in cmds)]
        assert len(found) >= 2, (alternatives, found)
    assert sum(any(mode in c for c in cmds) for mode in ("chmod +x", "chmod 755", "chmod u+x", "chmod a+x")) >= 3
    assert any(m.get("reasoning_content") for r in records for m in r.messages)
    first = [r.action(0).tool_calls[0].arguments["command"] for r in records]
    looks = sum(c.split()[0] in ("ls", "cat", "head", "tail", "grep", "find", "git", "wc", "cut", "awk") and ">" not in c
                for c in first)
    assert 0.3 * len(records) < looks < len(records)  # an inspection step first on some records, not all
    for r in records:
        assert 3 <= r.num_turns <= 8, r.id
        assert r.tools == [expert.BASH_TOOL] and r.domain == "terminal"
        assert r.env["sandbox"] == "docker" and r.env["image"] == expert.IMAGE and r.env["workdir"] == "/workspace"
        assert r.task["success"]["kind"] == "script" and r.task["success"]["script"].strip()
        assert r.messages[0]["role"] == "system" and r.messages[1]["role"] == "user"
        assert r.messages[-1]["role"] == "assistant" and not r.messages[-1].get("tool_calls")
        for t in range(r.num_turns - 1):
            calls = r.action(t).tool_calls
            assert len(calls) == 1 and calls[0].name == "bash" and set(calls[0].arguments) == {"command"}, (r.id, t)
        assert ("GIT_AUTHOR_DATE" in r.messages[0]["content"]) == (r.metadata["task_type"] == "git")


def test_outputs_and_commands_carry_nothing_host_specific(records):
    """Recorded outputs must be what any sandbox prints: no paths, users, times or ``ls -l`` columns."""
    host = re.compile(r"(^|[\s'\"])/(tmp|workspace|home)\b|pivotrl-local|\b(nobody|root|65534)\b")
    for r in records:
        for m in r.messages:
            if m["role"] == "tool":
                assert not host.search(m["content"]), (r.id, m["content"])
    risky = re.compile(r"(^|[\s;&|(])(pwd|date|du|stat|ls -[a-zA-Z1]*[la]|mv -v)\b|\$HOME|~/")
    for c in commands(records):
        assert not risky.search(c), c
        if "grep -r" in c and ">" not in c and "| xargs" not in c:
            assert "| sort" in c or "def " in c, c  # grep -r walks in directory order (one hit is fine)
        if c.startswith("find") and "| sort" not in c:
            assert any(k in c for k in ("-delete", "-exec", "| wc -l", "| while", "| xargs")), c
        if "git commit" in c:
            assert "GIT_AUTHOR_DATE=" in c and "GIT_COMMITTER_DATE=" in c and " -q" in c, c


# ---------------------------------------------------------------------------------------------------
# Replay, outcome and the environment contract


def test_replay_reproduces_every_output_and_the_outcome(backend, records):
    """Byte-identical outputs on replay; the success script fails at turn 0 and passes at the end.

    (Generation checks the script both ways on every record; this replays a subset on each backend.)
    """
    subset = per_type(records, 2 if backend == "local" else 1)
    for r in subset:
        sb = DOMAIN.make_sandbox(r)
        try:
            assert sb.backend == backend
            assert not run_success_script(r, sb).ok, f"{r.id}: the task is already done at turn 0"
            for turn in range(r.num_turns - 1):
                recorded = r.tool_outputs(turn)
                for call in r.action(turn).tool_calls:
                    output, _ = DOMAIN.execute(sb, call)
                    assert output == recorded[call.id], (r.id, turn, call.arguments["command"])
            before = sb.state_digest()
            result = run_success_script(r, sb)
            assert result.ok, (r.id, result.stdout, result.stderr)
            assert success(r, sb, r.messages) is True
            assert sb.state_digest() == before  # the script ran in a fork
        finally:
            sb.close()


def test_every_turn_passes_the_env_checker(backend, records):
    # 12 records cover every task type; Docker (a commit per snapshot, slow) checks a git record and one more.
    subset = records[:12] if backend == "local" else [records[expert.TASK_TYPES.index("git")], records[0]]
    for r in subset:
        env = TrajectoryEnv([r], domain=DOMAIN)
        report = check_trajectory_env(env, gym_checks=r is subset[0])
        assert report.turns == r.num_turns
        env.close()


def test_one_env_over_many_records_passes_the_checker(records, monkeypatch):
    monkeypatch.setattr(terminal_sandbox, "BACKEND", "local")
    env = TrajectoryEnv(per_type(records, 1), domain=DOMAIN)
    try:
        check_trajectory_env(env)
    finally:
        env.close()


def test_wrong_or_missing_work_fails_the_episode(backend, records):
    for r in per_type(records, 1) if backend == "local" else records[:2]:
        env = TrajectoryEnv([r], domain=DOMAIN, mode="episode")
        try:
            env.reset(options={"trajectory": r.id, "turn": 0})
            _, reward, terminated, _, info = env.step(bash("touch unrelated.txt && ls"))
            assert not terminated and info["tool_outputs"][0].strip()
            _, reward, terminated, truncated, info = env.step({"role": "assistant", "content": "All done."})
            assert terminated and not truncated and reward == 0.0 and info["success"] is False, r.id
            env.reset(options={"trajectory": r.id, "turn": 0})
            _, reward, terminated, _, info = env.step("I have finished the task.")
            assert terminated and reward == 0.0 and info["success"] is False, r.id
        finally:
            env.close()


def test_success_rules(records):
    r = records[0]
    assert success(r, None, r.messages) is False
    no_rule = record_from_dict({**r.to_dict(), "task": None})
    assert success(no_rule, None, r.messages) is None
    by_message = record_from_dict({**r.to_dict(), "task": {"success": {"kind": "final_message_contains", "text": "moved"}}})
    assert success(by_message, None, [{"role": "assistant", "content": "I moved them."}]) is True
    with LocalSandbox() as sb, pytest.raises(ValueError, match="kind"):
        run_success_script(by_message, sb)


# ---------------------------------------------------------------------------------------------------
# Sandboxes


def test_factory_falls_back_to_the_local_sandbox_with_one_warning(records, monkeypatch, caplog):
    monkeypatch.setattr(terminal_sandbox, "docker_problem", lambda: "the daemon is down")
    monkeypatch.setattr(terminal_sandbox, "_warned", False)
    monkeypatch.setattr(terminal_sandbox, "BACKEND", "auto")
    with caplog.at_level(logging.WARNING, logger=terminal_sandbox.__name__):
        boxes = [make_sandbox(r) for r in records[:2]]
    try:
        assert all(isinstance(b, LocalSandbox) for b in boxes)
        warnings = [rec.getMessage() for rec in caplog.records if rec.name == terminal_sandbox.__name__]
        assert warnings == ["Docker unavailable: the daemon is down; using the local sandbox, which is not a "
                            "security boundary"]
    finally:
        for b in boxes:
            b.close()
    with pytest.raises(RuntimeError, match="needs Docker"):
        make_sandbox(records[0], backend="docker")
    assert make_sandbox(record_from_dict({**records[0].to_dict(), "env": {"sandbox": "none"}})) is None
    with pytest.raises(ValueError, match="backend"):
        make_sandbox(records[0], backend="podman")


def test_local_digest_ignores_git_stat_cache_but_not_staging(records):
    r = next(r for r in records if r.metadata["variant"] == "fix_typo_commit")
    a, b = make_sandbox(r, backend="local"), make_sandbox(r, backend="local")
    try:
        assert a.read_file(".git/index") != b.read_file(".git/index")  # inode and ctime differ ...
        assert a.state_digest() == b.state_digest()  # ... but the worlds are equal
        assert a.exec("git status --short").ok and a.state_digest() == b.state_digest()
        assert a.snapshot().digest == a.state_digest()
        fork = a.fork(1)[0]
        assert isinstance(fork, LocalSandbox) and fork.state_digest() == a.state_digest()
        fork.close()
        a.exec("echo more >> README.md && git add README.md")
        b.exec("echo more >> README.md")
        assert a.state_digest() != b.state_digest()  # staged vs unstaged is state
        b.exec("git add README.md")
        assert a.state_digest() == b.state_digest()
    finally:
        a.close()
        b.close()


def test_git_index_entries_parses_versions_2_and_3_and_rejects_others():
    def entry(path: bytes, stat_seed: int, extended: int | None = None) -> bytes:
        flags = len(path) | (0x4000 if extended is not None else 0)
        head = struct.pack(">10I", *([stat_seed] * 6), 0o100644, stat_seed, stat_seed, 5) + b"\x11" * 20
        head += struct.pack(">H", flags) + (struct.pack(">H", extended) if extended is not None else b"")
        return head + path + b"\0" * (8 - (len(head) + len(path)) % 8)

    v2 = [b"DIRC" + struct.pack(">II", 2, 2) + entry(b"a.txt", s) + entry(b"src/b.py", s) + b"TREE..." for s in (1, 7)]
    assert git_index_entries(v2[0]) == git_index_entries(v2[1]) is not None
    v3 = b"DIRC" + struct.pack(">II", 3, 1) + entry(b"new.txt", 3, extended=0x2000)
    assert git_index_entries(v3) is not None and git_index_entries(v3) != git_index_entries(v2[0])
    assert git_index_entries(b"DIRC" + struct.pack(">II", 4, 0)) is None
    assert git_index_entries(b"not an index") is None


# ---------------------------------------------------------------------------------------------------
# Files and registration


def test_generate_file_and_command_line(tmp_path, capsys):
    path = tmp_path / "data" / "terminal.jsonl"
    assert expert.generate_file(path, 3, seed=2) == 3
    assert [p.name for p in path.parent.iterdir()] == ["terminal.jsonl"]  # no temp file left behind
    assert len(load_trajectories(path, strict=True)) == 3
    expert.main(["--out", str(tmp_path / "cli.jsonl"), "-n", "2", "--seed", "1"])
    assert "wrote 2 records" in capsys.readouterr().out
    assert [json.loads(line)["id"] for line in (tmp_path / "cli.jsonl").read_text().splitlines()] == [
        "terminal-s1-000000", "terminal-s1-000001"]


def test_domain_describes_itself():
    assert (DOMAIN.name, DOMAIN.env_id) == ("terminal", "pivot/Terminal-v0")
    assert DOMAIN.data_path().name == "terminal.jsonl" and DOMAIN.description
    assert DOMAIN.success is success and DOMAIN.sandbox_factory is make_sandbox


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_every_bundled_record_passes_the_checker_on_docker(records, monkeypatch):
    # The bar: check_trajectory_env over every turn of every bundled terminal record, on Docker.
    monkeypatch.setattr(terminal_sandbox, "BACKEND", "docker")
    env = TrajectoryEnv(records, domain=DOMAIN)
    try:
        # Every turn is restored, replayed and judged; the world checks (forks, snapshot immutability,
        # discrimination) run at one writing turn per record and random-order restores at two turns,
        # since each costs Docker forks and restores (the local contract test runs them in full).
        report = check_trajectory_env(env, world_turns=1, random_restores=2)
    finally:
        env.close()
    assert report.trajectories == len(records) == 60
    assert report.turns == sum(r.num_turns for r in records)
    assert report.write_turns >= 50 and report.perturbations >= 50  # the Docker world was exercised

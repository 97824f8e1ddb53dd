"""The fast execution path (Docker world snapshots on warm workers, candidates in parallel) must judge exactly
as the image path did (a commit and a container per fork, one candidate after another): on every bundled
terminal state, on every labelled terminal pair, and in profiling rows. Docker only (``docker`` marker)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from agents.bench_docker import candidate_commands, snapshot_mode
from agents.core import Policy, Sample
from pivot_envs.actions import Action, ToolCall

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _docker_backend(monkeypatch):
    from pivot_envs.domains.terminal import sandbox as shell

    monkeypatch.setattr(shell, "BACKEND", "docker")


def _bash(command: str) -> Action:
    return Action(tool_calls=[ToolCall("bash", {"command": command})])


def _verdicts_on_every_state(mode: str) -> list[tuple[float, str, str]]:
    from pivot_envs import TrajectoryEnv, get_domain

    records = get_domain("terminal").load(strict=True)
    out = []
    with snapshot_mode(mode):
        env = TrajectoryEnv(records, domain="terminal")
        try:
            for rec in records:
                for turn in range(rec.num_turns):
                    env.reset(options={"trajectory": rec.id, "turn": turn})
                    digest = env.sandbox.state_digest() if env.sandbox is not None else ""
                    expected = env.expected_action()
                    if not expected.tool_calls:
                        out.append((-1.0, "message", digest))
                        continue
                    command = expected.tool_calls[0].arguments["command"]
                    candidates = [_bash(c) for c in candidate_commands(command, "", 1)]  # "true; <command>"
                    for verdict in env.verifier_for(rec).verify_batch(expected, candidates, env.verify_context()):
                        out.append((verdict.score, verdict.category, digest))
        finally:
            env.close()
    return out


@pytest.mark.timeout(1800)
def test_every_bundled_terminal_state_restores_and_judges_alike_in_both_modes():
    world, image = _verdicts_on_every_state("world"), _verdicts_on_every_state("image")
    assert len(world) == len(image) == 237
    differ = [i for i, (a, b) in enumerate(zip(world, image, strict=True)) if a != b]
    assert differ == [], [(world[i], image[i]) for i in differ[:5]]
    judged = [score for score, _, _ in world if score >= 0]
    # "true; <command>" does what <command> does (a volatile output may leave a few undecided)
    assert judged and sum(score == 1.0 for score in judged) >= 0.9 * len(judged)


@pytest.mark.timeout(1200)
def test_every_labelled_terminal_pair_gets_the_same_verdict_in_both_modes():
    from labelled import load_rows, terminal_verdicts

    from sandboxes.docker import DockerSandbox

    rows = load_rows("terminal_pairs.jsonl")
    verdicts = {}
    for mode in ("world", "image"):
        with snapshot_mode(mode):
            verdicts[mode] = [(v.score, v.category, v.method) for v in
                              terminal_verdicts("terminal", rows, sandbox_factory=DockerSandbox)]
    assert len(verdicts["world"]) == len(rows)
    assert verdicts["world"] == verdicts["image"]


class _Commands(Policy):
    """A seeded policy over a fixed menu of commands: the same samples in both runs."""

    name = "menu"

    def __init__(self) -> None:
        self.seed = 0

    def reseed(self, seed: int) -> None:
        self.seed = seed

    def sample(self, observations: Sequence[dict[str, Any]], n: int = 1,
               infos: Sequence[dict[str, Any]] | None = None) -> list[list[Sample]]:
        menu = ["ls", "pwd", "echo x > x.txt", "cat README.md", "ls -la", "true", "find . -name '*.py'", "wc -l *"]
        out = []
        for i, _ in enumerate(observations):
            picks = [menu[(self.seed + i * 3 + j * 5) % len(menu)] for j in range(n)]
            out.append([Sample("<tool_call>" + json.dumps({"name": "bash", "arguments": {"command": c}})
                               + "</tool_call>") for c in picks])
        return out


@pytest.mark.timeout(900)
def test_profiling_rows_are_identical_in_both_modes(tmp_path):
    from agents.profile import ProfileConfig, profile
    from pivot_envs import TrajectoryEnv, get_domain

    records = get_domain("terminal").load(strict=True)[:6]
    rows = {}
    for mode in ("world", "image"):
        with snapshot_mode(mode):
            env = TrajectoryEnv(records, domain="terminal")
            try:
                result = profile(env, _Commands(), tmp_path / mode, ProfileConfig(k=4))
            finally:
                env.close()
        rows[mode] = [{k: v for k, v in row.items() if k != "seconds"} for row in result.rows]
    assert len(rows["world"]) == sum(r.num_turns for r in records)
    assert rows["world"] == rows["image"]

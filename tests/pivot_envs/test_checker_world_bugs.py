"""check_trajectory_env catches the world bugs a plugin author makes, and passes the correct world.

The world here is a small key-value store of Python objects with `put` and `get` tools. Each bug is a
subclass that breaks one promise of the sandbox contract the way real plugins did: forks that share the
live objects, a snapshot whose payload is the live object, a digest that never changes.
"""

from __future__ import annotations

import copy
import json

import pytest

from pivot_envs import Domain, TrajectoryEnv, check_trajectory_env
from pivot_envs.trajectory import Trajectory, record_from_dict
from sandboxes.core import Snapshot
from sandboxes.inprocess import InProcessSandbox


def put(state, key: str, value: str):
    state["kv"][key] = value
    return {"ok": True}


def get(state, key: str):
    return {"value": state["kv"].get(key)}


TOOLS = [{"type": "function", "function": {"name": n, "parameters": {
    "type": "object", "properties": {"key": {"type": "string"}, "value": {"type": "string"}},
    "required": ["key"] if n == "get" else ["key", "value"]}}} for n in ("put", "get")]


def record(i: int) -> Trajectory:
    """User asks to store two values and read one back: put, put, get, then a closing message."""
    calls = [("put", {"key": f"a{i}", "value": f"x{i}"}), ("put", {"key": f"b{i}", "value": f"y{i}"}),
             ("get", {"key": f"a{i}"})]
    outputs = ['{"ok": true}', '{"ok": true}', json.dumps({"value": f"x{i}"})]
    messages = [{"role": "user", "content": f"Store a{i} and b{i}, then read a{i}."}]
    for n, ((name, args), out) in enumerate(zip(calls, outputs, strict=True)):
        messages.append({"role": "assistant", "tool_calls": [
            {"id": f"c{n}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]})
        messages.append({"role": "tool", "tool_call_id": f"c{n}", "content": out})
    messages.append({"role": "assistant", "content": f"Done: a{i} is x{i}."})
    return record_from_dict({"id": f"kv-{i}", "domain": "kv_check", "tools": TOOLS, "messages": messages,
                                 "env": {"sandbox": "inprocess", "state": {"kv": {"seed": str(i)}}}})


class SharedForks(InProcessSandbox):
    """Bug 1: forks hand out the live objects instead of copies."""

    def fork(self, n=1):
        out = []
        for _ in range(n):
            sb = SharedForks({}, self.tools)
            sb.state = self.state
            out.append(sb)
        return out


class AliasingSnapshot(InProcessSandbox):
    """Bug 2: the snapshot's payload is the live object, so later writes change the snapshot."""

    def snapshot(self):
        return Snapshot(self.backend, self.state_digest(), self.state)

    def restore(self, snapshot):
        self.state = snapshot.payload

    def fork(self, n=1):
        out = []
        for _ in range(n):
            sb = AliasingSnapshot({}, self.tools)
            sb.state = copy.deepcopy(self.state)
            out.append(sb)
        return out


class ConstantDigest(InProcessSandbox):
    """Bug 3: a digest that does not look at the world."""

    def state_digest(self):
        return "0" * 64

    def snapshot(self):
        snap = super().snapshot()
        return Snapshot(snap.backend, self.state_digest(), snap.payload)

    def fork(self, n=1):
        out = []
        for _ in range(n):
            sb = ConstantDigest({}, self.tools)
            sb.state = copy.deepcopy(self.state)
            out.append(sb)
        return out


def domain(sandbox_cls) -> Domain:
    return Domain(name="kv_check", env_id="pivot/KVCheck-v0", tools={"put": put, "get": get}, verifier="tool_use",
                  sandbox_factory=lambda t: sandbox_cls(t.env["state"], tools={"put": put, "get": get}))


def check(sandbox_cls):
    env = TrajectoryEnv([record(i) for i in range(3)], domain=domain(sandbox_cls))
    try:
        return check_trajectory_env(env, gym_checks=False)
    finally:
        env.close()


def test_the_correct_world_passes_and_its_writes_are_exercised():
    report = check(InProcessSandbox)
    assert report.trajectories == 3 and report.turns == 12
    assert report.write_turns == 6  # two puts per record, each checked in forks
    assert report.perturbations == 6  # and each perturbed put was rejected


@pytest.mark.parametrize(("bug", "message"), [
    (SharedForks, "forks share state"),
    (AliasingSnapshot, "changed its snapshot|differs from a replay|does not describe the restored world"),
    (ConstantDigest, "does not see the world"),
])
def test_each_injected_world_bug_is_caught(bug, message):
    with pytest.raises(AssertionError, match=message):
        check(bug)

"""The domain SDK: what a plugin writes (data, world, verifier, outcome) and what the toolkit does with it.

Each test uses a world no bundled domain has: a sandbox class of its own, an object world, records that
reference the domain's tool schemas, turns flagged skip, user turns that end after tool calls.
"""

from __future__ import annotations

import importlib
import json
import textwrap
from typing import Any

import pytest

from agents.evaluate import all_states
from pivot_envs import (
    Domain,
    TrajectoryEnv,
    check_trajectory_env,
    extract_candidates,
    load_trajectories,
    register_sandbox_kind,
    sandbox_kinds,
)
from pivot_envs.trajectory import TrajectoryError, record_from_dict
from sandboxes import InProcessSandbox, LocalSandbox, ObjectSandbox
from sandboxes.core import ExecResult, Sandbox, Snapshot
from verifiers import Verifier, make_verifier, register_verifier
from verifiers.core import VerifierError, VerifierSpec, verifier_label
from verifiers.exact import ExactMatch
from verifiers.tooluse import ToolUseCascade

# -- a small stateful API: a library with loans -----------------------------------------------------


class Library:
    def __init__(self, books: dict[str, int]):
        self.copies = dict(books)
        self.loans: dict[str, list[str]] = {}

    def lend(self, reader: str, title: str) -> dict:
        if self.copies.get(title, 0) < 1:
            raise ValueError(f"no copy of {title!r} left")
        self.copies[title] -= 1
        self.loans.setdefault(reader, []).append(title)
        return {"reader": reader, "title": title}

    def loans_of(self, reader: str) -> list[str]:
        return list(self.loans.get(reader, []))


SCHEMAS = [
    {"type": "function", "function": {"name": "lend", "description": "Lend a book.", "parameters": {
        "type": "object", "properties": {"reader": {"type": "string"}, "title": {"type": "string"}},
        "required": ["reader", "title"]}}},
    {"type": "function", "function": {"name": "loans_of", "description": "Books a reader has.", "parameters": {
        "type": "object", "properties": {"reader": {"type": "string"}}, "required": ["reader"]}}},
]


def call(i: str, name: str, **args: Any) -> dict:
    return {"role": "assistant", "tool_calls": [{"id": i, "type": "function",
                                                 "function": {"name": name, "arguments": json.dumps(args)}}]}


def out(i: str, value: Any) -> dict:
    return {"role": "tool", "tool_call_id": i, "content": json.dumps(value, sort_keys=True)}


def library_record(n: int, *, tools: Any = "domain", closing: bool = False, domain: str = "library") -> dict:
    """Two user turns, each ending after tool calls (no closing message) unless ``closing``."""
    reader = f"r{n}"
    messages = [
        {"role": "user", "content": f"I am {reader}; lend me Dune."},
        call("c1", "lend", reader=reader, title="Dune"), out("c1", {"reader": reader, "title": "Dune"}),
        {"role": "user", "content": "And Emma, then tell me what I have."},
        call("c2", "lend", reader=reader, title="Emma"), out("c2", {"reader": reader, "title": "Emma"}),
        call("c3", "loans_of", reader=reader), out("c3", ["Dune", "Emma"]),
    ]
    if closing:
        messages.append({"role": "assistant", "content": "Done.", "pivotrl": {"skip": True}})
    return {"id": f"lib-{n}", "domain": domain, "tools": tools, "messages": messages,
            "env": {"sandbox": "objects", "books": {"Dune": 2, "Emma": 1, "Ulysses": 1}}}


def library_domain(**overrides: Any) -> Domain:
    fields: dict[str, Any] = dict(name="library", env_id="pivot/Library-v0", tool_schemas=SCHEMAS,
                                  world=lambda t: Library(t.env["books"]), verifier="tool_use")
    fields.update(overrides)
    return Domain(**fields)


def records(domain: Domain, n: int = 3, **kw: Any):
    return [record_from_dict(library_record(i, **kw), domain.schema_map()) for i in range(n)]


# -- the object world through the whole env, and the checker ----------------------------------------


def test_an_object_world_domain_passes_the_checker_with_its_writes_exercised():
    dom = library_domain()
    env = TrajectoryEnv(records(dom), domain=dom)
    try:
        report = check_trajectory_env(env, gym_checks=False)
        assert report.turns == 9 and report.write_turns >= 3 and report.perturbations >= 3
        obs, info = env.reset(options={"trajectory": "lib-0", "turn": 2})  # the checker closed it; it reopens
        assert isinstance(env.sandbox, ObjectSandbox) and info["divergence"] == [] and obs["tools"] == SCHEMAS
        assert env.sandbox.root.loans == {"r0": ["Dune", "Emma"]}
    finally:
        env.close()


def test_a_plugin_sandbox_class_gets_its_tool_calls_without_overriding_execute():
    class KV(Sandbox):
        """A world written from scratch: tools only, no files, no shell."""

        backend = "kv-test"

        def __init__(self, data: dict[str, str]):
            self.data = dict(data)

        def call_tool(self, name: str, arguments: dict[str, Any]) -> ExecResult:
            if name == "lend":
                self.data[arguments["title"]] = arguments["reader"]
                return ExecResult(0, stdout=json.dumps({"reader": arguments["reader"], "title": arguments["title"]},
                                                       sort_keys=True))
            if name == "loans_of":
                mine = sorted(t for t, r in self.data.items() if r == arguments["reader"])
                return ExecResult(0, stdout=json.dumps(mine))
            return ExecResult(1, stderr=f"Error: unknown tool {name!r}")

        def snapshot(self) -> Snapshot:
            return Snapshot(self.backend, self.state_digest(), dict(self.data))

        def restore(self, snapshot: Snapshot) -> None:
            self.data = dict(snapshot.payload)

        def fork(self, n: int = 1) -> list[Sandbox]:
            return [KV(self.data) for _ in range(n)]

        def state_digest(self) -> str:
            from sandboxes.core import sha256_json

            return sha256_json(self.data)

        def _close(self) -> None:
            self.data = {}

    assert KV.capabilities == frozenset({"tools"})  # inferred: it implements call_tool only
    assert LocalSandbox.capabilities == frozenset({"exec", "files"})
    assert InProcessSandbox.capabilities == frozenset({"files", "tools"})
    dom = library_domain(sandbox_factory=lambda t: KV({}), verifier="toolcall")
    env = TrajectoryEnv(records(dom), domain=dom, strict=True)
    try:
        check_trajectory_env(env, gym_checks=False)  # strict replay: any "unknown tool" would diverge
        _, info = env.reset(options={"trajectory": "lib-1", "turn": 2})
        assert env.sandbox.data == {"Dune": "r1", "Emma": "r1"}
    finally:
        env.close()
    with pytest.raises(TypeError, match="unknown entries"):
        type("Bad", (KV,), {"capabilities": frozenset({"gpu"})})


def test_bash_in_a_world_without_a_shell_is_an_error_result_not_a_crash():
    dom = library_domain()
    env = TrajectoryEnv(records(dom, 1), domain=dom, mode="episode")
    try:
        env.reset(options={"trajectory": "lib-0", "turn": 0})
        _, _, _, _, info = env.step('<tool_call>{"name": "bash", "arguments": {"command": "ls"}}</tool_call>')
        assert "unknown tool 'bash'" in info["tool_outputs"][0]
    finally:
        env.close()


# -- sandbox kinds ----------------------------------------------------------------------------------


def test_records_name_a_registered_sandbox_kind():
    rec = {**library_record(0), "env": {"sandbox": "library-shelf", "books": {"Dune": 1, "Emma": 1}}}
    with pytest.raises(TrajectoryError, match="unknown sandbox 'library-shelf'.*objects"):
        record_from_dict(rec, {"library": SCHEMAS})
    register_sandbox_kind("library-shelf", lambda t, d: ObjectSandbox(Library(t.env["books"])))
    assert "library-shelf" in sandbox_kinds()
    dom = library_domain(world=None)  # the kind builds the world, not the domain
    env = TrajectoryEnv([record_from_dict(rec, dom.schema_map())], domain=dom)
    try:
        env.reset(options={"trajectory": "lib-0", "turn": 1})
        assert env.sandbox.root.copies == {"Dune": 0, "Emma": 1}
    finally:
        env.close()
    with pytest.raises(ValueError, match="already registered"):
        register_sandbox_kind("library-shelf", lambda t, d: None)


def test_objects_records_without_a_world_builder_say_what_to_add():
    dom = library_domain(world=None)
    env = TrajectoryEnv(records(dom, 1), domain=dom)
    with pytest.raises(ValueError, match="world=lambda trajectory"):
        env.reset(options={"trajectory": "lib-0"})


# -- verifiers as names, (name, kwargs), instances, factories and entry points ------------------------


def test_verifier_given_with_kwargs_an_instance_or_a_factory():
    dom = library_domain(verifier=("tool_use", {"text_threshold": 0.95}))
    assert isinstance(dom.verifier, VerifierSpec) and dom.verifier_name == "tool_use(text_threshold=0.95)"
    env = TrajectoryEnv(records(dom, 1), domain=dom)
    v = env.verifier_for(env.trajectories["lib-0"])
    assert isinstance(v, ToolUseCascade) and v.rules.text_threshold == 0.95
    assert env.verifier_for(env.trajectories["lib-0"]) is v  # built once

    exact = ExactMatch()
    assert TrajectoryEnv(records(dom, 1), domain=library_domain(verifier=exact)).verifier_for(
        env.trajectories["lib-0"]) is exact
    made = TrajectoryEnv(records(dom, 1), domain=library_domain(verifier=lambda: ExactMatch()))
    assert isinstance(made.verifier_for(env.trajectories["lib-0"]), ExactMatch)
    assert verifier_label(ExactMatch) == "verifiers.exact:ExactMatch"

    with pytest.raises(VerifierError, match=r"\(name, \{kwargs\}\)"):
        library_domain(verifier=("tool_use", 0.9))
    with pytest.raises(VerifierError, match="takes no arguments"):
        make_verifier(exact, judge="x")
    with pytest.raises(VerifierError, match="not a verifiers.Verifier"):
        make_verifier(lambda: object())
    with pytest.raises(TypeError):  # a constructor argument the verifier does not take
        make_verifier(("exact", {"nope": 1}))


def test_register_verifier_with_a_factory_and_through_the_entry_point_group(tmp_path, monkeypatch):
    from verifiers import core

    register_verifier("strict_tooluse_test", lambda **kw: ToolUseCascade(text_threshold=0.99, **kw))
    assert make_verifier("strict_tooluse_test").rules.text_threshold == 0.99

    (tmp_path / "pivot_verifier_plugin.py").write_text(textwrap.dedent('''
        from verifiers.exact import ExactMatch

        class Picky(ExactMatch):
            name = "picky"

            def __init__(self, level=1):
                self.level = level
    '''))
    dist = tmp_path / "pivot_verifier_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pivot-verifier-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[pivotrl.verifiers]\npicky = pivot_verifier_plugin:Picky\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    monkeypatch.setattr(core, "_entry_points_loaded", False)
    try:
        v = make_verifier("picky", level=3)
        assert isinstance(v, Verifier) and v.level == 3 and "picky" in core.list_verifiers()
        dom = library_domain(verifier=("picky", {"level": 2}))
        assert TrajectoryEnv(records(dom, 1), domain=dom).verifier_for(records(dom, 1)[0]).level == 2
    finally:
        core._REGISTRY.pop("picky", None)
        core._REGISTRY.pop("strict_tooluse_test", None)


# -- records: tool references, skip flags, turn boundaries --------------------------------------------


def test_tools_domain_and_tool_name_lists_resolve_from_the_domain(tmp_path):
    dom = library_domain()
    path = tmp_path / "lib.jsonl"
    lines = [library_record(0), library_record(1, tools=["lend"]), library_record(2, tools=["lend", "nope"]),
             library_record(3, domain="unknown_zz")]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    loaded = load_trajectories(path, tool_schemas=dom.schema_map())
    assert [t.id for t in loaded] == ["lib-0", "lib-1"]
    assert loaded.trajectories[0].tools == SCHEMAS and loaded.trajectories[1].tool_names == ["lend"]
    assert [(e.line, e.field) for e in loaded.errors] == [(3, "tools"), (4, "tools")]
    assert "'nope'" in loaded.errors[0].message and "unknown_zz" in loaded.errors[1].message
    # Written back out, the record carries its schemas in full (any reader can use it).
    assert loaded.trajectories[0].to_dict()["tools"] == SCHEMAS
    # An env of the domain loads the file itself with the domain's schemas.
    env = TrajectoryEnv(path, domain=dom)
    assert env.ids == ["lib-0", "lib-1"] and len(env.load_errors) == 2


def test_skip_flag_keeps_the_turn_in_the_conversation_but_out_of_candidates_and_evaluation():
    dom = library_domain()
    recs = records(dom, 2, closing=True)
    t = recs[0]
    assert t.num_turns == 4 and t.skipped_turns == {3} and t.scored_turns == [0, 1, 2]
    assert all("pivotrl" not in m for m in t.messages)  # models never see the flag
    assert t.to_dict()["messages"][-1]["pivotrl"] == {"skip": True}
    assert record_from_dict(t.to_dict(), dom.schema_map()).skipped_turns == {3}
    cands, stats = extract_candidates(recs)
    assert stats["skipped"] == 2 and {c.turn for c in cands} == {0, 1, 2}
    env = TrajectoryEnv(recs, domain=dom)
    assert ("lib-0", 3) not in all_states(env) and ("lib-0", 2) in all_states(env)
    for bad, field in (({"skip": "yes"}, "pivotrl.skip"), ({"weight": 0}, "pivotrl.weight")):
        rec = library_record(0, closing=True)
        rec["messages"][-1]["pivotrl"] = bad
        with pytest.raises(TrajectoryError, match=field.replace(".", r"\.")):
            record_from_dict(rec, dom.schema_map())


def test_user_turns_that_end_after_tool_calls_need_no_closing_message():
    dom = library_domain()
    env = TrajectoryEnv(records(dom, 1), domain=dom, mode="episode")
    traj = env.trajectories["lib-0"]
    try:
        env.reset(options={"trajectory": "lib-0", "turn": 0})
        obs, _, terminated, _, info = env.step(traj.action(0))
        # the record's first user turn ends after one call: the next user message follows at once
        assert info["user"] == "replayed" and not terminated
        assert obs["messages"][-1]["content"].startswith("And Emma")
        _, _, terminated, _, info = env.step(traj.action(1))
        assert "user" not in info and not terminated  # the second user turn has two steps
        _, reward, terminated, _, info = env.step(traj.action(2))
        assert terminated and info["success"] is None and reward == 0.0  # the record defines no outcome

        # A deviating agent may close a user turn early with a message.
        env.reset(options={"trajectory": "lib-0", "turn": 1})
        _, _, terminated, _, info = env.step("I lent you Emma.")
        assert terminated and info["turn_success"] == {"user_turn": 1, "success": None}
    finally:
        env.close()


def test_turn_success_is_called_per_user_turn_and_joins_the_outcome():
    seen = []

    def has_loan(traj, sandbox, messages, user_turn):
        seen.append(user_turn)
        wanted = ["Dune"] if user_turn == 0 else ["Dune", "Emma"]
        return sandbox.root.loans.get("r" + traj.id.split("-")[1]) == wanted

    dom = library_domain(turn_success=has_loan, success=lambda t, sb, m: True)
    env = TrajectoryEnv(records(dom, 1), domain=dom, mode="episode")
    traj = env.trajectories["lib-0"]
    try:
        env.reset(options={"trajectory": "lib-0", "turn": 0})
        results = [env.step(traj.action(k))[4] for k in range(3)]
        assert seen == [0, 1]
        assert results[0]["turn_success"] == {"user_turn": 0, "success": True}
        assert results[-1]["success"] is True
        check_trajectory_env(TrajectoryEnv(records(dom, 2), domain=dom), gym_checks=False)

        # The agent lends the wrong book in the first user turn: that turn fails, so the episode does,
        # although the whole-episode rule alone would pass.
        seen.clear()
        env.reset(options={"trajectory": "lib-0", "turn": 0})
        _, _, _, _, info = env.step('<tool_call>{"name": "lend", "arguments": {"reader": "r0", "title": "Ulysses"}}'
                                    "</tool_call>")
        assert info["turn_success"]["success"] is False
        env.step(traj.action(1))
        _, reward, terminated, _, info = env.step(traj.action(2))
        assert terminated and info["success"] is False and reward == 0.0
    finally:
        env.close()

from __future__ import annotations

import json

import pytest

from pivot_envs.trajectory import (
    CandidateOptions,
    TrajectoryError,
    extract_candidates,
    load_trajectories,
    record_from_dict,
    save_trajectories,
)

TOOLS = [{"type": "function", "function": {"name": "get", "parameters": {"type": "object", "properties": {"k": {"type": "string"}}}}}]


def call(cid, name="get", args='{"k": "a"}'):
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


def record(rid="r1", **overrides):
    rec = {
        "id": rid,
        "tools": TOOLS,
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [call("c1")]},
            {"role": "tool", "tool_call_id": "c1", "content": "1"},
            {"role": "assistant", "content": "done"},
        ],
    }
    rec.update(overrides)
    return rec


def write(tmp_path, rows):
    p = tmp_path / "t.jsonl"
    p.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return p


def test_turn_numbering_prefix_and_action():
    t = record_from_dict(record())
    assert t.num_turns == 2 and t.assistant_indices == [2, 4]
    assert [m["role"] for m in t.prefix(1)] == ["system", "user", "assistant", "tool"]
    assert t.action(0).tool_calls[0].arguments == {"k": "a"}
    assert t.tool_outputs(0) == {"c1": "1"}
    assert t.domain == "generic" and t.sandbox == "none"
    with pytest.raises(IndexError, match="turns 0..1"):
        t.prefix(5)


def test_loader_names_file_line_and_field_and_keeps_good_records(tmp_path):
    bad_args = record("r3")
    bad_args["messages"][2]["tool_calls"][0]["function"]["arguments"] = "{oops"
    bad_tool = record("r4")
    bad_tool["messages"][3]["tool_call_id"] = "nope"
    p = write(tmp_path, [record("r1"), "{not json", bad_args, bad_tool, record("r5", messages=[]), record("r1")])
    result = load_trajectories(p)
    assert [t.id for t in result] == ["r1"]
    found = {(e.line, e.field) for e in result.errors}
    assert (2, "<line>") in found
    assert (3, "messages[2].tool_calls[0].function.arguments") in found
    assert (4, "messages[3].tool_call_id") in found
    assert (5, "messages") in found
    assert (6, "id") in found  # duplicate
    assert all(e.path == str(p) for e in result.errors)
    assert str(p) in str(result.errors[0]) and ":2:" in str(result.errors[0])


def test_strict_raises_on_first_bad_record(tmp_path):
    p = write(tmp_path, [record("r1"), record("r2", messages=[{"role": "robot", "content": "x"}])])
    with pytest.raises(TrajectoryError) as info:
        load_trajectories(p, strict=True)
    assert info.value.line == 2 and info.value.field == "messages[0].role" and info.value.path == str(p)


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"id": ""}, "id"),
        ({"env": {"sandbox": "vm"}}, "env.sandbox"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
        ({"messages": [{"role": "user", "content": "only a user"}]}, "messages"),
        ({"metadata": []}, "metadata"),
    ],
)
def test_validation_fields(patch, field):
    with pytest.raises(TrajectoryError) as info:
        record_from_dict(record(**patch))
    assert info.value.field == field


def test_arguments_given_as_objects_are_normalised(tmp_path):
    rec = record()
    rec["messages"][2]["tool_calls"][0]["function"]["arguments"] = {"k": "a"}
    t = record_from_dict(rec)
    assert t.messages[2]["tool_calls"][0]["function"]["arguments"] == '{"k": "a"}'
    out = tmp_path / "o.jsonl"
    assert save_trajectories([t], out) == 1
    assert load_trajectories(out).trajectories[0].messages == t.messages


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no trajectory file"):
        load_trajectories(tmp_path / "missing.jsonl")


def test_candidate_cleaning_counts_each_rule():
    msgs = [{"role": "user", "content": "go"}]
    for i in range(4):  # four identical calls: the 3rd and 4th are a doom loop
        msgs += [{"role": "assistant", "tool_calls": [call(f"a{i}")]}, {"role": "tool", "tool_call_id": f"a{i}", "content": "1"}]
    msgs += [{"role": "assistant", "tool_calls": [call("u", name="launch")]}, {"role": "tool", "tool_call_id": "u", "content": "?"}]
    msgs += [{"role": "assistant", "tool_calls": [call("e", args='{"k": "b"}')]},
             {"role": "tool", "tool_call_id": "e", "content": "Error: not found"}]
    msgs += [{"role": "assistant", "tool_calls": [call("m1", args='{"k": "c"}'), call("m2", args='{"k": "d"}')]},
             {"role": "tool", "tool_call_id": "m1", "content": "1"}, {"role": "tool", "tool_call_id": "m2", "content": "2"}]
    msgs += [{"role": "assistant", "content": "bye"}]
    t = record_from_dict(record(messages=msgs))
    cands, stats = extract_candidates([t])
    assert stats == {"kept": 4, "doom_loop": 2, "unknown_tool": 1, "tool_error": 1}
    assert [c.turn for c in cands] == [0, 1, 6, 7]
    _, stats = extract_candidates([t], CandidateOptions(drop_multi_call=True, drop_doom_loops=False))
    assert stats["multi_call"] == 1 and "doom_loop" not in stats
    assert cands[0].to_dict()["trajectory_id"] == "r1"

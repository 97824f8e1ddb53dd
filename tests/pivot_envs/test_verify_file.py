"""verify_file (``pivotrl verify``): every row gets a record, bad rows name their problem."""

from __future__ import annotations

import json

from pivot_envs import get_domain, verify_file
from verifiers import Category


def write(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def test_malformed_rows_are_reported_and_good_rows_scored(tmp_path):
    data = get_domain("tool_use").data_path()
    traj = get_domain("tool_use").load()[0]  # tooluse-000000, 6 turns
    gold2 = traj.action(2)
    rows = [
        {"trajectory_id": traj.id, "turn": 2, "action": gold2.to_text(), "label": True},
        "{not json",
        {"trajectory_id": "tooluse_000000", "turn": 2, "action": "x"},
        {"trajectory_id": traj.id, "turn": 99, "action": "x"},
        {"trajectory_id": traj.id, "turn": "2", "action": "x"},
        {"trajectory_id": traj.id, "turn": 2},
        {"trajectory_id": traj.id, "turn": 2, "action": '<tool_call>{"name": "get_order_details", "arguments": "{bad"}</tool_call>'},
        {"trajectory_id": traj.id, "turn": 2, "action": 42},
        "",
        {"trajectory_id": traj.id, "turn": 2, "action": gold2.to_message()},
        {"trajectory_id": traj.id, "turn": 2, "action": '<tool_call>{"name": "get_order_details", "arguments": {"order_id": "W6582627"}}</tool_call>'},
        {"trajectory_id": traj.id, "turn": 3, "action": "Sure."},
        [1, 2],
    ]
    out = tmp_path / "verdicts.jsonl"
    report = verify_file(data, write(tmp_path / "cands.jsonl", rows), out, verifier="tool_use")
    records = report["rows"]
    assert len(records) == 12 and [r["row"] for r in records] == list(range(12))
    assert [json.loads(line) for line in out.read_text().splitlines()] == json.loads(json.dumps(records))
    cats = [r["category"] for r in records]
    assert cats == [Category.EQUIVALENT, Category.BAD_ROW, Category.UNKNOWN_TRAJECTORY, Category.TURN_OUT_OF_RANGE,
                    Category.BAD_ROW, Category.BAD_ROW, Category.BAD_JSON, Category.BAD_ROW, Category.EQUIVALENT,
                    Category.OUTPUT_DIFFERS, Category.MISSING_FACTS, Category.BAD_ROW]
    assert "did you mean 'tooluse-000000'" in records[2]["error"]
    assert "turns 0..5" in records[3]["error"] and "missing field(s) action" in records[5]["error"]
    assert "invalid JSON" in records[1]["error"] and "column 2" in records[1]["error"] and records[1]["line"] == 2
    assert records[6]["error"].startswith("action not parsable") and records[6]["score"] == 0
    assert records[9]["line"] == 11  # the blank line is not a row but lines keep counting
    summary = report["summary"]
    assert summary["rows"] == 12 and summary["row_errors"] == 7 and summary["scored"] == 5
    assert summary["accepted"] == 2 and summary["restores"] == 2  # turn 2 restored once for its 4 rows
    assert summary["by_category"][Category.BAD_ROW] == 5


def test_a_named_verifier_and_batching(tmp_path):
    data = get_domain("tool_use").data_path()
    traj = get_domain("tool_use").load()[0]
    rows = [{"trajectory_id": traj.id, "turn": 4, "action": traj.action(4).to_text()} for _ in range(3)]
    report = verify_file(data, write(tmp_path / "c.jsonl", rows), verifier="exact")
    assert {r["method"] for r in report["rows"]} == {"exact"} and report["summary"]["restores"] == 1


def test_terminal_records_restore_a_local_sandbox(tmp_path):
    # A shell record (generic domain, local sandbox, one bash tool), as the terminal domain will ship them.
    from labelled import BASH_TOOLS

    def call(cid, command):
        return {"role": "assistant", "content": None, "tool_calls": [
            {"id": cid, "type": "function", "function": {"name": "bash", "arguments": json.dumps({"command": command})}}]}

    record = {"id": "sh-1", "domain": "generic", "tools": BASH_TOOLS,
              "env": {"sandbox": "local", "files": {"a/b/f": "1\n", "a/bb/f": "2\n", "notes.txt": "x\ny\n"}},
              "messages": [{"role": "user", "content": "Clean up a/b and show notes."},
                           call("c1", "rm -rf a/b"), {"role": "tool", "tool_call_id": "c1", "content": ""},
                           call("c2", "cat notes.txt"), {"role": "tool", "tool_call_id": "c2", "content": "x\ny\n"}]}
    traj_path = write(tmp_path / "t.jsonl", [record])
    cands = [{"trajectory_id": "sh-1", "turn": 0, "action": a} for a in
             ('<tool_call>{"name": "bash", "arguments": {"command": "rm -r a/b/"}}</tool_call>',
              '<tool_call>{"name": "bash", "arguments": {"command": "rm -rf a/bb"}}</tool_call>')]
    cands += [{"trajectory_id": "sh-1", "turn": 1, "action": a} for a in
              ('<tool_call>{"name": "bash", "arguments": {"command": "head -n 5 notes.txt"}}</tool_call>',
               '<tool_call>{"name": "bash", "arguments": {"command": "ls a"}}</tool_call>')]
    report = verify_file(traj_path, write(tmp_path / "c.jsonl", cands), verifier="terminal")
    assert [(r["equivalent"], r["category"]) for r in report["rows"]] == [
        (True, "EQUIVALENT"), (False, "FS_EFFECT_DIFFERS"), (True, "EQUIVALENT"), (False, "OUTPUT_DIFFERS")]
    assert report["summary"]["restores"] == 2


def test_hostile_candidate_rows_are_bad_rows_not_a_crash(tmp_path):
    """Deep nesting, a 5,000-digit number and non-UTF-8 bytes in one row each: that row scores 0 as
    BAD_ROW with the reason, and the good rows around them are still judged."""
    data = get_domain("tool_use").data_path()
    traj = get_domain("tool_use").load()[0]
    good = json.dumps({"trajectory_id": traj.id, "turn": 2, "action": traj.action(2).to_text()}).encode()
    deep = b'{"trajectory_id": "%s", "turn": 2, "action": %s}' % (traj.id.encode(), b"[" * 3000 + b"]" * 3000)
    huge = b'{"trajectory_id": "%s", "turn": 2, "action": "x", "n": %s}' % (traj.id.encode(), b"9" * 5000)
    path = tmp_path / "cands.jsonl"
    path.write_bytes(b"\n".join([good, deep, huge, b'{"action": "\xff\xfe"}', good]) + b"\n")
    records = verify_file(data, path, verifier="tool_use")["rows"]
    assert [r["category"] for r in records] == [Category.EQUIVALENT, *[Category.BAD_ROW] * 3, Category.EQUIVALENT]
    assert "nested deeper" in records[1]["error"] and "4300 digits" in records[2]["error"]
    assert "UTF-8" in records[3]["error"] and [r["line"] for r in records] == [1, 2, 3, 4, 5]

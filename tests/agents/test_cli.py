"""The command-line contract (DESIGN.md), driven through typer's test runner."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from agents.cli import app

runner = CliRunner()


def test_envs_list_json_lists_the_tool_use_env():
    result = runner.invoke(app, ["envs", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    ids = {r["id"] for r in rows}
    assert "pivot/ToolUse-v0" in ids and "pivot/Generic-v0" in ids
    assert all({"id", "domain", "description", "verifier"} <= set(r) for r in rows)


def test_data_validate_reports_file_line_and_field(tmp_path, tool_use_records):
    good = json.dumps(tool_use_records[0].to_dict())
    bad = json.loads(good)
    bad["id"] = "other"
    bad["messages"][1]["role"] = "narrator"
    p = tmp_path / "mixed.jsonl"
    p.write_text(good + "\n" + json.dumps(bad) + "\n")
    result = runner.invoke(app, ["data", "validate", str(p)])
    assert result.exit_code == 1
    assert f"{p}:2" in result.output and "messages[1].role" in result.output
    assert "1 valid record(s), 1 invalid line(s)" in result.output
    ok = tmp_path / "ok.jsonl"
    ok.write_text(good + "\n")
    assert runner.invoke(app, ["data", "validate", str(ok)]).exit_code == 0


def test_data_stats_and_candidates(tmp_path, tool_use_records):
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in tool_use_records[:5]))
    result = runner.invoke(app, ["data", "stats", str(p), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["records"] == 5 and stats["turns"] == sum(t.num_turns for t in tool_use_records[:5])
    out = tmp_path / "cands.jsonl"
    result = runner.invoke(app, ["data", "candidates", str(p), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == stats["candidates"] and {"trajectory_id", "turn", "action"} <= set(rows[0])


def test_data_convert_sharegpt(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}) + "\n")
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["data", "convert", "--from", "sharegpt", str(src), str(out)])
    assert result.exit_code == 0, result.output
    rec = json.loads(out.read_text())
    assert [m["role"] for m in rec["messages"]] == ["user", "assistant"]


def test_data_generate_is_deterministic(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert runner.invoke(app, ["data", "generate", str(a), "-n", "3", "--seed", "5"]).exit_code == 0
    assert runner.invoke(app, ["data", "generate", str(b), "-n", "3", "--seed", "5"]).exit_code == 0
    assert a.read_text() == b.read_text() and len(a.read_text().splitlines()) == 3

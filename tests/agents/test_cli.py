"""The command-line contract, driven through typer's test runner: what each command does, and that every
mistake gets one line on stderr and exit status 2."""

from __future__ import annotations

import json

import pytest
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


# ---------------------------------------------------------------------------------------------------
# Mistakes get one line on stderr and exit 2; never a traceback (issue 15, points 4 and 5)


def _one_line_error(result, *needles):
    """The result of a mistake: exit 2, exactly one line on stderr naming the problem, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and "╭" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_eval_mode_is_a_choice(tool_use_records):
    line = _one_line_error(runner.invoke(app, ["eval", "--policy", "replay", "--env", "tool_use", "--mode", "foo"]),
                           "'foo'", "--mode")
    assert all(m in line for m in ("turn", "episode", "both"))  # says what is accepted


def test_missing_trajectory_files(tmp_path):
    missing = str(tmp_path / "missing.jsonl")
    _one_line_error(runner.invoke(app, ["eval", "--policy", "replay", "--env", "tool_use", "--trajectories", missing]),
                    missing)
    _one_line_error(runner.invoke(app, ["profile", "--policy", "replay", "--trajectories", missing,
                                        "--out", str(tmp_path / "p")]), missing)
    _one_line_error(runner.invoke(app, ["train", "--config", str(tmp_path / "missing.toml")]), "missing.toml")


def test_unknown_names(tmp_path):
    _one_line_error(runner.invoke(app, ["profile", "--policy", "replay", "--verifier", "nope",
                                        "--out", str(tmp_path / "p")]), "'nope'", "tool_use")
    _one_line_error(runner.invoke(app, ["eval", "--policy", "bogus", "--env", "tool_use"]), "'bogus'", "hf:")
    _one_line_error(runner.invoke(app, ["eval", "--policy", "replay", "--env", "pivot/Nope-v0"]),
                    "pivot/Nope-v0", "pivot/ToolUse-v0")
    _one_line_error(runner.invoke(app, ["train", "--set", "nope=1"]), "nope", "valid keys")
    _one_line_error(runner.invoke(app, ["train", "--set", "steps"]), "key=value")
    _one_line_error(runner.invoke(app, ["data", "generate", str(tmp_path / "x.jsonl"), "--domain", "nope"]),
                    "'nope'", "terminal")


def _summary(result):
    """verify's JSON summary (stdout also carries its progress bar)."""
    return json.loads(result.stdout[result.stdout.index("{"):])


def test_verify_exits_2_when_no_row_can_be_scored(tmp_path, tool_use_records):
    traj = tmp_path / "t.jsonl"
    traj.write_text(json.dumps(tool_use_records[0].to_dict()) + "\n")
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"turn": 0}\nnot json\n' + json.dumps({"trajectory_id": "nope", "turn": 0, "action": "hi"}) + "\n")
    result = runner.invoke(app, ["verify", "--trajectories", str(traj), "--candidates", str(rows)])
    _one_line_error(result, "none of the 3 candidate row(s)")
    assert _summary(result)["row_errors"] == 3  # the summary is still printed
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    _one_line_error(runner.invoke(app, ["verify", "--trajectories", str(traj), "--candidates", str(empty)]),
                    "no candidate rows")
    good = tmp_path / "good.jsonl"  # one usable row among bad ones is a normal run
    action = tool_use_records[0].action(0).to_message()
    good.write_text('{"turn": 0}\n' + json.dumps({"trajectory_id": tool_use_records[0].id, "turn": 0,
                                                  "action": action}) + "\n")
    result = runner.invoke(app, ["verify", "--trajectories", str(traj), "--candidates", str(good)])
    assert result.exit_code == 0, result.output
    assert _summary(result)["accepted"] == 1


def test_validating_an_empty_file_is_an_error(tmp_path):
    empty = tmp_path / "empty.jsonl"
    for text in ("", "\n\n"):
        empty.write_text(text)
        _one_line_error(runner.invoke(app, ["data", "validate", str(empty)]), str(empty))


def test_train_without_pivots_is_one_line(tmp_path, tool_use_records):
    from agents.tiny import build_tiny, save_tiny

    tok, model = build_tiny(tool_use_records[:4], seed=0)
    path = save_tiny(model, tok, tmp_path / "tiny")
    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps(tool_use_records[0].to_dict()) + "\n")
    # greedy sampling: the K samples of a state are identical, so every state has zero reward variance
    result = runner.invoke(app, ["train", "--set", f"model={path}", "--set", f"trajectories={data}",
                                 "--set", f"out_dir={tmp_path / 'run'}", "--set", "profile_k=2",
                                 "--set", "temperature=0", "--set", "max_new_tokens=4", "--set", "device=cpu"])
    _one_line_error(result, "no pivots")


def test_the_console_script_prints_no_traceback(tmp_path):
    """The real entry point (not typer's test runner): a mistake is one line and exit 2."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "agents.cli", "eval", "--policy", "replay", "--env", "nope"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: unknown environment 'nope'")


# ---------------------------------------------------------------------------------------------------
# Help, generators and the bench table


def _all_commands():
    import typer.main

    def walk(cmd, path):
        yield path, cmd
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            yield from walk(sub, [*path, name])

    return list(walk(typer.main.get_command(app), []))


def test_help_shows_flags_without_metavars_and_keeps_brackets():
    for path, cmd in _all_commands():
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, path
        flags = [p for p in cmd.params if getattr(p, "is_flag", False)]
        for flag in flags:  # every flag is listed by its name alone
            assert flag.opts[0] in result.output, (path, flag.opts)
    assert "[ray]" in runner.invoke(app, ["profile", "--help"]).output


def test_data_generate_terminal(tmp_path):
    out = tmp_path / "terminal.jsonl"
    result = runner.invoke(app, ["data", "generate", str(out), "--domain", "terminal", "-n", "2", "--seed", "3"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2 and all(r["domain"] == "terminal" for r in records)
    assert runner.invoke(app, ["data", "validate", str(out)]).exit_code == 0


@pytest.mark.parametrize("domain", ["search", "swe"])
def test_data_generate_the_newer_domains(tmp_path, domain):
    out = tmp_path / f"{domain}.jsonl"
    result = runner.invoke(app, ["data", "generate", str(out), "--domain", domain, "-n", "3"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 3 and all(r["domain"] == domain for r in records)
    if domain == "search":  # -n is spread over the question families
        assert len({r["task"]["family"] for r in records}) == 3
    assert runner.invoke(app, ["data", "validate", str(out)]).exit_code == 0


def test_bench_prints_a_table_and_writes_json(tmp_path, monkeypatch):
    import agents.bench as bench

    figures = {"reset_inprocess": bench.bench_reset(ks=(1, 4), repeats=1)}
    asked = []
    monkeypatch.setattr(bench, "run_all", lambda **kw: asked.append(kw) or figures)
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", "--out", str(out), "--no-docker"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert asked[-1] == {"repeats": 20, "docker": False, "profile": False}
    assert "Reset to turn k" in result.output and "in-process" in result.output
    for row in figures["reset_inprocess"]["rows"]:
        assert f"{row['speedup']:.1f}x" in result.output
    assert json.loads(out.read_text()) == figures
    table = out.with_suffix(".md").read_text()  # the Markdown table of targets the README quotes
    assert table.startswith("| figure | target | measured |") and "in-process restore at k=4" in table
    as_json = runner.invoke(app, ["bench", "--json"])
    assert json.loads(as_json.stdout) == figures

"""`pivotrl profile` for a newcomer's data: --limit, --max-new-tokens, the domain read from the records,
prompts longer than the model's context skipped and counted, plain progress and output, and a report that
tells unparsable model output from verifier rejections."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from agents.cli import app
from agents.profile import summarize
from pivot_envs import extract_candidates, save_trajectories

runner = CliRunner()


def _run_dir(out):
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def test_domain_comes_from_the_records_and_limit_cuts_the_trajectories(tool_use_records, tmp_path):
    path = tmp_path / "mine.jsonl"
    save_trajectories(tool_use_records[:4], path)
    result = runner.invoke(app, ["profile", "--policy", "random", "--trajectories", str(path), "--limit", "2",
                                 "--k", "2", "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    run = _run_dir(tmp_path / "p")
    assert json.loads((run / "meta.json").read_text())["verifier"] == "tool_use"  # not toolcall (generic)
    rows = [json.loads(line) for line in (run / "rows.jsonl").read_text().splitlines()]
    assert {r["trajectory_id"] for r in rows} == {t.id for t in tool_use_records[:2]}
    assert "profiling 2 trajectories of tool_use" in result.output
    # not a terminal: plain progress lines instead of a bar that would vanish in a log file
    assert "profiling: " in result.output and "batches" in result.output
    report = json.loads((run / "report.json").read_text())
    assert report["unparsable_samples"] == 0 and report["verifier_rejections"] > 0


def test_user_data_is_printed_without_markup_or_emoji(tool_use_records, tmp_path):
    path = tmp_path / "odd.jsonl"
    rec = {**tool_use_records[0].to_dict(), "id": ":smile: [bold]x[/bold]"}
    path.write_text((json.dumps(rec) + "\n") * 2)  # the second line is a duplicate id, reported with the id
    result = runner.invoke(app, ["profile", "--policy", "replay", "--trajectories", str(path), "--k", "2",
                                 "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert "duplicate id ':smile: [bold]x[/bold]'" in result.output and "\U0001f604" not in result.output


def test_summary_separates_unparsable_output_from_verifier_rejections():
    rows = [{"trajectory_id": "a", "turn": 0, "rewards": [0.0, 0.0, 1.0, 0.0], "mean": 0.25, "var": 0.19,
             "categories": ["BAD_FORMAT", "EMPTY", "EQUIVALENT", "WRONG_TOOL"],
             "methods": ["error", "error", "exact", "rule"]},
            {"trajectory_id": "a", "turn": 1, "skipped": "prompt_too_long", "prompt_tokens": 900, "limit": 512,
             "rewards": [], "mean": 0.0, "var": 0.0, "categories": [], "methods": []}]
    s = summarize(rows)
    assert (s["states"], s["skipped_prompt_too_long"], s["samples"]) == (1, 1, 4)
    assert (s["unparsable_samples"], s["verifier_rejections"]) == (2, 1)
    bad = [{**rows[0], "rewards": [0.0] * 4, "mean": 0.0, "var": 0.0, "categories": ["BAD_FORMAT"] * 4,
            "methods": ["error"] * 4}]
    assert "did not parse" in summarize(bad)["yield_health"] and "verifier" not in summarize(bad)["yield_health"]


@pytest.mark.slow
def test_prompts_longer_than_the_context_are_skipped_and_counted(tool_use_records, tmp_path):
    pytest.importorskip("torch")
    from agents.chat import prompt_ids
    from agents.tiny import build_tiny_model, build_tiny_tokenizer, save_tiny
    from pivot_envs import TrajectoryEnv

    records = tool_use_records[:1]
    tok = build_tiny_tokenizer(tool_use_records[:20])
    env = TrajectoryEnv(records, domain="tool_use")
    turns = [c.turn for c in extract_candidates(records)[0]]
    lengths = [len(prompt_ids(tok, env.reset(options={"trajectory": records[0].id, "turn": t})[0])) for t in turns]
    env.close()
    # a context that holds the first turns' prompts and not the last ones' (prompts grow with the turn)
    limit = (lengths[0] + lengths[-1]) // 2 + 4
    expect_skipped = sum(n + 4 > limit for n in lengths)
    assert 0 < expect_skipped < len(lengths)
    path = save_tiny(build_tiny_model(tok, max_position_embeddings=limit), tok, tmp_path / "tiny")
    data = tmp_path / "one.jsonl"
    save_trajectories(records, data)
    result = runner.invoke(app, ["profile", "--policy", f"hf:{path}", "--trajectories", str(data), "--k", "2",
                                 "--max-new-tokens", "4", "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert f"{expect_skipped} skipped (prompt too long)" in result.output
    rows = [json.loads(line) for line in (_run_dir(tmp_path / "p") / "rows.jsonl").read_text().splitlines()]
    skipped = [r for r in rows if r.get("skipped")]
    assert len(skipped) == expect_skipped and all(r["prompt_tokens"] + 4 > r["limit"] == limit for r in skipped)
    assert len(rows) - len(skipped) > 0 and all(len(r["rewards"]) == 2 for r in rows if not r.get("skipped"))

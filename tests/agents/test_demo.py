"""`pivotrl demo`: the miniature experiment runs end to end, reports every method, and is reproducible."""

from __future__ import annotations

import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

from agents.cli import app
from agents.demo import DOMAINS, FULL, QUICK, SHIPPED_BASE, Narrator, Stage, build_base, plan_with, run_demo

METHOD_ROWS = {"base", "sft", "pivotrl", "e2e"}


def _check_report(out, report):
    tables = report["tables"]
    assert {r["method"] for r in tables["in_domain"]} == METHOD_ROWS
    for row in tables["in_domain"]:
        for d in DOMAINS:
            for kind in ("turn", "episode"):
                assert 0.0 <= row[f"{d}/{kind}"] <= 1.0, (row["method"], d, kind)
        assert 0.0 <= row["average"] <= 1.0
    assert {r["method"] for r in tables["ood"]} == METHOD_ROWS
    for row in tables["ood"]:
        assert 0.0 <= row["average"] <= 1.0
        assert set(row) >= {"arithmetic", "strings", "facts", "change"}
    assert {(r["method"], r["domain"]) for r in tables["compute"]} == {
        (m, d) for m in METHOD_ROWS - {"base"} for d in DOMAINS}
    for row in tables["compute"]:
        assert row["wall_clock_s"] >= 0 and row["rollout_turns"] >= 0
        if row["method"] in ("pivotrl", "e2e"):
            assert row["rollout_turns"] > 0, row  # RL methods sample; SFT does not
    for d in DOMAINS:  # the sanity rows: the demonstration scores everything, random nothing
        assert report["sanity"][d]["replay"] == {"turn": 1.0, "episode": 1.0}
        assert report["sanity"][d]["random"]["turn"] <= 0.05
    md = (out / "report.md").read_text()
    for heading in ("Table 1", "Table 2", "Compute per method", "PivotRL profiling"):
        assert heading in md
    for label in ("Base", "SFT", "PivotRL", "E2E RL"):
        assert f"| {label} |" in md
    for png in ("in_domain.png", "training.png"):
        assert (out / png).stat().st_size > 1000
    # the stage list: every planned stage ran and was timed; the report says what the time depended on
    assert report["stages"] and all(st["seconds"] is not None and st["seconds"] >= 0 for st in report["stages"])
    assert abs(sum(st["expected_share"] for st in report["stages"]) - 1) < 1e-9
    assert {"cpu_count", "load_average_1_5_15_min", "docker"} <= set(report["machine"])
    assert "Where the time went" in md
    for d in DOMAINS:  # every trainer writes TensorBoard logs
        for method in ("sft", "pivotrl", "e2e"):
            if method == "pivotrl" and report["runs"]["pivotrl"][d].get("pivots") == 0:
                continue  # no pivots: no GRPO step was logged
            assert list((out / d / method / "tensorboard").glob("events.out.tfevents.*")), (d, method)


def test_demo_quick_runs_end_to_end_from_the_command_line(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["quick"] is True
    assert report["base"]["path"] == str(SHIPPED_BASE)  # the built-in base: quick mode trains no base
    _check_report(out, report)
    assert "Table 1" in result.output and "Done in" in result.output


def test_demo_default_directories_keep_quick_and_full_apart(monkeypatch):
    import agents.demo

    seen = []
    monkeypatch.setattr(agents.demo, "run_demo", lambda out, **kw: seen.append((str(out), kw["quick"])))
    for args in (["demo"], ["demo", "--quick"]):
        assert CliRunner().invoke(app, args).exit_code == 0
    assert seen == [("runs/demo", False), ("runs/demo-quick", True)]


def test_the_overall_bar_weighs_stages_by_expected_cost():
    narrator = Narrator(Console(quiet=True))
    stages = [Stage("a", "cheap", 1.0), Stage("b", "costly", 3.0)]
    with narrator.live(stages):
        with narrator.step("a"):
            pass
        assert narrator.fraction_done == 0.25 and narrator.seconds["a"] >= 0
        with narrator.stage("b's bar", 10, key="b", share=0.5) as update:
            update(10)  # the first of two equal bars of stage b
        assert narrator.fraction_done == 0.25 + 0.75 * 0.5
        with narrator.stage("b's second bar", 4, key="b", share=0.5) as update:
            update(2)
        assert narrator.fraction_done == 0.25 + 0.75 * 0.75
        narrator.finish("b")
        assert narrator.fraction_done == 1.0 and set(narrator.seconds) == {"a", "b"}


def test_the_built_in_base_matches_the_full_plan():
    stats = json.loads((SHIPPED_BASE / "base_stats.json").read_text())
    assert stats["plan_key"] == FULL.key(0) == QUICK.key(0)
    assert (SHIPPED_BASE / "model.safetensors").stat().st_size > 100_000


TINY = plan_with(QUICK, hidden_size=32, base_records=2, base_steps=3, base_batch=1, base_ood_batch=4,
                 heldout=(("tool_use", 2), ("terminal", 1)), train_limit=(("tool_use", 3), ("terminal", 2)),
                 sft_steps=2, sft_batch=1, profile_k=2, pivot_steps=(("tool_use", 1), ("terminal", 1)), pivots_per_step=1,
                 group_size=2,
                 e2e_steps=(("tool_use", 1), ("terminal", 1)), e2e_tasks=1, e2e_group=2, max_new_tokens=8,
                 ood_per_family=2)


def test_base_is_trained_once_then_cached(tmp_path):
    narrator = Narrator(Console(quiet=True))
    path, stats = build_base(TINY, tmp_path, narrator)
    assert path.parent == tmp_path and stats["plan_key"] == TINY.key(0) and stats["steps"] == 3
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    again, _ = build_base(TINY, tmp_path, narrator)
    assert again == path and (path / "model.safetensors").stat().st_mtime_ns == mtime
    other, _ = build_base(TINY, tmp_path, narrator, seed=1)
    assert other != path


@pytest.mark.slow
def test_two_runs_with_the_same_seed_give_the_same_tables(tmp_path, local_shell_worlds):
    def tables(name):
        report = run_demo(tmp_path / name, plan=TINY, cache_dir=tmp_path / "cache", console=Console(quiet=True),
                          random_turns=True, exact_match_reward=True)
        _check_report(tmp_path / name, {**report, "tables": {**report["tables"], "in_domain": [
            r for r in report["tables"]["in_domain"] if r["method"] in METHOD_ROWS], "ood": [
            r for r in report["tables"]["ood"] if r["method"] in METHOD_ROWS], "compute": [
            r for r in report["tables"]["compute"] if r["method"] in METHOD_ROWS]}})
        for row in report["tables"]["compute"]:
            row.pop("wall_clock_s")
            row.pop("sandbox_s")
        return report["tables"]

    first, second = tables("a"), tables("b")
    assert first == second
    methods = {r["method"] for r in first["in_domain"]}
    assert {"pivotrl_random_turns", "pivotrl_exact_match"} <= methods  # the ablations add rows

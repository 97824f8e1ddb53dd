"""`pivotrl demo`: the miniature experiment runs end to end, reports every method, and is reproducible."""

from __future__ import annotations

import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

from agents.cli import app
from agents.demo import DOMAINS, FULL, QUICK, SHIPPED_BASE, Narrator, Stage, build_base, plan_with, run_demo

METHOD_ROWS = {"base", "sft", "pivotrl", "e2e"}


def _interval(x):
    """An estimate of the report: a value in [0, 1] inside its 95% interval."""
    assert set(x) >= {"value", "lo", "hi", "units", "clusters"}, x
    assert 0.0 <= x["lo"] <= x["value"] <= x["hi"] <= 1.0, x
    return x["value"]


def _check_report(out, report):
    tables = report["tables"]
    assert {r["method"] for r in tables["in_domain"]} == METHOD_ROWS
    for row in tables["in_domain"]:
        for d in DOMAINS:
            turns = _interval(row[f"{d}/turn"])
            _interval(row[f"{d}/episode"])
            assert row[f"{d}/turn"]["units"] == report["heldout"][d]["turns"]  # every held-out turn is scored
            assert row[f"{d}/turn"]["clusters"] == report["heldout"][d]["trajectories"]  # clusters = trajectories
            if row["method"] != "base":
                assert turns == pytest.approx(sum(row[f"{d}/turn_per_seed"]) / len(report["seeds"]))
        _interval(row["average"])
    assert {r["method"] for r in tables["ood"]} == METHOD_ROWS
    for row in tables["ood"]:
        for col in ("average", "arithmetic", "strings", "facts"):
            _interval(row[col])
        if row["method"] == "base":
            assert row["change"] is None
        else:
            assert row["change"]["lo"] <= row["change"]["value"] <= row["change"]["hi"]
    assert {(r["method"], r["domain"]) for r in tables["compute"]} == {
        (m, d) for m in METHOD_ROWS - {"base"} for d in DOMAINS}
    for row in tables["compute"]:
        assert row["wall_clock_s"] >= 0 and row["rollout_turns"] >= 0
        if row["method"] in ("pivotrl", "e2e"):
            assert row["rollout_turns"] > 0, row  # RL methods sample; SFT does not
    for x in tables["differences"]:  # paired differences: significant exactly when the interval excludes 0
        assert x["significant"] == (x["estimate"]["lo"] > 0 or x["estimate"]["hi"] < 0)
    assert set(tables["claims"]) == {"a", "b", "c", "d"}
    for claim in tables["claims"].values():
        assert claim["verdict"] in ("reproduced", "not reproduced", "inconclusive")
    for d in DOMAINS:  # the sanity rows: the demonstration scores everything, random nothing
        assert report["sanity"][d]["replay"] == {"turn": 1.0, "episode": 1.0}
        assert report["sanity"][d]["random"]["turn"] <= 0.05
    md = (out / "report.md").read_text()
    assert md.index("The paper's claims") < md.index("Table 1")  # the claims table comes first
    for heading in ("Table 1", "Table 2", "Paired differences", "Compute per method", "PivotRL profiling", "Held-out data"):
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
            if method == "pivotrl" and report["runs"]["pivotrl"][d][0].get("pivots") == 0:
                continue  # no pivots: no GRPO step was logged
            assert list((out / d / method / "tensorboard").glob("events.out.tfevents.*")), (d, method)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # minutes on a quiet machine, many more when it is shared
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
    monkeypatch.setattr(agents.demo, "run_demo", lambda out, **kw: seen.append((str(out), kw["quick"], kw["full"])))
    for args in (["demo"], ["demo", "--quick"], ["demo", "--full"]):
        assert CliRunner().invoke(app, args).exit_code == 0
    assert seen == [("runs/demo", False, False), ("runs/demo-quick", True, False), ("runs/demo-full", False, True)]
    assert CliRunner().invoke(app, ["demo", "--quick", "--full"]).exit_code != 0


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


def test_a_log_file_gets_a_progress_line_at_every_tenth_of_a_bar():
    """Rich draws no bars into a file or pipe (`pivotrl demo > log`, a CI log): the narrator writes
    a line at each tenth instead, so an hour-long base build is not silent until it ends."""
    import io

    log = io.StringIO()
    narrator = Narrator(Console(file=log, force_terminal=False, width=200))
    with narrator.stage("base model: training", 40) as update:
        for done in range(1, 41):
            update(done)
    lines = [line for line in log.getvalue().splitlines() if line.startswith("  base model: training:")]
    assert [line.split(": ")[2].split()[0] for line in lines] == [f"{4 * k}/40" for k in range(1, 11)]
    shown = io.StringIO()
    on_terminal = Narrator(Console(file=shown, force_terminal=True, width=200))
    with on_terminal.stage("base model: training", 40) as update:
        update(40)
    assert "40/40 (" not in shown.getvalue()


def test_the_built_in_base_matches_the_full_plan():
    stats = json.loads((SHIPPED_BASE / "base_stats.json").read_text())
    assert stats["plan_key"] == FULL.key(0) == QUICK.key(0)
    assert (SHIPPED_BASE / "model.safetensors").stat().st_size > 100_000


TINY = plan_with(QUICK, hidden_size=32, heads=2, base_records=(("tool_use", 2), ("terminal", 2)), base_steps=3, base_batch=1, base_ood_batch=4,
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
@pytest.mark.timeout(1800)
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


TINY_FULL = plan_with(TINY, seeds=2, ablations=True, curve_domain="tool_use", curve_every=1,
                      pivot_steps=(("tool_use", 2), ("terminal", 1)), curve_e2e_steps=3, curve_e2e_every=1,
                      curve_patience=1, heldout_generated=(("tool_use", 1), ("terminal", 0)))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_full_plan_in_miniature_has_seeds_ablations_curves_and_claims(tmp_path, local_shell_worlds, monkeypatch):
    import dataclasses

    import agents.demo
    import agents.pivotrl
    from agents.profile import select_pivots

    # An untrained tiny model is never right, so no state would be a pivot and PivotRL would not train:
    # here two random candidate turns stand in for the pivots, so its curve has trained checkpoints.
    monkeypatch.setattr(agents.pivotrl, "select_pivots", lambda rows, config: select_pivots(
        rows, dataclasses.replace(config, random_turns=True, cap=2)))
    made: list[tuple[list[str], agents.demo.TrajectoryEnv]] = []

    class RecordedEnv(agents.demo.TrajectoryEnv):
        def __init__(self, trajectories, *args, **kwargs):
            super().__init__(trajectories, *args, **kwargs)
            made.append(([t.id for t in trajectories], self))

    monkeypatch.setattr(agents.demo, "TrajectoryEnv", RecordedEnv)
    out = tmp_path / "full"
    report = run_demo(out, plan=TINY_FULL, cache_dir=tmp_path / "cache", console=Console(quiet=True))
    # every model (2 seeds x 5 methods, and the checkpoints) is scored in one held-out env per domain, so each
    # state's world is restored once for the run; the envs are closed when it ends
    for d in DOMAINS:
        heldout = [json.loads(line)["id"] for line in (out / "data" / f"{d}-heldout.jsonl").read_text().splitlines()]
        envs = [env for ids, env in made if ids == heldout]
        assert len(envs) == 1, (d, len(envs))
        assert envs[0].sandbox is None and envs[0]._traj is not None
    assert report["seeds"] == [0, 1]
    core = {**report["tables"], **{k: [r for r in report["tables"][k] if r["method"] in METHOD_ROWS]
                                   for k in ("in_domain", "ood", "compute")}}
    _check_report(out, {**report, "tables": core})
    # generated held-out records (seed 2) join the bundled ones, and are said to
    assert report["heldout"]["tool_use"]["generated"] == 1
    heldout = (out / "data" / "tool_use-heldout.jsonl").read_text().splitlines()
    assert len(heldout) == report["heldout"]["tool_use"]["trajectories"] == 3
    assert json.loads(heldout[-1])["id"].startswith("tooluse-s2-")
    # every method trained once per seed; the second seed's runs have their own directories
    for m in ("sft", "pivotrl", "e2e"):
        assert [r["seed"] for r in report["runs"][m]["tool_use"]] == [0, 1]
    for m in ("pivotrl_random_turns", "pivotrl_exact_match"):  # the ablations: once, as in the paper
        assert [r["seed"] for r in report["runs"][m]["tool_use"]] == [0]
    # random turns read PivotRL's profile back: the same profiled rows, the same rollout turns counted
    piv_profile, rt_profile = (report["runs"][m]["tool_use"][0]["profile"] for m in ("pivotrl", "pivotrl_random_turns"))
    assert piv_profile["states"] == rt_profile["states"]
    assert (out / "tool_use" / "sft-seed1").is_dir() and (out / "tool_use" / "e2e-seed1").is_dir()
    # the equal-accuracy curves: step 0 is the base, compute only grows, E2E RL's later seeds train as long
    curves = report["curves"]
    base_acc = report["tables"]["in_domain"][0]["tool_use/turn"]["value"]
    for m in ("pivotrl", "e2e"):
        pts = curves[m]
        assert pts[0]["step"] == 0 and pts[0]["accuracy"] == pytest.approx(base_acc)
        assert [p["rollout_turns"] for p in pts] == sorted(p["rollout_turns"] for p in pts)
        assert len(pts[-1]["per_trajectory"]) == 3
    assert curves["pivotrl"][0]["rollout_turns"] > 0 == curves["e2e"][0]["rollout_turns"]  # profiling counts
    steps = [r["steps_done"] for r in report["runs"]["e2e"]["tool_use"]]
    assert steps[0] == curves["e2e"][-1]["step"] and steps[1] == steps[0]
    # the last checkpoint's score is the final model's Table 1 score (not measured twice)
    piv = report["evals"]["pivotrl"]["tool_use"][0]["tool_use"]["turn"]
    assert piv["accuracy"] == curves["pivotrl"][-1]["accuracy"]
    claims = report["tables"]["claims"]
    assert claims["c"]["parts"]["PivotRL - random turns"]["estimate"] is not None
    assert claims["d"]["comparison"]["target"] is not None
    assert (out / "curves.png").stat().st_size > 1000
    md = (out / "report.md").read_text()
    assert "Equal accuracy" in md and "Per-turn accuracy of each seed's model" in md
    # every checkpoint row of the equal-accuracy table carries its 95% interval
    rows = [r.split("|") for r in md.splitlines() if r.startswith(("| PivotRL | ", "| E2E RL | ")) and r.count("|") == 6]
    assert len(rows) == len(curves["pivotrl"]) + len(curves["e2e"])
    assert all(r[2].strip().isdigit() and "[" in r[5] for r in rows), rows
    assert json.loads((out / "report.json").read_text())["tables"] == json.loads(json.dumps(report["tables"]))


def test_held_out_sets_are_sized_for_five_point_intervals(tmp_path):
    """About 400 turns where the plan promises +-5 points at 50% accuracy (tool use in every plan but the
    quick one; terminal in COMPLETE, which tops the bundled records up with generated ones), on the same
    training split as make demo's."""
    from agents.demo import COMPLETE, _conversation_key, split_data
    from agents.evidence import half_width_at

    full = split_data(tmp_path / "full", FULL, tmp_path / "cache")
    complete = split_data(tmp_path / "out", COMPLETE, tmp_path / "cache")
    for splits, domains in ((full, ("tool_use",)), (complete, DOMAINS)):
        for d in domains:
            turns = sum(len(t.scored_turns) for t in splits[d]["heldout"])
            assert half_width_at(0.5, turns) <= 0.05, (d, turns)
            train_ids = {t.id for t in splits[d]["train"]}
            assert not train_ids & {t.id for t in splits[d]["heldout"]}
            keys = [_conversation_key(t) for t in splits[d]["heldout"]]
            assert len(set(keys)) == len(keys), d
    for d in DOMAINS:
        assert [t.id for t in complete[d]["train"]] == [t.id for t in full[d]["train"]]
        assert complete[d]["generated"] > 0
    # Turns of one trajectory move together, so the cluster bootstrap needs trajectories, not only turns: FULL's
    # 60 tool-use ones gave the base +-5.8 points and its 25 terminal ones +-9; --full holds 90 and 105.
    assert len(complete["tool_use"]["heldout"]) >= 90 and complete["tool_use"]["generated"] == 30
    assert len(complete["terminal"]["heldout"]) >= 100
    assert COMPLETE.seeds == 3 and COMPLETE.ablations and COMPLETE.curve_domain


def test_pivotrl_settings_are_tuned_on_validation_records_disjoint_from_the_demo_data(tmp_path):
    """scripts/tune_pivotrl.py scores configurations on generated validation records (seed 3) that share no
    conversation with the bundled data, the base model's mix or the generated held-out records."""
    import importlib.util
    from pathlib import Path

    from agents.demo import COMPLETE, _conversation_key, general_records, split_data
    from pivot_envs.registration import get_domain

    scripts = Path(__file__).resolve().parents[2] / "scripts"
    spec = importlib.util.spec_from_file_location("tune_pivotrl", scripts / "tune_pivotrl.py")
    tune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tune)
    assert tune._parse("lr=5e-5") == ("lr", 5e-5) and tune._parse("advantage=loo") == ("advantage", "loo")
    with pytest.raises(SystemExit, match="key=value"):
        tune._parse("lr")

    splits = split_data(tmp_path / "out", COMPLETE, tmp_path / "cache")["tool_use"]
    taken = {_conversation_key(t) for t in splits["train"] + splits["heldout"]}
    records = tune.validation_records(30, exclude=taken)
    assert len(records) >= 25 and len({t.id for t in records}) == len(records)
    keys = {_conversation_key(t) for t in records}
    assert not keys & taken
    assert not keys & {_conversation_key(t) for t in get_domain("tool_use").load()}
    assert not keys & {_conversation_key(t) for t in general_records(plan_with(
        FULL, base_records=(("tool_use", FULL.per_domain("base_records", "tool_use")), ("terminal", 0))))}


def test_the_base_build_script_reads_plan_changes_and_refuses_to_ship_them():
    """scripts/build_demo_base.py --set: JSON values (lists become the plan's tuples); a field DemoPlan lacks
    is an error; a changed plan without --out would replace the shipped base with one the demo never uses."""
    import importlib.util
    import sys
    from pathlib import Path

    scripts = Path(__file__).resolve().parents[2] / "scripts"
    spec = importlib.util.spec_from_file_location("build_demo_base", scripts / "build_demo_base.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    changes = build.parse_set(["base_steps=600", 'base_records=[["tool_use",500],["terminal",300]]'])
    assert changes == {"base_steps": 600, "base_records": (("tool_use", 500), ("terminal", 300))}
    assert plan_with(FULL, **changes).key() != FULL.key()
    with pytest.raises(SystemExit, match="DemoPlan field"):
        build.parse_set(["base_stepz=2400"])
    with pytest.raises(SystemExit, match="DemoPlan field"):
        build.parse_set(["base_steps"])
    argv = sys.argv
    try:
        sys.argv = ["build_demo_base.py", "--set", "base_steps=10"]
        with pytest.raises(SystemExit, match="--out"):
            build.main()
    finally:
        sys.argv = argv


def test_the_gpu_example_builds_a_base_the_demo_finds(tmp_path):
    """examples/demo_gpu.py (written for a GPU, not run there yet): its plan splits the data, and its
    pretrained base lands where run_demo looks for a cached base of that plan (smoke-tested on CPU, tiny)."""
    import importlib.util
    from pathlib import Path

    from agents.demo import ready_base, split_data

    examples = Path(__file__).resolve().parents[2] / "examples"
    spec = importlib.util.spec_from_file_location("demo_gpu", examples / "demo_gpu.py")
    demo_gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo_gpu)
    gpu = demo_gpu.GPU
    assert gpu.device == "cuda" and gpu.pivots_per_step % gpu.grad_accum == 0 and gpu.seeds == 3
    splits = split_data(tmp_path / "out", gpu, tmp_path / "cache")
    for d in DOMAINS:
        assert sum(len(t.scored_turns) for t in splits[d]["heldout"]) >= 390
    tiny = plan_with(gpu, device="cpu", bf16=False, hidden_size=32, layers=1, heads=2, vocab_size=512,
                     base_records=(("tool_use", 2), ("terminal", 2)), base_steps=2, base_batch=1, base_ood_batch=2)
    path = demo_gpu.pretrain_base(tiny, tmp_path / "cache")
    assert ready_base(tiny, tmp_path / "cache") == path


def test_the_equal_accuracy_sentence_gives_ratios_or_says_never():
    from agents.demo import _cost_text
    from agents.evidence import CurvePoint, equal_accuracy

    spent = {"e2e_best_step": 6, "e2e_steps": 9, "e2e_rollout_turns": 900, "e2e_wall_clock_s": 300.0,
             "pivotrl_final_step": 10, "pivotrl_rollout_turns": 700, "pivotrl_wall_clock_s": 100.0}
    pivot = [CurvePoint(0, 400, 40, 0.3), CurvePoint(5, 550, 70, 0.5), CurvePoint(10, 700, 100, 0.6)]
    e2e = [CurvePoint(0, 0, 5, 0.3), CurvePoint(3, 300, 100, 0.35), CurvePoint(6, 600, 200, 0.45),
           CurvePoint(9, 900, 300, 0.40)]
    text = _cost_text({**equal_accuracy(pivot, e2e), **spent})
    assert "reached it at step 5" in text and f"{600 / 550:.2f}x fewer rollout turns" in text
    assert "E2E RL never reached PivotRL's best 60.0%" in text
    better = [CurvePoint(0, 0, 5, 0.3), CurvePoint(3, 300, 100, 0.7)]
    assert "never reached by PivotRL (its best 60.0%)" in _cost_text({**equal_accuracy(pivot, better), **spent})
    assert "not run" in _cost_text(None)
    # PivotRL paying more than E2E RL (profiling counts) reads as "more", with the inverse ratio
    costly = [CurvePoint(0, 1000, 60, 0.3), CurvePoint(5, 1200, 100, 0.5)]
    text = _cost_text({**equal_accuracy(costly, e2e), **spent})
    assert f"{1200 / 600:.2f}x more rollout turns and {200 / 100:.2f}x less wall-clock" in text
    assert "PivotRL 1,200 turns, 100 s, profiling included; E2E RL 600 turns, 200 s" in text

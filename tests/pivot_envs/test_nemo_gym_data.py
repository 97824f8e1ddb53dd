"""Every example file shipped in the pinned ``nemo-gym`` wheel converts with ``--from nemo_gym``.

A row may be refused only for a reason this test checks independently of the converter: it is not a
NeMo row (no ``responses_create_params``), not JSON, not text-only (images, audio, files), holds no
demonstration, repeats an earlier line exactly, or has one turn longer than the record limit
(:data:`pivot_envs.actions.MAX_ACTION_CHARS`).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from pivot_envs.actions import MAX_ACTION_CHARS
from pivot_envs.convert import ANSWER_FIELDS, convert_file, from_nemo_gym
from pivot_envs.trajectory import extract_candidates, load_trajectories, record_from_dict

resources_servers = pytest.importorskip("resources_servers", reason="the nemo-gym wheel (a dev dependency) is not installed")
SITE = Path(next(iter(resources_servers.__path__))).parent
PACKAGES = ("benchmarks", "environments", "resources_servers", "responses_api_agents")
SERVER = SITE / "resources_servers"


def _example_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES if (SITE / pkg).is_dir() for p in (SITE / pkg).rglob("*.jsonl"))


def _why_refusable(row: object, line: str, seen: set[str]) -> str | None:
    """The reason a row may fail to convert, judged without the converter; None = it must convert."""
    if not isinstance(row, dict) or not isinstance(row.get("responses_create_params"), dict):
        return "not a NeMo Gym row"
    if line in seen:
        return "repeats an earlier line"
    text = json.dumps(row)
    if any(f'"{kind}"' in text for kind in ("input_image", "input_audio", "input_file", "image_url")):
        return "not text-only"
    output = row["response"].get("output") if isinstance(row.get("response"), dict) else None
    steps = output[-1] if output and all(isinstance(s, list) for s in output) else output or []
    acts = [i for i in steps if isinstance(i, dict) and (i.get("type") == "function_call" or (
        i.get("role") == "assistant" and any(str(p.get("text", "")).strip() for p in i.get("content") or []
                                             if isinstance(p, dict))))]
    answers = [row[k] for k in ANSWER_FIELDS if row.get(k) is not None]
    inputs = row["responses_create_params"].get("input")
    if row.get("expected_action") is None and not acts and not any(str(a).strip() for a in answers) and not (
            isinstance(inputs, list) and any(isinstance(i, dict) and i.get("role") == "assistant" for i in inputs)):
        return "no demonstration"
    if any(len(str(i.get("arguments", ""))) > MAX_ACTION_CHARS for i in steps if isinstance(i, dict)):
        return "a turn over the record limit"
    return None


def test_every_text_only_row_with_a_demonstration_converts(tmp_path):
    files = _example_files()
    assert len(files) > 100, f"expected the wheel's example files under {SITE}"
    totals: Counter[str] = Counter()
    for path in files:
        out = tmp_path / "out.jsonl"
        report = convert_file(path, out, "nemo_gym")
        failed = {e.line for e in report.errors}
        seen: set[str] = set()
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                assert lineno in failed
                continue
            reason = _why_refusable(row, line, seen)
            seen.add(line)
            if lineno in failed:
                assert reason is not None, (path.relative_to(SITE), lineno,
                                            [str(e) for e in report.errors if e.line == lineno])
                totals[reason] += 1
        if report.converted:
            records = load_trajectories(out, strict=True).trajectories
            totals["records"] += len(records)
            totals["candidates"] += len(extract_candidates(records)[0])
    # the refusals are the minority, and converted rows yield candidates
    assert totals["records"] > totals["no demonstration"] and totals["candidates"] >= totals["records"]


def _rows(rel: str) -> list[dict]:
    return [json.loads(line) for line in (SERVER / rel).read_text(encoding="utf-8").splitlines() if line.strip()]


def test_pivot_rows_keep_nemos_action_as_the_last_turn_and_last_turn_only_marks_the_rest():
    for row in _rows("single_step_tool_use_with_argument_comparison/data/example.jsonl"):
        traj = record_from_dict(from_nemo_gym(row, last_turn_only=True))
        expected = row["expected_action"]
        last = traj.action(traj.num_turns - 1)
        if expected["type"] == "message":  # role-less message: the assistant's
            assert last.kind == "message" and last.content == expected["content"]
        else:
            assert [(c.name, c.arguments) for c in last.tool_calls] == [(expected["name"], json.loads(expected["arguments"]))]
        candidates, stats = extract_candidates([traj])
        assert [c.turn for c in candidates] == [traj.num_turns - 1]
        assert stats["skipped"] == traj.num_turns - 1 and traj.metadata["pivot_turn"] == traj.num_turns - 1


def test_function_call_batch_becomes_one_turn_of_parallel_calls():
    batches = [r for r in _rows("single_step_tool_use_with_argument_comparison/data/parallel_example.jsonl")
               if r["expected_action"]["type"] == "function_call_batch"]
    assert batches
    for row in batches:
        traj = record_from_dict(from_nemo_gym(row))
        calls = traj.action(traj.num_turns - 1).tool_calls
        assert [(c.name, c.raw_arguments) for c in calls] == [(c["name"], c["arguments"]) for c in row["expected_action"]["calls"]]


def test_swe_pivot_rows_without_tools_get_inferred_tools_and_candidates():
    for row in _rows("swe_pivot/data/example.jsonl"):
        assert not row["responses_create_params"].get("tools")
        rec = from_nemo_gym(row)
        name = row["expected_action"]["name"]
        assert rec["metadata"]["inferred_tools"] == [name]
        props = rec["tools"][0]["function"]["parameters"]["properties"]
        assert set(props) == set(json.loads(row["expected_action"]["arguments"]))
        assert rec["metadata"]["verifier_settings"] == {"nemo": {"word_count_similarity_threshold": 0.0}}
        assert len(extract_candidates([record_from_dict(rec)])[0]) == 1


def test_rollouts_become_turns_and_string_tasks_stay_metadata():
    # aviary writes one growing transcript per step (a list of item lists): the last one is the rollout
    row = next(r for r in _rows("aviary/data/example_rollouts.jsonl") if len(r["response"]["output"]) > 1)
    steps = row["response"]["output"]
    assert all(isinstance(s, list) for s in steps) and steps[0] == steps[-1][: len(steps[0])]
    rec = from_nemo_gym(row)
    calls = [i for i in steps[-1] if i.get("type") == "function_call"]
    made = [c for m in rec["messages"] if m["role"] == "assistant" for c in m.get("tool_calls") or []]
    assert calls and [c["function"]["name"] for c in made] == [c["name"] for c in calls]
    assert sum(m["role"] == "tool" for m in rec["messages"]) == sum(i.get("type") == "function_call_output" for i in steps[-1])
    assert rec["metadata"]["demonstration"] == "response.output" and rec["metadata"]["reward"] == row["reward"]
    labelled = next(r for r in _rows("iheval/data/example_rollouts.jsonl") if isinstance(r.get("task"), str))
    rec = from_nemo_gym(labelled)
    assert "task" not in rec and rec["metadata"]["task"] == labelled["task"]
    assert rec["domain"] == "generic" and rec["metadata"]["domain"] == labelled["domain"]


def test_expected_answers_become_the_demonstrated_turn():
    row = _rows("xlam_fc/data/example.jsonl")[0]
    traj = record_from_dict(from_nemo_gym(row))
    assert [(c.name, c.arguments) for c in traj.action(0).tool_calls] == [
        (a["name"], a["arguments"]) for a in row["expected_answers"]]
    math = next(r for r in _rows("math_with_autograder/data/example_rollouts.jsonl"))
    rec = from_nemo_gym(math)  # its rollout's message is blank: the expected answer demonstrates
    assert rec["metadata"]["demonstration"] == "expected_answer"
    assert rec["messages"][-1] == {"role": "assistant", "content": math["expected_answer"]}

"""Converters from OpenAI chat, NeMo Gym pivot rows and ShareGPT into canonical records."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from pivot_envs.convert import (
    FORMATS,
    ConvertReport,
    convert_file,
    detect_format,
    from_nemo_gym,
    from_openai,
    from_sharegpt,
)
from pivot_envs.trajectory import Trajectory, TrajectoryError, load_trajectories, record_from_dict

READ_FILE = {
    "name": "read_file",
    "description": "Read a file.",
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
}
RUN_TESTS = {
    "name": "run_tests",
    "description": "Run the test suite.",
    "parameters": {"type": "object", "properties": {"target": {"type": "string"}}},
}


def roles(rec: dict[str, Any]) -> list[str]:
    return [m["role"] for m in rec["messages"]]


def calls_of(msg: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(name, parsed arguments)`` per call; also checks arguments are JSON strings."""
    out = []
    for call in msg["tool_calls"]:
        assert call["type"] == "function"
        assert isinstance(call["function"]["arguments"], str)
        out.append((call["function"]["name"], json.loads(call["function"]["arguments"])))
    return out


def check_canonical(rec: dict[str, Any]) -> Trajectory:
    """The record loads, every tool message answers a call of the turn before it, and it is a fixed point."""
    traj = record_from_dict(rec)
    open_ids: set[str] = set()
    for m in rec["messages"]:
        assert isinstance(m.get("content"), str | None), m
        if m["role"] == "assistant":
            open_ids = {c["id"] for c in m.get("tool_calls", [])}
        elif m["role"] == "tool":
            assert m["tool_call_id"] in open_ids, m
            open_ids.discard(m["tool_call_id"])
    assert from_openai(rec) == rec
    assert from_openai(traj.to_dict()) == traj.to_dict()
    return traj


def field_of(exc_info: pytest.ExceptionInfo[TrajectoryError]) -> str | None:
    return exc_info.value.field


# ---------------------------------------------------------------------------------------------------
# OpenAI


def openai_row() -> dict[str, Any]:
    return copy.deepcopy(
        {
            "tools": [{"type": "function", "function": READ_FILE}, {"function": RUN_TESTS}],
            "messages": [
                {"role": "developer", "content": "You fix bugs."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Tests fail in "},
                        {"type": "text", "text": "calc.py"},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "reasoning_content": "Read the code and run the tests.",
                    "tool_calls": [
                        {"id": "a", "function": {"name": "read_file", "arguments": {"path": "calc.py"}}},
                        {
                            "id": "b",
                            "type": "function",
                            "function": {"name": "run_tests", "arguments": '{"target": "tests"}'},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "a", "content": "def add(a, b): return a - b"},
                {"role": "tool", "tool_call_id": "b", "content": {"failed": 1}},
                {"role": "assistant", "content": [{"type": "text", "text": "add subtracts; it should add."}]},
            ],
            "parallel_tool_calls": True,
        }
    )


def test_from_openai_normalises_a_multi_turn_record():
    row = openai_row()
    before = copy.deepcopy(row)
    rec = from_openai(row)
    assert row == before  # the input is not modified
    assert roles(rec) == ["system", "user", "assistant", "tool", "tool", "assistant"]
    assert rec["messages"][1]["content"] == "Tests fail in calc.py"
    turn = rec["messages"][2]
    assert calls_of(turn) == [("read_file", {"path": "calc.py"}), ("run_tests", {"target": "tests"})]
    assert turn["reasoning_content"] == "Read the code and run the tests."
    assert rec["messages"][4]["content"] == '{"failed": 1}'
    assert rec["messages"][5]["content"] == "add subtracts; it should add."
    assert rec["tools"] == [
        {"type": "function", "function": READ_FILE},
        {"type": "function", "function": RUN_TESTS},
    ]
    assert rec["metadata"] == {"parallel_tool_calls": True}
    assert rec["domain"] == "generic"
    assert rec["id"].startswith("traj-") and rec["id"] == from_openai(openai_row())["id"]
    traj = check_canonical(rec)
    assert traj.num_turns == 2 and traj.tool_outputs(0) == {
        "a": "def add(a, b): return a - b",
        "b": '{"failed": 1}',
    }


def test_from_openai_converts_the_legacy_function_call_api():
    row = {
        "id": "legacy-1",
        "functions": [READ_FILE, RUN_TESTS],
        "messages": [
            {"role": "user", "content": "Check calc.py"},
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "read_file", "arguments": '{"path": "calc.py"}'},
            },
            {"role": "function", "name": "read_file", "content": "x = 1"},
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "run_tests", "arguments": {"target": "all"}},
            },
            {"role": "function", "name": "run_tests", "content": "ok"},
            {"role": "assistant", "content": "All good."},
        ],
    }
    rec = from_openai(row)
    assert roles(rec) == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    first, second = rec["messages"][1], rec["messages"][3]
    assert "function_call" not in first
    assert first["tool_calls"][0]["id"] == "call_0_0" and second["tool_calls"][0]["id"] == "call_1_0"
    assert calls_of(second) == [("run_tests", {"target": "all"})]
    assert (
        rec["messages"][2]["tool_call_id"] == "call_0_0" and rec["messages"][4]["tool_call_id"] == "call_1_0"
    )
    assert [t["function"]["name"] for t in rec["tools"]] == ["read_file", "run_tests"]
    assert all(t["type"] == "function" for t in rec["tools"])
    assert "functions" not in rec and "functions" not in rec.get("metadata", {})
    check_canonical(rec)


def test_from_openai_generated_ids_avoid_existing_ones_and_ids_depend_on_messages():
    row = {
        "messages": [
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "tool_calls": [{"function": {"name": "f"}}, {"id": "call_0_1", "function": {"name": "g"}}],
            },
            {"role": "tool", "content": "1"},
            {"role": "tool", "tool_call_id": "call_0_1", "content": "2"},
            {"role": "assistant", "content": "done"},
        ]
    }
    rec = from_openai(row)
    assert [c["id"] for c in rec["messages"][1]["tool_calls"]] == ["call_0_0", "call_0_1"]
    assert rec["messages"][2]["tool_call_id"] == "call_0_0"  # positional fill for a tool message without id
    other = copy.deepcopy(row)
    other["messages"][-1]["content"] = "finished"
    assert from_openai(other)["id"] != rec["id"]
    check_canonical(rec)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (
            lambda r: r["messages"][2]["tool_calls"][0]["function"].pop("name"),
            "messages[2].tool_calls[0].function.name",
        ),
        (
            lambda r: r["messages"][2]["tool_calls"][1]["function"].update(arguments="{target: tests"),
            "messages[2].tool_calls[1].function.arguments",
        ),
        (
            lambda r: r["messages"][2]["tool_calls"][1]["function"].update(arguments="[1]"),
            "messages[2].tool_calls[1].function.arguments",
        ),
        (lambda r: r["messages"][1].update(role="human"), "messages[1].role"),
        (
            lambda r: r["messages"][1].update(content=[{"type": "image_url", "image_url": {"url": "x"}}]),
            "messages[1].content[0]",
        ),
        (lambda r: r["messages"][2]["tool_calls"][1].update(id="a"), "messages[2].tool_calls"),
        (lambda r: r["messages"][3].update(tool_call_id="zzz"), "messages[3].tool_call_id"),
        (lambda r: r.pop("messages"), "messages"),
        (lambda r: r["tools"][0]["function"].pop("name"), "tools[0].function.name"),
    ],
)
def test_from_openai_rejects_malformed_input_naming_the_field(mutate, field):
    row = openai_row()
    mutate(row)
    with pytest.raises(TrajectoryError) as exc_info:
        from_openai(row)
    assert field_of(exc_info) == field


def test_from_openai_requires_an_object():
    with pytest.raises(TrajectoryError, match="expected a JSON object, got list"):
        from_openai([])


# ---------------------------------------------------------------------------------------------------
# NeMo Gym


def nemo_row() -> dict[str, Any]:
    return copy.deepcopy(
        {
            "id": "swe-42",
            "agent_ref": {"type": "responses_api_agents", "name": "simple_agent"},
            "metadata": {"difficulty": "easy"},
            "responses_create_params": {
                "input": [
                    {"role": "developer", "content": "You fix bugs."},
                    {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "Fix calc.py"}],
                    },
                    {
                        "type": "reasoning",
                        "id": "rs_1",
                        "summary": [{"type": "summary_text", "text": "Look first."}],
                    },
                    {
                        "type": "function_call",
                        "id": "fc_1",
                        "call_id": "call_a",
                        "name": "read_file",
                        "arguments": '{"path": "calc.py"}',
                    },
                    {
                        "type": "function_call",
                        "id": "fc_2",
                        "call_id": "call_b",
                        "name": "run_tests",
                        "arguments": '{"target": "tests"}',
                    },
                    {
                        "type": "function_call_output",
                        "call_id": "call_a",
                        "output": "def add(a, b): return a - b",
                    },
                    {"type": "function_call_output", "call_id": "call_b", "output": "1 failed"},
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": "add subtracts. Shall I fix it?"}],
                    },
                    {"role": "user", "content": "Yes, then rerun the tests."},
                    {
                        "type": "reasoning",
                        "summary": [{"type": "summary_text", "text": "Rerun after the edit."}],
                    },
                ],
                "tools": [
                    {"type": "function", **READ_FILE, "strict": True},
                    {"type": "function", **RUN_TESTS},
                ],
                "parallel_tool_calls": True,
                "temperature": 0.0,
            },
            "expected_action": {
                "type": "function_call",
                "call_id": "call_c",
                "name": "run_tests",
                "arguments": '{"target": "tests/test_calc.py"}',
            },
        }
    )


def test_from_nemo_gym_converts_a_pivot_row():
    row = nemo_row()
    before = copy.deepcopy(row)
    rec = from_nemo_gym(row)
    assert row == before
    assert roles(rec) == ["system", "user", "assistant", "tool", "tool", "assistant", "user", "assistant"]
    assert rec["id"].startswith("swe-42-") and rec["domain"] == "generic"
    parallel = rec["messages"][2]
    assert parallel["reasoning_content"] == "Look first."
    assert calls_of(parallel) == [("read_file", {"path": "calc.py"}), ("run_tests", {"target": "tests"})]
    assert [c["id"] for c in parallel["tool_calls"]] == ["call_a", "call_b"]
    assert [m["tool_call_id"] for m in rec["messages"][3:5]] == ["call_a", "call_b"]
    assert rec["messages"][5] == {"role": "assistant", "content": "add subtracts. Shall I fix it?"}
    pivot = rec["messages"][-1]
    assert calls_of(pivot) == [("run_tests", {"target": "tests/test_calc.py"})]
    assert pivot["reasoning_content"] == "Rerun after the edit."
    assert rec["tools"][0] == {"type": "function", "function": {**READ_FILE, "strict": True}}
    assert rec["tools"][1] == {"type": "function", "function": RUN_TESTS}
    assert rec["metadata"] == {
        "difficulty": "easy",
        "agent_ref": {"type": "responses_api_agents", "name": "simple_agent"},
        "source_format": "nemo_gym",
        "demonstration": "expected_action",
        "responses_create_params": {"parallel_tool_calls": True, "temperature": 0.0},
    }
    traj = check_canonical(rec)
    assert traj.num_turns == 3 and traj.action(2).tool_calls[0].arguments == {"target": "tests/test_calc.py"}


def test_from_nemo_gym_expected_action_parallel_calls_or_a_message():
    row = nemo_row()
    row["expected_action"] = [
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Both."}]},
        {"type": "function_call", "name": "read_file", "arguments": {"path": "calc.py"}},
        {"type": "function_call", "name": "run_tests", "arguments": "{}"},
    ]
    rec = from_nemo_gym(row)
    pivot = rec["messages"][-1]
    assert calls_of(pivot) == [("read_file", {"path": "calc.py"}), ("run_tests", {})]
    assert [c["id"] for c in pivot["tool_calls"]] == ["call_2_0", "call_2_1"]
    assert pivot["reasoning_content"] == "Rerun after the edit.\nBoth."
    check_canonical(rec)

    row["expected_action"] = {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Done: add now adds."}],
    }
    del row["id"]
    rec = from_nemo_gym(row)
    assert rec["messages"][-1]["content"] == "Done: add now adds." and "tool_calls" not in rec["messages"][-1]
    assert re.fullmatch(r"nemo-[0-9a-f]{8}", rec["id"])
    check_canonical(rec)


def test_from_nemo_gym_accepts_string_input_and_instructions():
    row = {
        "responses_create_params": {"input": "What is 2+2?", "instructions": "Be brief."},
        "expected_action": {"role": "assistant", "content": "4"},
    }
    rec = from_nemo_gym(row)
    assert rec["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
    ]
    check_canonical(rec)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r["responses_create_params"].pop("input"), "responses_create_params.input"),
        (lambda r: r.pop("responses_create_params"), "responses_create_params"),
        (
            lambda r: r["responses_create_params"]["input"][3].pop("name"),
            "responses_create_params.input[3].name",
        ),
        (
            lambda r: r["responses_create_params"]["input"][4].update(arguments='{"target": '),
            "responses_create_params.input[4].arguments",
        ),
        (lambda r: r["expected_action"].update(arguments="not json"), "expected_action.arguments"),
        (lambda r: r["expected_action"].pop("name"), "expected_action.name"),
        (lambda r: r.update(expected_action={"role": "user", "content": "hi"}), "expected_action.role"),
        (
            lambda r: r.update(
                expected_action=[{"type": "function_call_output", "call_id": "call_a", "output": "x"}]
            ),
            "expected_action[0].type",
        ),
        (
            lambda r: r["responses_create_params"]["input"][5].update(call_id="call_zzz"),
            "responses_create_params.input[5].call_id",
        ),
        (
            lambda r: r["responses_create_params"]["input"][1].update(role="robot"),
            "responses_create_params.input[1].role",
        ),
        (
            lambda r: r["responses_create_params"]["input"].append({"type": "web_search_call"}),
            "responses_create_params.input[10].type",
        ),
        (
            lambda r: r["responses_create_params"]["input"][1]["content"].append(
                {"type": "input_image", "image_url": "x"}
            ),
            "responses_create_params.input[1].content[1]",
        ),
        (
            lambda r: r["responses_create_params"]["tools"].append({"type": "web_search"}),
            "responses_create_params.tools[2].type",
        ),
        (
            lambda r: r["responses_create_params"]["tools"][1].pop("name"),
            "responses_create_params.tools[1].name",
        ),
    ],
)
def test_from_nemo_gym_rejects_malformed_input_naming_the_field(mutate, field):
    row = nemo_row()
    mutate(row)
    with pytest.raises(TrajectoryError) as exc_info:
        from_nemo_gym(row)
    assert field_of(exc_info) == field
    assert field in str(exc_info.value)


def test_from_nemo_gym_without_expected_action_needs_an_assistant_turn():
    row = nemo_row()
    del row["expected_action"]
    check_canonical(from_nemo_gym(row))  # the input has assistant turns of its own
    row["responses_create_params"]["input"] = [{"role": "user", "content": "hi"}]
    with pytest.raises(TrajectoryError) as exc_info:
        from_nemo_gym(row)
    assert field_of(exc_info) == "expected_action"


# ---------------------------------------------------------------------------------------------------
# ShareGPT


def sharegpt_row() -> dict[str, Any]:
    return copy.deepcopy(
        {
            "system": "You fix bugs.",
            "tools": json.dumps([READ_FILE, RUN_TESTS]),
            "conversations": [
                {"from": "human", "value": "Tests fail in calc.py"},
                {"from": "gpt", "value": "<think>Read the code and run the tests.</think>\nLet me look."},
                {
                    "from": "function_call",
                    "value": json.dumps(
                        [
                            {"name": "read_file", "arguments": {"path": "calc.py"}},
                            {"name": "run_tests", "arguments": {"target": "tests"}},
                        ]
                    ),
                },
                {"from": "observation", "value": json.dumps(["def add(a, b): return a - b", {"failed": 1}])},
                {
                    "from": "function_call",
                    "value": json.dumps({"name": "read_file", "arguments": '{"path": "test_calc.py"}'}),
                },
                {"from": "observation", "value": "assert add(1, 2) == 3"},
                {"from": "gpt", "value": "add subtracts; it should add."},
            ],
            "source": "glaive",
        }
    )


def test_from_sharegpt_converts_a_multi_turn_row():
    row = sharegpt_row()
    before = copy.deepcopy(row)
    rec = from_sharegpt(row)
    assert row == before
    assert roles(rec) == ["system", "user", "assistant", "tool", "tool", "assistant", "tool", "assistant"]
    first = rec["messages"][2]
    assert (
        first["content"] == "Let me look."
        and first["reasoning_content"] == "Read the code and run the tests."
    )
    assert calls_of(first) == [("read_file", {"path": "calc.py"}), ("run_tests", {"target": "tests"})]
    assert [c["id"] for c in first["tool_calls"]] == ["call_0_0", "call_0_1"]
    assert [(m["tool_call_id"], m["content"]) for m in rec["messages"][3:5]] == [
        ("call_0_0", "def add(a, b): return a - b"),
        ("call_0_1", '{"failed": 1}'),
    ]
    second = rec["messages"][5]
    assert second["content"] is None and second["tool_calls"][0]["id"] == "call_1_0"
    assert calls_of(second) == [("read_file", {"path": "test_calc.py"})]
    assert rec["messages"][6]["tool_call_id"] == "call_1_0"
    assert rec["messages"][-1] == {"role": "assistant", "content": "add subtracts; it should add."}
    assert rec["tools"] == [
        {"type": "function", "function": READ_FILE},
        {"type": "function", "function": RUN_TESTS},
    ]
    assert rec["metadata"] == {"source": "glaive", "source_format": "sharegpt"}
    check_canonical(rec)


def test_from_sharegpt_separate_observations_answer_open_calls_in_order():
    row = sharegpt_row()
    row["tools"] = [{"type": "function", "function": READ_FILE}, RUN_TESTS]  # a list, mixed wrapping
    row["conversations"][3:4] = [
        {"from": "observation", "value": "source"},
        {"from": "tool", "value": "1 failed"},
    ]
    rec = from_sharegpt(row)
    assert [(m["tool_call_id"], m["content"]) for m in rec["messages"][3:5]] == [
        ("call_0_0", "source"),
        ("call_0_1", "1 failed"),
    ]
    assert [t["function"]["name"] for t in rec["tools"]] == ["read_file", "run_tests"]
    check_canonical(rec)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (
            lambda r: r["conversations"][4].update(value=json.dumps({"arguments": {}})),
            "conversations[4].value.name",
        ),
        (
            lambda r: r["conversations"][2].update(
                value=json.dumps([{"name": "read_file"}, {"arguments": {}}])
            ),
            "conversations[2].value[1].name",
        ),
        (
            lambda r: r["conversations"][4].update(
                value=json.dumps({"name": "read_file", "arguments": "{oops"})
            ),
            "conversations[4].value.arguments",
        ),
        (lambda r: r["conversations"][4].update(value="read_file(path='x')"), "conversations[4].value"),
        (lambda r: r["conversations"][0].update({"from": "humann"}), "conversations[0].from"),
        (lambda r: r["conversations"][0].update(value=None), "conversations[0].value"),
        (
            lambda r: r["conversations"].insert(0, {"from": "observation", "value": "x"}),
            "conversations[0].from",
        ),
        (lambda r: r["conversations"][6].update(value=""), "conversations[6].value"),
        (lambda r: r.update(tools="[{"), "tools"),
        (lambda r: r.pop("conversations"), "conversations"),
    ],
)
def test_from_sharegpt_rejects_malformed_input_naming_the_field(mutate, field):
    row = sharegpt_row()
    mutate(row)
    with pytest.raises(TrajectoryError) as exc_info:
        from_sharegpt(row)
    assert field_of(exc_info) == field


def test_from_sharegpt_unknown_role_suggests_a_known_one():
    row = sharegpt_row()
    row["conversations"][0]["from"] = "humann"
    with pytest.raises(TrajectoryError, match="did you mean 'human'"):
        from_sharegpt(row)


# ---------------------------------------------------------------------------------------------------
# Formats and files


def test_detect_format():
    assert detect_format(openai_row()) == "openai"
    assert detect_format(nemo_row()) == "nemo_gym"
    assert detect_format(sharegpt_row()) == "sharegpt"
    assert set(FORMATS) == {"openai", "nemo_gym", "sharegpt"}
    with pytest.raises(TrajectoryError, match="cannot tell the format.*turns"):
        detect_format({"turns": []})
    with pytest.raises(TrajectoryError, match="expected a JSON object"):
        detect_format("messages")


def write_lines(path, rows: list[Any]) -> None:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )


def test_convert_file_converts_good_lines_and_reports_bad_ones(tmp_path):
    bad = nemo_row()
    bad["id"] = "bad"
    del bad["responses_create_params"]["input"][3]["name"]
    second = nemo_row()
    second["id"] = "swe-43"
    src, dst = tmp_path / "rows.jsonl", tmp_path / "out" / "records.jsonl"
    write_lines(src, [nemo_row(), bad, "", second, "{not json", nemo_row()])
    report = convert_file(src, dst, "nemo_gym")
    assert isinstance(report, ConvertReport)
    assert report.converted == 2
    assert [(e.line, e.field) for e in report.errors] == [
        (2, "responses_create_params.input[3].name"),
        (5, "<line>"),
        (6, "id"),
    ]
    assert report.failed_lines == [2, 5, 6] and "rows.jsonl:2" in str(report)
    assert report.rows == 5  # the blank line is no row
    loaded = load_trajectories(dst, strict=True)
    assert [t.id.rsplit("-", 1)[0] for t in loaded] == ["swe-42", "swe-43"]
    for t in loaded:
        check_canonical(t.to_dict())


def test_convert_file_strict_raises_with_the_line_and_writes_nothing(tmp_path):
    bad = sharegpt_row()
    bad["conversations"][0]["from"] = "robot"
    src, dst = tmp_path / "rows.jsonl", tmp_path / "records.jsonl"
    write_lines(src, [sharegpt_row(), bad])
    with pytest.raises(TrajectoryError) as exc_info:
        convert_file(src, dst, "sharegpt", strict=True)
    err = exc_info.value
    assert (err.path, err.line, err.field) == (str(src), 2, "conversations[0].from")
    assert "rows.jsonl:2" in str(err)
    assert not dst.exists()


def test_convert_file_auto_detects_each_line(tmp_path):
    src, dst = tmp_path / "mixed.jsonl", tmp_path / "records.jsonl"
    write_lines(src, [openai_row(), nemo_row(), sharegpt_row(), {"turns": []}])
    report = convert_file(src, dst, "auto")
    assert report.converted == 3
    assert [(e.line, e.field) for e in report.errors] == [(4, "<record>")]
    assert len(load_trajectories(dst, strict=True)) == 3


def test_convert_file_unknown_format_suggests_one(tmp_path):
    src = tmp_path / "rows.jsonl"
    write_lines(src, [openai_row()])
    with pytest.raises(
        ValueError, match=r"unknown trajectory format 'nemo-gym'.*openai.*did you mean 'nemo_gym'"
    ):
        convert_file(src, tmp_path / "out.jsonl", "nemo-gym")
    with pytest.raises(FileNotFoundError):
        convert_file(tmp_path / "missing.jsonl", tmp_path / "out.jsonl", "openai")


def test_from_openai_is_idempotent_on_every_converter_output():
    for rec in (from_openai(openai_row()), from_nemo_gym(nemo_row()), from_sharegpt(sharegpt_row())):
        again = from_openai(copy.deepcopy(rec))
        assert again == rec
        assert from_openai(again) == again


# ---------------------------------------------------------------------------------------------------
# Hostile JSON (issue 10, exploit 7): every converter reports it with the field, never another exception

DEEP = "[" * 1500 + "]" * 1500
HUGE_INT = "7" * 5000


def deep_value(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "convert, make_row, mutate, field, reason",
    [
        (from_openai, openai_row,
         lambda r: r["messages"][2]["tool_calls"][1]["function"].update(arguments=DEEP),
         "messages[2].tool_calls[1].function.arguments", "nested"),
        (from_openai, openai_row,
         lambda r: r["messages"][2]["tool_calls"][1]["function"].update(arguments='{"target": ' + HUGE_INT + "}"),
         "messages[2].tool_calls[1].function.arguments", "digits"),
        (from_openai, openai_row,
         lambda r: r["tools"][0]["function"].update(parameters='{"type": "object", "x": ' + DEEP + "}"),
         "tools[0].function.parameters", "nested"),
        (from_openai, openai_row, lambda r: r.update(metadata={"blob": deep_value(3000)}), "metadata.blob", "nested"),
        (from_sharegpt, sharegpt_row, lambda r: r["conversations"][2].update(value=DEEP), "conversations[2].value",
         "nested"),
        (from_sharegpt, sharegpt_row, lambda r: r.update(tools="[" + HUGE_INT + "]"), "tools", "digits"),
        (from_nemo_gym, nemo_row, lambda r: r.update(extra=deep_value(500)), "extra", "nested"),
    ],
    ids=["openai-deep-args", "openai-huge-int", "openai-deep-schema", "openai-deep-row", "sharegpt-deep-call",
         "sharegpt-huge-tools", "nemo-deep-row"],
)
def test_converters_report_hostile_json_with_its_field(convert, make_row, mutate, field, reason):
    row = make_row()
    mutate(row)
    with pytest.raises(TrajectoryError) as exc_info:
        convert(row)
    assert field_of(exc_info).startswith(field) and reason in exc_info.value.reason, exc_info.value


def test_sharegpt_observation_that_is_hostile_json_is_kept_as_text():
    row = sharegpt_row()
    row["conversations"][3]["value"] = DEEP  # two calls are open: a JSON list would answer both
    rec = from_sharegpt(row)
    outputs = [m["content"] for m in rec["messages"] if m["role"] == "tool"]
    assert outputs[0] == DEEP  # not a sane list: one output for the first call, as for any other text


# ---------------------------------------------------------------------------------------------------
# The command line prints user data as written


def test_cli_prints_user_data_without_markup_or_emoji(tmp_path):
    from typer.testing import CliRunner

    from agents.cli import app

    runner = CliRunner()
    src = tmp_path / "[bold]rows.jsonl"
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    bad = {"messages": [{"role": "robot [bold]x[/bold] :thumbs_up:", "content": "hi"}]}
    # line 100 is the bad one: its location reads "...jsonl:100: ...", which rich turned into an emoji
    write_lines(src, [{**good, "id": f"r{i}"} for i in range(99)] + [bad])
    for args in (["data", "convert", "--from", "openai", str(src), str(tmp_path / "out.jsonl")],
                 ["data", "validate", str(src)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        text = " ".join(result.output.split())  # rich may wrap long lines
        assert ":100:" in text and "\N{HUNDRED POINTS SYMBOL}" not in text, text
        assert "[bold]rows.jsonl" in text and "[bold]x[/bold]" in text and ":thumbs_up:" in text, text


def test_cli_convert_nemo_gym_options(tmp_path):
    from typer.testing import CliRunner

    from agents.cli import app

    src, out = tmp_path / "rows.jsonl", tmp_path / "out.jsonl"
    write_lines(src, [nemo_row()])
    runner = CliRunner()
    result = runner.invoke(app, ["data", "convert", "--from", "nemo_gym", "--last-turn-only", "--nemo-preset", "search",
                                 "--domain", "tool_use", str(src), str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    assert "converted 1 record(s) from 1 row(s)" in text and "; 1 candidate(s)" in text
    rec = json.loads(out.read_text(encoding="utf-8"))
    assert rec["domain"] == "tool_use" and rec["metadata"]["verifier_settings"] == {
        "nemo": {"word_count_similarity_threshold": 0.3}}
    assert [m.get("pivotrl") for m in rec["messages"] if m["role"] == "assistant"] == [{"skip": True}, {"skip": True}, None]
    bad = runner.invoke(app, ["data", "convert", "--from", "nemo_gym", "--nemo-preset", "serch", str(src), str(out)])
    assert bad.exit_code == 2 and "did you mean 'search'" in bad.output
    other = runner.invoke(app, ["data", "convert", "--from", "sharegpt", "--last-turn-only", str(src), str(out)])
    assert other.exit_code == 2 and "last_turn_only" in other.output

from __future__ import annotations

import json

import pytest

from pivot_envs.actions import Action, ToolCall


def test_parse_hermes_tool_calls_and_reasoning():
    text = ('<think>look it up</think>Checking.<tool_call>{"name": "get_order", "arguments": {"order_id": "W1"}}'
            '</tool_call>\n<tool_call>{"name": "get_user", "arguments": "{\\"user_id\\": \\"u1\\"}"}</tool_call>')
    a = Action.parse(text)
    assert a.kind == "tool_call"
    assert [c.name for c in a.tool_calls] == ["get_order", "get_user"]
    assert a.tool_calls[0].arguments == {"order_id": "W1"}
    assert a.tool_calls[1].arguments == {"user_id": "u1"}  # arguments given as a JSON string
    assert a.reasoning == "look it up"
    assert a.content == "Checking."
    assert a.malformed is None


def test_message_round_trip_through_text_and_message():
    a = Action.parse('<tool_call>{"name": "f", "arguments": {"x": [1, 2]}}</tool_call>')
    assert Action.parse(a.to_text()) == a
    msg = a.to_message()
    assert msg["role"] == "assistant" and json.loads(msg["tool_calls"][0]["function"]["arguments"]) == {"x": [1, 2]}
    assert Action.from_message(msg).tool_calls[0].arguments == {"x": [1, 2]}


@pytest.mark.parametrize(
    "text, reason",
    [
        ('<tool_call>{"name": "f", "arguments": {"x": 1}', "unterminated"),
        ("<tool_call>{not json}</tool_call>", "not valid JSON"),
        ('<tool_call>["f"]</tool_call>', "must be a JSON object"),
        ('<tool_call>{"arguments": {}}</tool_call>', "no function name"),
        ('<tool_call>{"name": "f", "arguments": "[1]"}</tool_call>', "must be a JSON object"),
    ],
)
def test_malformed_actions_are_data_not_exceptions(text, reason):
    a = Action.parse(text)
    assert a.malformed is not None and reason in a.malformed


def test_non_text_action_is_malformed():
    assert Action.parse(123).malformed  # type: ignore[arg-type]


def test_toolcall_from_openai_without_function():
    call = ToolCall.from_openai({"id": "x"})
    assert call.error and call.arguments is None


def test_unknown_format_is_rejected():
    with pytest.raises(ValueError, match="hermes"):
        Action.parse("hi", format="xml")

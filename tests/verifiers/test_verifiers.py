from __future__ import annotations

import pytest

from pivot_envs.actions import Action
from verifiers import Category, Verdict, VerifierError, VerifyContext, make_verifier
from verifiers.toolcall import values_equal, with_defaults

SCHEMA = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string"},
        "reason": {"type": "string", "enum": ["no longer needed", "ordered by mistake"]},
        "email": {"type": "string", "format": "email"},
        "amount": {"type": "number"},
        "item_ids": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "note": {"type": "string"},
        "notify": {"type": "boolean", "default": True},
    },
    "required": ["order_id"],
}
CTX = VerifyContext(tools=[{"type": "function", "function": {"name": "act", "parameters": SCHEMA}},
                           {"type": "function", "function": {"name": "other", "parameters": {}}}])


def call(args, name="act"):
    import json

    return Action.parse("<tool_call>" + json.dumps({"name": name, "arguments": args}) + "</tool_call>")


GOLD = call({"order_id": "W1", "reason": "no longer needed", "email": "Ann@x.com", "amount": 2,
             "item_ids": ["a", "b"], "note": "customer wants a refund to the original card"})


@pytest.mark.parametrize(
    "candidate",
    [
        {"order_id": " W1", "reason": "no longer needed", "email": "ann@X.com", "amount": 2.0,
         "item_ids": ["b", "a"], "note": "customer wants a refund to the original card"},
        {"order_id": "W1", "reason": "no longer needed", "email": "Ann@x.com", "amount": 2, "notify": True,
         "item_ids": ["a", "b"], "note": "the customer wants a refund to the original card"},
    ],
)
def test_equivalent_spellings_are_accepted(candidate):
    v = make_verifier("toolcall").verify(GOLD, call(candidate), CTX)
    assert v.equivalent and v.score == 1.0 and v.method == "rule" and v.category == Category.EQUIVALENT


@pytest.mark.parametrize(
    "change, category",
    [
        ({"order_id": "W2"}, Category.ARG_VALUE),
        ({"reason": "ordered by mistake"}, Category.ARG_VALUE),
        ({"amount": 2.5}, Category.ARG_VALUE),
        ({"amount": [2]}, Category.ARG_TYPE),
        ({"amount": "20"}, Category.ARG_VALUE),
        ({"notify": False}, Category.ARG_VALUE),
        ({"item_ids": ["a"]}, Category.ARG_VALUE),
        ({"note": "cancel everything now please"}, Category.ARG_VALUE),
        ({"extra": 1}, Category.ARG_EXTRA),
    ],
)
def test_differences_are_rejected_with_a_category(change, category):
    args = dict(GOLD.tool_calls[0].arguments, **change)
    v = make_verifier("toolcall").verify(GOLD, call(args), CTX)
    assert not v.equivalent and v.score == 0.0 and v.category == category


def test_missing_argument_wrong_tool_unknown_tool_and_kind():
    v = make_verifier("toolcall")
    args = dict(GOLD.tool_calls[0].arguments)
    del args["email"]
    assert v.verify(GOLD, call(args), CTX).category == Category.ARG_MISSING
    assert v.verify(GOLD, call(GOLD.tool_calls[0].arguments, name="other"), CTX).category == Category.WRONG_TOOL
    assert v.verify(GOLD, call(GOLD.tool_calls[0].arguments, name="rm_rf"), CTX).category == Category.UNKNOWN_TOOL
    assert v.verify(GOLD, Action.parse("Sure, done."), CTX).category == Category.WRONG_KIND


def test_parallel_calls_match_as_a_multiset():
    v = make_verifier("toolcall")
    a = Action.parse('<tool_call>{"name": "other", "arguments": {}}</tool_call>'
                     '<tool_call>{"name": "act", "arguments": {"order_id": "W1"}}</tool_call>')
    b = Action.parse('<tool_call>{"name": "act", "arguments": {"order_id": "W1"}}</tool_call>'
                     '<tool_call>{"name": "other", "arguments": {}}</tool_call>')
    assert v.verify(a, b, CTX).equivalent
    assert v.verify(a, call({"order_id": "W1"}), CTX).category == Category.CALL_COUNT


def test_malformed_candidates_score_zero_with_a_reason():
    v = make_verifier("toolcall")
    bad_json = Action.parse('<tool_call>{"name": "act", "arguments": "{oops"}</tool_call>')
    verdict = v.verify(GOLD, bad_json, CTX)
    assert verdict.score == 0 and verdict.method == "error" and verdict.category == Category.BAD_JSON
    assert "reason" in verdict.details
    assert v.verify(GOLD, Action.parse("<tool_call>{"), CTX).category == Category.BAD_FORMAT


def test_messages_are_judged_by_content_not_accepted_blindly():
    v = make_verifier("toolcall")
    gold = Action.parse("Your order W1 is pending and will ship tomorrow.")
    assert v.verify(gold, Action.parse("Order W1 is pending; it will ship tomorrow.")).equivalent
    assert v.verify(gold, Action.parse("ok")).category == Category.MESSAGE_DIFFERS
    assert v.verify(gold, Action.parse("   ")).category == Category.EMPTY


def test_exact_match_baseline():
    v = make_verifier("exact")
    assert v.verify(GOLD, GOLD).equivalent
    reordered = call(dict(reversed(list(GOLD.tool_calls[0].arguments.items()))))
    assert v.verify(GOLD, reordered).equivalent  # key order is not a difference
    spaced = call(dict(GOLD.tool_calls[0].arguments, order_id=" W1"))
    assert v.verify(GOLD, spaced).category == Category.NOT_EXACT  # but spelling is


def test_unknown_verifier_suggests_a_name():
    with pytest.raises(VerifierError, match="Did you mean 'toolcall'"):
        make_verifier("toolcal")


def test_verdict_validates_itself():
    with pytest.raises(ValueError):
        Verdict(2.0, True, "rule", "X")
    with pytest.raises(ValueError):
        Verdict(1.0, True, "magic", "X")


def test_value_rules():
    assert values_equal(1, 1.0) and not values_equal(True, 1)
    assert values_equal({"a": [1, 2]}, {"a": [1, 2.0]}) and not values_equal({"a": 1}, {"b": 1})
    assert with_defaults({"order_id": "W1"}, SCHEMA)["notify"] is True
    assert "note" not in with_defaults({"order_id": "W1", "note": None}, SCHEMA)


def test_batch_equals_single():
    v = make_verifier("toolcall")
    cands = [GOLD, call({"order_id": "W9"}), Action.parse("hi")]
    assert v.verify_batch(GOLD, cands, CTX) == [v.verify(GOLD, c, CTX) for c in cands]

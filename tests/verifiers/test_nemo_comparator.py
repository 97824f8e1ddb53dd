"""The NeMo-Gym-compatible comparator: its quirks, and agreement with nemo-gym itself when installed."""

from __future__ import annotations

import json
import random

import pytest

from pivot_envs.actions import Action, ToolCall
from verifiers import Category, make_verifier


def call(name, args):
    return ToolCall.from_parts(name, json.dumps(args))


def act(*calls):
    return Action(tool_calls=tuple(calls))


def test_released_rules_quirks_included():
    v = make_verifier("nemo")
    gold = act(call("f", {"n": 2, "x": 1.5, "s": "hello there world", "id": "W1", "l": [1, 2]}))
    same = {"n": 2, "x": 1.5000001, "s": "hello world", "id": "W1", "l": [1, 2]}
    assert v.verify(gold, act(call("f", same))).equivalent  # word overlap 2/5 >= 0.1
    assert v.verify(gold, act(call("f", {**same, "n": 2.0}))).category == Category.ARG_TYPE
    assert v.verify(gold, act(call("f", {**same, "id": "w1"}))).category == Category.ARG_VALUE
    assert v.verify(gold, act(call("f", {**same, "l": [2, 1]}))).category == Category.ARG_VALUE
    assert v.verify(gold, act(call("f", {**same, "extra": 1}))).category == Category.ARG_EXTRA
    assert v.verify(gold, act(call("g", same))).category == Category.WRONG_TOOL
    # any message where a message was expected: NeMo's exploitable rule, reproduced
    assert v.verify(Action(content="Your refund is $5."), Action(content="ok")).equivalent
    # extra calls are free by default, not with strict_count
    assert v.verify(gold, act(call("f", same), call("h", {}))).equivalent
    assert not make_verifier("nemo", strict_count=True).verify(gold, act(call("f", same), call("h", {}))).equivalent


def _random_value(rng, depth=0):
    kind = rng.choice(["int", "float", "str", "words", "bool", "list", "dict"] if depth < 2 else ["int", "str", "float"])
    if kind == "int":
        return rng.choice([0, 1, 2, 7])
    if kind == "float":
        return rng.choice([0.5, 1.0, 2.25])
    if kind == "str":
        return rng.choice(["W1", "w1", "a", "W1 "])
    if kind == "words":
        return " ".join(rng.choice(["cancel", "the", "order", "please", "now"]) for _ in range(rng.randint(1, 4)))
    if kind == "bool":
        return rng.choice([True, False])
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 2))]
    return {k: _random_value(rng, depth + 1) for k in rng.sample(["a", "b", "c"], rng.randint(0, 2))}


def _mutate(rng, args):
    out = json.loads(json.dumps(args))
    if out and rng.random() < 0.7:
        key = rng.choice(list(out))
        out[key] = _random_value(rng) if rng.random() < 0.5 else out[key]
    if rng.random() < 0.2:
        out["extra"] = 1
    return out


def test_agrees_with_nemo_gym():
    vu = pytest.importorskip("resources_servers.single_step_tool_use_with_argument_comparison.common.verification_utils")
    comparator = vu.ActionComparator(config=vu.ToolCallComparatorConfig(word_count_similarity_threshold=0.1))
    ours = make_verifier("nemo")
    rng = random.Random(0)
    agree = 0
    for _ in range(600):
        n = rng.choice([1, 1, 1, 2, 3])
        gold = [(rng.choice(["f", "g"]), {k: _random_value(rng) for k in rng.sample(["a", "b", "c", "d"], rng.randint(0, 3))})
                for _ in range(n)]
        cand = [(name if rng.random() < 0.9 else "g", _mutate(rng, args)) for name, args in gold]
        rng.shuffle(cand)
        if rng.random() < 0.2:
            cand = cand[: max(1, len(cand) - 1)]

        def nemo_action(calls):
            fc = [vu.FunctionCallAction(type="function_call", name=c, arguments=json.dumps(a)) for c, a in calls]
            return fc[0] if len(fc) == 1 else vu.FunctionCallBatchAction(type="function_call_batch", calls=fc)

        theirs = comparator.compare_action(nemo_action(gold), nemo_action(cand)).reward == 1.0
        mine = ours.verify(act(*[call(c, a) for c, a in gold]), act(*[call(c, a) for c, a in cand])).equivalent
        assert mine == theirs, (gold, cand)
        agree += 1
    assert agree == 600

"""The NeMo-Gym-compatible comparator: its quirks, and agreement with NeMo Gym's own ``verify()``.

The oracle is the ``verify()`` method of nemo-gym's ``single_step_tool_use_with_argument_comparison``
server, run as shipped (``extract_action`` + ``ActionComparator``). The wheel is installed without its
server dependencies (fastapi, orjson, ...), so the fixture puts minimal stand-ins for the three modules
``app.py`` imports only for its web server into ``sys.modules`` while it loads; none of NeMo's
comparison code is replaced.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
import random
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from pivot_envs.actions import Action, ToolCall
from pivot_envs.convert import NEMO_PRESETS, from_nemo_gym
from pivot_envs.trajectory import record_from_dict
from verifiers import Category, VerifierError, make_verifier
from verifiers.core import VerifyContext
from verifiers.nemo import NO_ACTION, action_from_response

SERVER = "resources_servers.single_step_tool_use_with_argument_comparison"


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
    # any message where a message was expected, a blank one too: NeMo's exploitable rule, reproduced
    assert v.verify(Action(content="Your refund is $5."), Action(content="ok")).equivalent
    assert v.verify(Action(content="Your refund is $5."), Action(content="")).equivalent
    # arguments are decoded as written: "" is not JSON, even for a call without parameters
    empty = v.verify(act(call("ping", {})), act(ToolCall.from_parts("ping", "")))
    assert (empty.score, empty.category, empty.details["nemo_category"]) == (0.0, Category.BAD_JSON,
                                                                             "ARGUMENTS_DECODE_ERROR")
    # extra calls are free by default, not with strict_count
    assert v.verify(gold, act(call("f", same), call("h", {}))).equivalent
    assert not make_verifier("nemo", strict_count=True).verify(gold, act(call("f", same), call("h", {}))).equivalent


def test_parallel_modes_score_between_zero_and_one():
    gold = act(call("w", {"city": "Paris"}), call("w", {"city": "Tokyo"}))
    half = act(call("w", {"city": "Tokyo"}), call("w", {"city": "Rome"}))
    f1 = make_verifier("nemo", **NEMO_PRESETS["parallel"])
    verdict = f1.verify(gold, half)
    assert (verdict.score, verdict.equivalent, verdict.details["nemo_category"]) == (0.5, False, "ARGUMENT_VALUE_DIFFERENT")
    spam = act(call("w", {"city": "Paris"}), call("w", {"city": "Tokyo"}), *[call("w", {"city": c}) for c in "ABC"])
    assert f1.verify(gold, spam).score == pytest.approx(2 * 2 / 7)
    assert make_verifier("nemo").verify(gold, spam).equivalent  # rewarding off: surplus calls are free


def test_settings_come_from_the_record_and_the_constructor_wins():
    row = {"responses_create_params": {"input": [{"role": "user", "content": "Find the bug."}]},
           "expected_action": {"type": "function_call", "name": "search", "arguments": '{"query": "null pointer crash"}'}}
    unrelated = act(call("search", {"query": "weather in paris"}))  # no shared word: similarity 0
    plain = record_from_dict(from_nemo_gym(row))
    swe = record_from_dict(from_nemo_gym(row, verifier_settings=NEMO_PRESETS["swe"]))
    assert swe.metadata["verifier_settings"] == {"nemo": {"word_count_similarity_threshold": 0.0}}
    v = make_verifier("nemo")
    expected = swe.action(0)
    assert not v.verify(expected, unrelated, VerifyContext(trajectory=plain)).equivalent
    assert v.verify(expected, unrelated, VerifyContext(trajectory=swe)).equivalent  # threshold 0.0
    assert not make_verifier("nemo", word_threshold=0.1).verify(expected, unrelated,
                                                                VerifyContext(trajectory=swe)).equivalent
    assert not make_verifier("nemo", use_record_settings=False).verify(expected, unrelated,
                                                                       VerifyContext(trajectory=swe)).equivalent
    bad = record_from_dict({**from_nemo_gym(row), "metadata": {"verifier_settings": {"nemo": {"word_treshold": 0}}}})
    with pytest.raises(VerifierError, match="unknown NeMo comparator setting 'word_treshold'"):
        v.verify(expected, unrelated, VerifyContext(trajectory=bad))
    with pytest.raises(VerifierError, match="reward mode 'f2'"):
        make_verifier("nemo", parallel_tool_call_reward_mode="f2")


def test_action_from_response_follows_extract_action():
    text = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi"}]}
    fc = {"type": "function_call", "name": "f", "arguments": "{}"}
    assert action_from_response({"output": [text, fc]}).tool_calls[0].name == "f"  # calls win over text
    assert action_from_response([text]).content == "Hi"
    assert action_from_response([{"type": "reasoning", "summary": []}]).parse_error == NO_ACTION
    verdict = make_verifier("nemo").verify(Action(content="x"), action_from_response([]))
    assert (verdict.score, verdict.details["nemo_category"]) == (0.0, "NO_ACTION_FOUND")


# ---------------------------------------------------------------------------------------------------
# NeMo Gym's verify() as the oracle


@pytest.fixture(scope="module")
def nemo_verify():
    """``verify(expected_action, response, settings) -> (reward, NeMo category name)`` by NeMo's code."""
    pytest.importorskip(f"{SERVER}.common.verification_utils")
    pydantic = pytest.importorskip("pydantic")

    class Model(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="allow", arbitrary_types_allowed=True)

    stubs = {
        "fastapi": types.SimpleNamespace(FastAPI=object),
        "nemo_gym.openai_utils": types.SimpleNamespace(NeMoGymResponse=object),
        "nemo_gym.base_resources_server": types.SimpleNamespace(
            BaseResourcesServerConfig=Model, BaseRunRequest=Model, BaseVerifyRequest=Model,
            BaseVerifyResponse=type("BaseVerifyResponse", (Model,), {"__annotations__": {"reward": float}}),
            SimpleResourcesServer=object),
    }
    before = set(sys.modules)
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update({name: types.ModuleType(name) for name in stubs})
    for name, stub in stubs.items():
        vars(sys.modules[name]).update(vars(stub))
    try:
        app = importlib.import_module(f"{SERVER}.app")
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    vu = importlib.import_module(f"{SERVER}.common.verification_utils")

    def ns(value: Any) -> Any:  # the response as attribute access, as NeMo's pydantic models give it
        if isinstance(value, dict):
            return types.SimpleNamespace(**{k: ns(v) for k, v in value.items()})
        if isinstance(value, list):
            return [ns(v) for v in value]
        return value

    def verify(expected_action: dict, response: dict, settings: dict) -> tuple[float, str]:
        server = types.SimpleNamespace(config=types.SimpleNamespace(
            tool_call_comparator_config=vu.ToolCallComparatorConfig(**settings)))
        body = app.SingleStepToolUseArgumentComparisonVerifyRequest(
            responses_create_params={}, response=ns(response), expected_action=expected_action)
        result = asyncio.run(app.SingleStepToolUseArgumentComparisonResourcesServer.verify(server, body))
        return result.reward, result.category.name

    yield verify
    for name in set(sys.modules) - before:  # the app module was built against the stand-ins
        if name.startswith(SERVER) and name.endswith(".app") or name.endswith("response_utils"):
            sys.modules.pop(name, None)


def _data_dir() -> Path:
    vu = pytest.importorskip(f"{SERVER}.common.verification_utils")
    return Path(vu.__file__).parents[2]


PIVOT_FILES = [  # every text-only file of pivot rows (expected_action) in nemo-gym 0.7.0
    f"{SERVER.split('.')[1]}/data/example.jsonl",
    f"{SERVER.split('.')[1]}/data/example_rollouts.jsonl",
    f"{SERVER.split('.')[1]}/data/parallel_example.jsonl",
    "swe_pivot/data/example.jsonl",
    "terminal_multi_harness/data/example.jsonl",
    "terminal_multi_harness/data/example_rollouts.jsonl",
]


def _output_of(expected: dict) -> list[dict]:
    """The response that makes exactly the expected action."""
    if expected["type"] == "message":
        return [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": expected["content"]}]}]
    calls = expected["calls"] if expected["type"] == "function_call_batch" else [expected]
    return [{"type": "function_call", "name": c["name"], "arguments": c["arguments"]} for c in calls]


def _variants(expected: dict, rng: random.Random) -> list[list[dict]]:
    """Responses around the expected action: itself, reordered, one call less or more, a value changed,
    arguments as "", a blank message, reasoning only."""
    exact = _output_of(expected)
    out = [exact, list(reversed(exact)), [], [{"type": "reasoning", "summary": [{"type": "summary_text", "text": "hm"}]}],
           [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "   "}]}]]
    calls = [c for c in exact if c["type"] == "function_call"]
    if calls:
        out.append(calls[:-1] or [{**calls[0], "arguments": ""}])
        out.append(calls + [{**calls[0], "arguments": json.dumps({"extra": 1})}])
        for c in calls:
            args = json.loads(c["arguments"])
            for key, value in args.items():
                changed = copy.deepcopy(args)
                changed[key] = (value + " and more words" if isinstance(value, str)
                                else [value] if not isinstance(value, list) else value[:-1])
                out.append([{**c, "arguments": json.dumps(changed)} if d is c else d for d in calls])
        out.append([{**calls[0], "arguments": ""}])
        out.append([{**calls[0], "name": calls[0]["name"] + "_x"}])
        out.append([exact[0], {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]}])
    rng.shuffle(out)
    return out


def _ours(record: dict, settings: dict, output: list[dict]) -> tuple[float, str]:
    traj = record_from_dict(record)
    expected = traj.action(traj.num_turns - 1)
    verdict = make_verifier("nemo", **settings).verify(expected, action_from_response(output), VerifyContext(trajectory=traj))
    return verdict.score, verdict.details.get("nemo_category")


def test_equals_nemo_verify_on_every_shipped_pivot_example(nemo_verify):
    rng = random.Random(0)
    compared = 0
    recorded = 0
    for rel in PIVOT_FILES:
        path = _data_dir() / rel
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            record = from_nemo_gym(row)
            outputs = _variants(row["expected_action"], rng)
            if isinstance(row.get("response"), dict):
                outputs.append(row["response"]["output"])
            for preset, settings in NEMO_PRESETS.items():
                for output in outputs:
                    theirs = nemo_verify(row["expected_action"], {"output": output}, settings)
                    ours = _ours(record, settings, output)
                    assert ours == theirs, (rel, preset, row["expected_action"], output)
                    compared += 1
            if "reward" in row and rel.startswith(SERVER.split(".")[1]):  # rewards NeMo recorded with its config
                assert nemo_verify(row["expected_action"], row["response"], NEMO_PRESETS["tool_use"])[0] == row["reward"]
                recorded += 1
    assert recorded == 5 and compared > 1000


PROBES: list[tuple[dict, list[dict]]] = []


def _msg(text):
    return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}


def _fc(name, arguments):
    return {"type": "function_call", "name": name, "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)}


def _exp_fc(name, args):
    return {"type": "function_call", "name": name, "arguments": json.dumps(args)}


_MESSAGE = {"type": "message", "content": "Your order is cancelled."}
_PING = _exp_fc("ping", {})
_GET = _exp_fc("get", {"id": "W1", "n": 2, "x": 1.5, "note": "cancel the order please", "tags": ["a", "b"], "opt": True})
_BATCH = {"type": "function_call_batch", "calls": [_exp_fc("w", {"city": "Paris"}), _exp_fc("w", {"city": "Tokyo"}),
                                                   _exp_fc("s", {"t": "NVDA"})]}
PROBES += [
    (_MESSAGE, [_msg("")]),  # a blank message is a message
    (_MESSAGE, [_msg("  \n ")]),
    (_MESSAGE, [_msg("anything")]),
    (_MESSAGE, []),  # no action
    (_MESSAGE, [{"type": "reasoning", "summary": [{"type": "summary_text", "text": "..."}]}]),
    (_MESSAGE, [_fc("ping", {})]),
    (_MESSAGE, [_msg("first"), _msg("second")]),
    (_PING, [_fc("ping", "")]),  # arguments "" on a call without parameters
    (_PING, [_fc("ping", " ")]),
    (_PING, [_fc("ping", "{}")]),
    (_PING, [_fc("ping", " {} ")]),
    (_PING, [_fc("ping", "null")]),
    (_PING, [_fc("ping", "[]")]),
    (_PING, [_fc("ping", "{")]),
    (_PING, [_msg("pong")]),
    (_PING, [_msg("pong"), _fc("ping", {})]),  # calls win over text
    (_PING, [_fc("Ping", {})]),
    (_GET, [_fc("get", json.loads(_GET["arguments"]))]),
    (_GET, [_fc("get", {**json.loads(_GET["arguments"]), "n": 2.0})]),
    (_GET, [_fc("get", {**json.loads(_GET["arguments"]), "x": 1.5000001})]),
    (_GET, [_fc("get", {**json.loads(_GET["arguments"]), "x": 1.6})]),
    (_GET, [_fc("get", {**json.loads(_GET["arguments"]), "x": 2})]),
    (_GET, [_fc("get", {**json.loads(_GET["arguments"]), "opt": 1})]),
    (_GET, [_fc("get", {**json.loads(_GET["arguments"]), "id": "w1"})]),
    (_GET, [_fc("get", {**json.loads(_GET["arguments"]), "note": "please"})]),
    (_GET, [_fc("get", {**json.loads(_GET["arguments"]), "note": "the weather today"})]),
    (_GET, [_fc("get", {**json.loads(_GET["arguments"]), "note": "CANCEL the ORDER"})]),
    (_GET, [_fc("get", {**json.loads(_GET["arguments"]), "tags": ["b", "a"]})]),
    (_GET, [_fc("get", {**json.loads(_GET["arguments"]), "tags": ["a"]})]),
    (_GET, [_fc("get", {**json.loads(_GET["arguments"]), "extra": None})]),
    (_GET, [_fc("get", '{"id": "W1", "n": NaN}')]),
    (_BATCH, [_fc("s", {"t": "NVDA"}), _fc("w", {"city": "Tokyo"}), _fc("w", {"city": "Paris"})]),
    (_BATCH, [_fc("w", {"city": "Paris"}), _fc("w", {"city": "Tokyo"})]),
    (_BATCH, [_fc("w", {"city": "Paris"}), _fc("w", {"city": "Tokyo"}), _fc("s", {"t": "NVDA"}), _fc("s", {"t": "AMD"})]),
    (_BATCH, [_fc("w", {"city": "Paris"}), _fc("w", {"city": "Rome"}), _fc("s", {"t": "NVDA"})]),
    (_BATCH, [_fc("w", {"city": "Paris"})]),
    (_BATCH, [_fc("w", {"city": "Paris"}), _fc("w", {"city": "Paris"}), _fc("w", {"city": "Paris"})]),
    (_BATCH, [_fc("x", {}), _fc("y", {}), _fc("z", {})]),
    (_BATCH, [_msg("done")]),
    (_exp_fc("w", {"city": "Paris"}), [_fc("w", {"city": "Paris"}), _fc("w", {"city": "Rome"})]),
    (_exp_fc("w", {"city": "Paris"}), [_fc("w", {"city": "Rome"}), _fc("x", {})]),
]


@pytest.mark.parametrize("preset", list(NEMO_PRESETS))
def test_equals_nemo_verify_on_the_probe_suite(nemo_verify, preset):
    settings = NEMO_PRESETS[preset]
    for expected, output in PROBES:
        row = {"responses_create_params": {"input": [{"role": "user", "content": "probe"}]}, "expected_action": expected}
        assert _ours(from_nemo_gym(row), settings, output) == nemo_verify(expected, {"output": output}, settings), (
            preset, expected, output)
    assert len(PROBES) >= 37


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


@pytest.mark.parametrize("preset", ["tool_use", "parallel"])
def test_agrees_with_nemo_gym_on_generated_pairs(nemo_verify, preset):
    settings = NEMO_PRESETS[preset]
    rng = random.Random(0)
    for _ in range(300):
        n = rng.choice([1, 1, 1, 2, 3])
        gold = [(rng.choice(["f", "g"]), {k: _random_value(rng) for k in rng.sample(["a", "b", "c", "d"], rng.randint(0, 3))})
                for _ in range(n)]
        cand = [(name if rng.random() < 0.9 else "g", _mutate(rng, args)) for name, args in gold]
        rng.shuffle(cand)
        if rng.random() < 0.2:
            cand = cand[: max(1, len(cand) - 1)]
        calls = [_exp_fc(c, a) for c, a in gold]
        expected = calls[0] if n == 1 else {"type": "function_call_batch", "calls": calls}
        output = [_fc(c, a) for c, a in cand]
        row = {"responses_create_params": {"input": [{"role": "user", "content": "q"}]}, "expected_action": expected}
        assert _ours(from_nemo_gym(row), settings, output) == nemo_verify(expected, {"output": output}, settings), (gold, cand)

"""The cascade machinery and the tool-use cascade: decisive stages, execution overrules, shared work."""

from __future__ import annotations

import json

import pytest

from pivot_envs import TrajectoryEnv
from pivot_envs.actions import Action, ToolCall
from sandboxes import InProcessSandbox, SandboxError
from verifiers import Category, Verdict, VerifyContext, make_verifier
from verifiers.cascade import Cascade, ExactStage, Stage, decide, tentative
from verifiers.toolcall import canonical_tool_name, max_matching


def call(name, **args):
    return Action(tool_calls=(ToolCall.from_parts(name, json.dumps(args)),))


# A tiny world: orders by id, lookups case-insensitive, one write.
def get_order(state, order_id):
    return state["orders"][order_id.strip().upper()]


def find(state, query):
    return sorted(k for k, v in state["orders"].items() if query.lower() in v["item"].lower())


def cancel(state, order_id, note=""):
    state["orders"][order_id.strip().upper()]["status"] = "cancelled"
    return {"ok": True}


TOOLS = [{"type": "function", "function": {"name": n, "parameters": {"type": "object", "properties": p, "required": r}}}
         for n, p, r in [("get_order", {"order_id": {"type": "string"}}, ["order_id"]),
                         ("find", {"query": {"type": "string"}}, ["query"]),
                         ("cancel", {"order_id": {"type": "string"}, "note": {"type": "string"}}, ["order_id"])]]
STATE = {"orders": {"W1": {"item": "Desk lamp", "status": "pending"}, "W2": {"item": "Mug", "status": "pending"}}}


class Counting:
    def __init__(self):
        self.calls = []

    def __call__(self, sandbox, c):
        self.calls.append(c.name)
        result = sandbox.call_tool(c.name, c.arguments)
        return (result.stdout if result.ok else result.stderr), result


@pytest.fixture
def ctx():
    sb = InProcessSandbox(STATE, tools={"get_order": get_order, "find": find, "cancel": cancel})
    return VerifyContext(tools=TOOLS, sandbox=sb, executor=Counting())


def test_first_decisive_stage_wins_and_overrules_are_recorded():
    class Say(Stage):
        def __init__(self, step):
            self.step = step

        def check(self, *args):
            return self.step

    no = Verdict.reject("rule", Category.ARG_VALUE)
    yes = Verdict.accept("execution")
    v = Cascade([Say(tentative(no)), Say(None), Say(decide(yes)), Say(decide(no))]).verify(Action(), Action())
    assert v.method == "execution" and v.equivalent and v.details["overrules"] == Category.ARG_VALUE
    assert Cascade([Say(tentative(no))]).verify(Action(), Action()) == no


def test_a_sandbox_fault_falls_back_to_the_rules_and_is_recorded():
    class Broken(Stage):
        name = "execution"

        def check(self, *args):
            raise SandboxError("daemon gone")

    rules = tentative(Verdict.accept("rule"))

    class Rules(Stage):
        def check(self, *args):
            return rules

    v = Cascade([Rules(), Broken()]).verify(Action(), Action())
    assert v.equivalent and v.method == "rule" and "daemon gone" in v.details["execution_error"]


def test_exact_stage_normalises():
    c = Cascade([ExactStage(lambda a, ctx: a.content.lower())])
    assert c.verify(Action(content="Hi"), Action(content="hi")).method == "exact"


def test_execution_overrules_a_value_difference_with_the_same_effect(ctx):
    v = make_verifier("tool_use")
    # "desk" vs "Desk lamp": different text, same result set in this world.
    verdict = v.verify(call("find", query="Desk lamp"), call("find", query="desk"), ctx)
    assert verdict.equivalent and verdict.method == "execution" and verdict.details["overrules"] == Category.ARG_VALUE
    verdict = v.verify(call("get_order", order_id="W1"), call("get_order", order_id="w1"), ctx)
    assert verdict.equivalent and verdict.method == "execution"
    wrong = v.verify(call("get_order", order_id="W1"), call("get_order", order_id="W2"), ctx)
    assert not wrong.equivalent and wrong.category == Category.OUTPUT_DIFFERS


def test_execution_confirms_writes_by_state_hash(ctx):
    v = make_verifier("tool_use")
    same = v.verify(call("cancel", order_id="W1"), call("cancel", order_id=" w1 "), ctx)
    assert same.equivalent and same.method == "execution" and same.details["effect"] == "write"
    other = v.verify(call("cancel", order_id="W1"), call("cancel", order_id="W2"), ctx)
    assert other.category == Category.STATE_DIFFERS
    # the free-text note is not stored: equal states, equivalent although the texts differ
    note = v.verify(call("cancel", order_id="W1", note="customer asked"), call("cancel", order_id="W1", note="x y"), ctx)
    assert note.equivalent and note.method == "execution"
    read_for_write = v.verify(call("cancel", order_id="W1"), call("get_order", order_id="W1"), ctx)
    assert read_for_write.category == Category.WRONG_TOOL and read_for_write.method == "rule"
    # a failing candidate where the demonstration succeeded
    failed = v.verify(call("get_order", order_id="W1"), call("get_order", order_id="W9"), ctx)
    assert failed.category == Category.EXIT_DIFFERS
    assert ctx.sandbox.state["orders"]["W1"]["status"] == "pending"  # the turn-k world is never touched


def test_shape_rejections_are_decisive_but_optional_parameters_are_not(ctx):
    v = make_verifier("tool_use")
    assert v.verify(call("cancel", order_id="W1"), call("cancel", order_id="W1", reason="x"), ctx).category == Category.ARG_EXTRA
    assert v.verify(call("get_order", order_id="W1"), call("get_order"), ctx).category == Category.ARG_MISSING
    # an optional parameter given on one side only: execution decides (here: same state)
    verdict = v.verify(call("cancel", order_id="W1"), call("cancel", order_id="W1", note="n"), ctx)
    assert verdict.equivalent and verdict.details["overrules"] == Category.ARG_EXTRA


def test_verify_batch_runs_the_expected_action_once_per_state(ctx):
    v = make_verifier("tool_use")
    gold = call("find", query="Desk lamp")
    cands = [call("find", query=q) for q in ("desk", "lamp", "mug", "DESK LAMP", "desk")]
    verdicts = v.verify_batch(gold, cands, ctx)
    # 1 expected run + 4 distinct candidates (the duplicate "desk" is judged once)
    assert len(ctx.executor.calls) == 1 + 4
    assert [x.equivalent for x in verdicts] == [True, True, False, True, True]
    ctx.executor.calls.clear()
    singles = [v.verify(gold, c, ctx) for c in cands]
    assert len(ctx.executor.calls) == 2 * 5 and singles == verdicts


def test_parallel_calls_use_maximum_matching(ctx):
    v = make_verifier("tool_use")
    gold = Action(tool_calls=(ToolCall.from_parts("find", {"query": "Mug"}), ToolCall.from_parts("find", {"query": "Desk lamp"})))
    cand = Action(tool_calls=(ToolCall.from_parts("find", {"query": "desk"}), ToolCall.from_parts("find", {"query": "mug"})))
    verdict = v.verify(gold, cand, ctx)
    assert verdict.equivalent and verdict.method == "execution"
    assert max_matching(2, 2, lambda i, j: (i, j) in {(0, 0), (0, 1), (1, 0)}) in ({0: 1, 1: 0},)
    # no complete pairing of calls alike in shape: the closest failure, decided by the rules
    wrong = Action(tool_calls=(ToolCall.from_parts("find", {"query": "mug"}), ToolCall.from_parts("cancel", {"order_id": "W1"})))
    verdict = v.verify(gold, wrong, ctx)
    assert verdict.category == Category.WRONG_TOOL and verdict.method == "rule"
    assert make_verifier("toolcall").verify(gold, wrong, ctx).category == Category.WRONG_TOOL


def test_tool_name_aliases():
    assert canonical_tool_name("functions.get_order", ["get_order"]) == "get_order"
    assert canonical_tool_name("GetOrder", ["get_order"]) == "get_order"
    assert canonical_tool_name("get-order", ["get_order"]) == "get_order"
    assert canonical_tool_name("lookup", ["get_order"], {"lookup": "get_order"}) == "get_order"
    v = make_verifier("tool_use")
    ctx = VerifyContext(tools=TOOLS)
    assert v.verify(call("get_order", order_id="W1"), call("functions.get_order", order_id="W1"), ctx).method == "exact"
    assert v.verify(call("get_order", order_id="W1"), call("rm_rf", order_id="W1"), ctx).category == Category.UNKNOWN_TOOL


def test_without_a_sandbox_the_rules_answer():
    v = make_verifier("tool_use")
    ctx = VerifyContext(tools=TOOLS)
    assert v.verify(call("find", query="Desk lamp"), call("find", query="desk"), ctx).category == Category.ARG_VALUE
    ok = v.verify(call("get_order", order_id="W1"), call("get_order", order_id=" W1"), ctx)
    assert ok.equivalent and ok.method == "exact"


MESSAGE = "I'll cancel order W3390659 and refund $33.99 to your PayPal account. Shall I go ahead?"


@pytest.mark.parametrize("candidate, category", [
    ("Order W3390659 will be cancelled and the $33.99 refunded to PayPal. Do you want me to proceed?", "EQUIVALENT"),
    ("Done: I cancelled order W3390659 and refunded $33.99 to your PayPal account.", "MESSAGE_DIFFERS"),
    ("I'll cancel order W3390659 and refund $3.99 to your PayPal account. Shall I go ahead?", "MISSING_FACTS"),
    ("I'll cancel orders W3390659 and W1111111, refunding $33.99 to your PayPal account. Shall I go ahead?", "EXTRA_FACTS"),
    ("W3390659 $33.99 shall I", "MESSAGE_DIFFERS"),
    ("Shall I go ahead?", "MISSING_FACTS"),
    ("", "EMPTY"),
])
def test_messages_must_keep_the_facts(candidate, category):
    verdict = make_verifier("tool_use").verify(Action(content=MESSAGE), Action(content=candidate))
    assert verdict.category == category and verdict.equivalent == (category == "EQUIVALENT")


def test_any_message_is_a_named_mode_only():
    gold = Action(content=MESSAGE)
    assert not make_verifier("tool_use").verify(gold, Action(content="ok")).equivalent
    assert make_verifier("tool_use", message_mode="nemo_any").verify(gold, Action(content="ok")).equivalent
    assert not make_verifier("tool_use", message_mode="nemo_any").verify(gold, Action(content=" ")).equivalent


def test_status_words_come_from_the_tool_schemas(tool_use_records):
    env = TrajectoryEnv(tool_use_records[:1], domain="tool_use", verifier="tool_use")
    env.reset(options={"trajectory": tool_use_records[0].id, "turn": 5})
    gold = env.expected_action().content  # "Done: order W3390659 is cancelled and $33.99 will go back ..."
    assert env.verify(gold.replace("cancelled", "canceled")).equivalent
    assert env.verify(gold.replace("is cancelled", "is pending")).category == Category.MISSING_FACTS
    env.close()

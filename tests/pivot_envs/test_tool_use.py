"""The tool-use domain: its tools, its programmatic expert and its bundled trajectories."""

from __future__ import annotations

import copy
import json
from collections import Counter

import gymnasium as gym
import pytest

import pivot_envs
from pivot_envs import Action, ToolCall, TrajectoryEnv, load_trajectories
from pivot_envs.domains.tool_use import DOMAIN, expert
from pivot_envs.domains.tool_use.tools import FUNCTIONS, TOOLS, WRITE_TOOLS
from pivot_envs.trajectory import Trajectory, record_from_dict
from sandboxes.inprocess import InProcessSandbox
from verifiers import VerifyContext, make_verifier


@pytest.fixture(scope="module")
def records() -> list[Trajectory]:
    return load_trajectories(DOMAIN.data_path(), strict=True).trajectories


@pytest.fixture(scope="module")
def verifier():
    return make_verifier("toolcall")


def shop() -> dict:
    """A hand-written database: one user with an order in every interesting status."""
    address = {"street": "1 Oak St", "city": "Austin", "zip": "78701"}

    def order(status: str, pid: str, price: float, pm: str = "credit_card_1111") -> dict:
        return {"user_id": "ann_lee_1", "status": status, "items": [{"product_id": pid, "quantity": 1, "price": price}],
                "address": dict(address), "payment_method": pm, "total": price}

    return {
        "users": {"ann_lee_1": {"name": {"first": "Ann", "last": "Lee"}, "email": "ann.lee@example.com",
                                "address": dict(address), "orders": ["W1000001", "W1000002", "W1000003", "W1000004"],
                                "payment_methods": {"credit_card_1111": {"type": "credit_card", "last4": "1111"},
                                                    "credit_card_2222": {"type": "credit_card", "last4": "2222"},
                                                    "gift_card_3333": {"type": "gift_card", "balance": 5.0}}}},
        "orders": {"W1000001": order("pending", "P1", 10.0), "W1000002": order("shipped", "P1", 10.0),
                   "W1000003": order("delivered", "P1", 10.0), "W1000004": order("processed", "P3", 30.0)},
        "products": {"P1": {"name": "Mug (white)", "category": "kitchen", "price": 10.0, "stock": 2},
                     "P2": {"name": "Mug (blue)", "category": "kitchen", "price": 12.5, "stock": 0},
                     "P3": {"name": "Lamp (black)", "category": "home", "price": 30.0, "stock": 1},
                     "P4": {"name": "Mug (green)", "category": "kitchen", "price": 9.0, "stock": 5}},
    }


def call(sb: InProcessSandbox, name: str, **args):
    return sb.call_tool(name, args)


# ---------------------------------------------------------------------------------------------------
# Tools


def test_tool_schemas_match_functions_and_use_verifier_features():
    names = [t["function"]["name"] for t in TOOLS]
    assert names == list(FUNCTIONS) and len(names) >= 12
    assert WRITE_TOOLS < set(names)
    props = [p for t in TOOLS for p in t["function"]["parameters"]["properties"].values()]
    assert any("enum" in p for p in props)
    assert any(p.get("format") == "email" for p in props)
    assert any("default" in p for p in props)
    assert any(p.get("uniqueItems") for p in props)
    for t in TOOLS:
        fn = t["function"]
        assert t["type"] == "function" and len(fn["description"]) <= 70, fn["name"]
        assert set(fn["parameters"]["required"]) <= set(fn["parameters"]["properties"])


@pytest.mark.parametrize(("name", "args", "message"), [
    ("cancel_pending_order", {"order_id": "W1000002", "reason": "no longer needed"}, "is shipped; only pending"),
    ("cancel_pending_order", {"order_id": "W1000001", "reason": "too expensive"}, "'reason' must be one of"),
    ("cancel_pending_order", {"order_id": "W9", "reason": "no longer needed"}, "no order with id 'W9'"),
    ("modify_order_address", {"order_id": "W1000003", "address": {"street": "2 Elm", "city": "X", "zip": "12345"}},
     "only pending or processed"),
    ("modify_order_address", {"order_id": "W1000001", "address": {"street": "2 Elm", "city": "X", "zip": "12"}},
     "5 digits"),
    ("modify_order_address", {"order_id": "W1000001", "address": {"street": "2 Elm"}}, "exactly street, city and zip"),
    ("return_delivered_order_items", {"order_id": "W1000002", "product_ids": ["P1"], "payment_method_id": "credit_card_1111"},
     "only delivered"),
    ("return_delivered_order_items", {"order_id": "W1000003", "product_ids": ["P3"], "payment_method_id": "credit_card_1111"},
     "has no item 'P3'"),
    ("return_delivered_order_items", {"order_id": "W1000003", "product_ids": ["P1"], "payment_method_id": "credit_card_2222"},
     "original payment method"),
    ("exchange_delivered_order_items", {"order_id": "W1000003", "swaps": {"P1": "P3"}, "payment_method_id": "credit_card_1111"},
     "within their category"),
    ("exchange_delivered_order_items", {"order_id": "W1000003", "swaps": {"P1": "P2"}, "payment_method_id": "credit_card_1111"},
     "0 in stock"),
    ("exchange_delivered_order_items", {"order_id": "W1000001", "swaps": {"P1": "P4"}, "payment_method_id": "credit_card_1111"},
     "only delivered"),
    ("modify_pending_order_items", {"order_id": "W1000002", "swaps": {"P1": "P4"}, "payment_method_id": "credit_card_1111"},
     "only pending"),
    ("modify_pending_order_items", {"order_id": "W1000001", "swaps": {"P1": "P4"}, "payment_method_id": "paypal_9"},
     "does not belong"),
    ("list_user_orders", {"user_id": "ann_lee_1", "limit": True}, "integer from 1 to 50"),
    ("list_user_orders", {"user_id": "ann_lee_1", "status": "lost"}, "'status' must be one of"),
    ("get_order_details", {"order_id": "W1000001", "include_items": "yes"}, "true or false"),
    ("find_user_by_email", {"email": "nobody@example.com"}, "no user with email"),
    ("get_order_details", {"order_id": "W1000001", "verbose": True}, "bad arguments"),
    ("transfer_to_human_agent", {"summary": "  "}, "non-empty string"),
])
def test_tools_reject_bad_arguments_and_policy_violations(name, args, message):
    sb = InProcessSandbox(shop(), FUNCTIONS)
    before = sb.state_digest()
    result = sb.call_tool(name, args)
    assert result.exit_code == 1 and result.stderr.startswith("Error: ")
    assert message in result.stderr, result.stderr
    assert sb.state_digest() == before  # a refused write changes nothing


def test_writes_follow_the_policy_and_outputs_are_deterministic():
    sb = InProcessSandbox(shop(), FUNCTIONS)
    out = call(sb, "cancel_pending_order", order_id="W1000001", reason="ordered by mistake")
    assert out.ok, out.stderr
    order = json.loads(out.stdout)
    assert order["status"] == "cancelled" and order["payments"] == [
        {"type": "refund", "amount": 10.0, "payment_method_id": "credit_card_1111"}]
    assert sb.state["products"]["P1"]["stock"] == 3  # restocked
    assert not call(sb, "cancel_pending_order", order_id="W1000001", reason="ordered by mistake").ok  # only once

    # A refund to the gift card raises its balance; the order cannot be returned twice.
    assert call(sb, "return_delivered_order_items", order_id="W1000003", product_ids=["P1"],
                payment_method_id="gift_card_3333").ok
    assert sb.state["users"]["ann_lee_1"]["payment_methods"]["gift_card_3333"]["balance"] == 15.0
    assert "only delivered" in call(sb, "return_delivered_order_items", order_id="W1000003", product_ids=["P1"],
                                    payment_method_id="gift_card_3333").stderr

    # Equal calls give byte-identical outputs; listing is newest first with the default limit.
    first = call(sb, "list_user_orders", user_id="ann_lee_1").stdout
    assert first == call(sb, "list_user_orders", user_id="ann_lee_1", limit=10).stdout
    assert [r["order_id"] for r in json.loads(first)] == ["W1000004", "W1000003", "W1000002", "W1000001"]
    assert json.loads(call(sb, "find_user_by_email", email=" Ann.Lee@EXAMPLE.com ").stdout) == {"user_id": "ann_lee_1"}
    assert "items" not in json.loads(call(sb, "get_order_details", order_id="W1000004", include_items=False).stdout)


def test_swaps_charge_the_difference_and_ignore_list_order():
    state = shop()
    state["orders"]["W1000001"]["items"].append({"product_id": "P3", "quantity": 1, "price": 30.0})
    state["orders"]["W1000001"]["total"] = 40.0
    state["products"]["P5"] = {"name": "Lamp (brass)", "category": "home", "price": 35.0, "stock": 1}
    outputs, digests = set(), set()
    for swaps in ({"P1": "P4", "P3": "P5"}, {"P3": "P5", "P1": "P4"}, {" P3 ": "P5", "P1": " P4"}):
        sb = InProcessSandbox(state, FUNCTIONS)
        out = call(sb, "modify_pending_order_items", order_id="W1000001", swaps=swaps, payment_method_id="credit_card_1111")
        assert out.ok, out.stderr
        outputs.add(out.stdout)
        digests.add(sb.state_digest())
    assert len(outputs) == len(digests) == 1
    order = json.loads(outputs.pop())
    assert order["total"] == 44.0 and order["payments"][0] == {"type": "charge", "amount": 4.0, "payment_method_id": "credit_card_1111"}
    assert "once" in call(sb, "modify_pending_order_items", order_id="W1000001", swaps={"P4": "P1"},
                          payment_method_id="credit_card_1111").stderr


def test_gift_card_cannot_pay_more_than_its_balance():
    state = shop()
    state["orders"]["W1000003"]["items"][0]["price"] = 1.0  # the new mug costs 8 more than was paid
    result = call(InProcessSandbox(state, FUNCTIONS), "exchange_delivered_order_items", order_id="W1000003",
                  swaps={"P1": "P4"}, payment_method_id="gift_card_3333")
    assert result.exit_code == 1 and "balance of 5.00" in result.stderr


# ---------------------------------------------------------------------------------------------------
# The expert


def test_generator_is_deterministic():
    a, b = expert.generate(12, seed=3), expert.generate(12, seed=3)
    assert json.dumps(a) == json.dumps(b)
    assert json.dumps(a) != json.dumps(expert.generate(12, seed=4))
    assert expert.generate_long(3, seed=2) == expert.generate_long(3, seed=2)


def test_bundled_file_is_generate_200_seed_0(records):
    assert DOMAIN.data_path().is_file() and DOMAIN.data_path().stat().st_size < 2.3e6
    assert len(records) == 200 and len({r.id for r in records}) == 200
    fresh = expert.generate(200, seed=0)
    assert [r.to_dict() for r in records] == [record_from_dict(d).to_dict() for d in fresh]


def test_records_are_varied(records):
    types = Counter(r.metadata["task_type"] for r in records)
    assert set(types) == set(expert.TASK_TYPES) and min(types.values()) >= 10
    first_calls = Counter(next(m["tool_calls"][0]["function"]["name"] for m in r.messages if m.get("tool_calls"))
                          for r in records)
    assert {"find_user_by_email", "find_user_by_name_zip", "search_products", "get_policy"} <= set(first_calls)
    calls = [(c.name, c.arguments) for r in records for t in range(r.num_turns) for c in r.action(t).tool_calls]
    spellings = Counter((name, tuple(sorted(args))) for name, args in calls)
    assert spellings[("get_order_details", ("include_items", "order_id"))] and spellings[("get_order_details", ("order_id",))]
    assert spellings[("list_user_orders", ("limit", "user_id"))] and spellings[("list_user_orders", ("user_id",))]
    emails = [args["email"] for name, args in calls if name == "find_user_by_email"]
    assert any(e != e.lower() for e in emails) and any(e == e.lower() for e in emails)
    # Second reads come in different orders; some turns read in parallel; some turns carry reasoning.
    second = Counter(tuple(c.name for c in r.action(1).tool_calls) for r in records if r.action(1).tool_calls)
    assert len(second) >= 4
    assert any(len(r.action(t).tool_calls) > 1 for r in records for t in range(r.num_turns))
    assert any(m.get("reasoning_content") for r in records for m in r.messages)
    openings = {next(m["content"] for m in r.messages if m["role"] == "user") for r in records}
    assert len(openings) > 150
    for r in records:
        assert r.messages[-1]["role"] == "assistant" and r.num_turns >= 4
        assert len(json.dumps(r.env["state"])) < 3500
        assert r.task["intent"]["tasks"][0]["type"] == r.metadata["task_type"]


def test_every_write_is_confirmed_by_the_user_first(records):
    for r in records:
        for i, m in enumerate(r.messages):
            for c in m.get("tool_calls") or []:
                name = c["function"]["name"]
                if name in WRITE_TOOLS and name != "transfer_to_human_agent":
                    assert r.messages[i - 1]["role"] == "user", (r.id, name)


# ---------------------------------------------------------------------------------------------------
# Replay and judging


def replay(traj: Trajectory, on_call=None) -> str:
    """Run every recorded call on a fresh sandbox, checking each output; returns the final digest."""
    sb = DOMAIN.make_sandbox(traj)
    for turn in range(traj.num_turns):
        recorded = traj.tool_outputs(turn)
        for c in traj.action(turn).tool_calls:
            if on_call is not None:
                on_call(sb, c)
            output, result = DOMAIN.execute(sb, c)
            assert result.ok, (traj.id, c.name, result.stderr)
            assert output == recorded[c.id], (traj.id, turn, c.name)
    return sb.state_digest()


def test_replay_reproduces_every_output_and_the_final_state(records):
    for r in records:
        assert replay(r) == r.task["success"]["expected_state_sha256"], r.id


def test_env_restores_every_turn_without_divergence(records):
    env = TrajectoryEnv(records[:20], domain="tool_use", strict=True)
    for r in records[:20]:
        for turn in range(r.num_turns):
            _, info = env.reset(options={"trajectory": r.id, "turn": turn})
            assert info["divergence"] == []


def test_demonstration_succeeds_in_episode_mode(records):
    env = TrajectoryEnv(records[:30], domain="tool_use", mode="episode", strict=True)
    for r in records[:30]:
        env.reset(options={"trajectory": r.id, "turn": 0})
        for turn in range(r.num_turns):
            _, reward, terminated, truncated, info = env.step(r.action(turn))
        assert terminated and not truncated and reward == 1.0 and info["success"], r.id


def test_verifier_accepts_every_demonstrated_action(records, verifier):
    for r in records:
        ctx = VerifyContext(tools=r.tools, trajectory=r)
        for turn in range(r.num_turns):
            action = r.action(turn)
            for candidate in (action, Action.parse(action.to_text())):
                verdict = verifier.verify(action, candidate, ctx)
                assert verdict.equivalent, (r.id, turn, verdict)


def test_equivalent_spellings_are_accepted_and_act_the_same(records, verifier):
    checked = Counter()

    def check(sb, c: ToolCall):
        ctx = VerifyContext(tools=TOOLS)
        expected_out = sb.fork(1)[0]
        want = expected_out.call_tool(c.name, c.arguments)
        for variant in expert.equivalent_spellings(c.name, c.arguments):
            candidate = Action(tool_calls=(ToolCall.from_parts(c.name, json.dumps(variant)),))
            verdict = verifier.verify(Action(tool_calls=(c,)), candidate, ctx)
            assert verdict.equivalent, (c.name, c.arguments, variant, verdict)
            twin = sb.fork(1)[0]
            got = twin.call_tool(c.name, copy.deepcopy(variant))
            assert (got.stdout, twin.state_digest()) == (want.stdout, expected_out.state_digest()), (c.name, variant)
            checked[c.name] += 1

    for r in records:
        replay(r, on_call=check)
    assert set(checked) == set(FUNCTIONS)


def test_a_forbidden_write_fails_where_the_expert_refused(records):
    tool_for = {"cancel": "cancel_pending_order", "return": "return_delivered_order_items",
                "address": "modify_order_address", "swap": "modify_pending_order_items"}
    refusals = [r for r in records if r.metadata["task_type"] == "refusal"]
    assert {r.task["intent"]["tasks"][0]["what"] for r in refusals} == set(tool_for)
    for r in refusals:
        task = r.task["intent"]["tasks"][0]
        sb = DOMAIN.make_sandbox(r)
        order = sb.state["orders"][task["order_id"]]
        pid, pm = order["items"][0]["product_id"], order["payment_method"]
        args = {"cancel": {"order_id": task["order_id"], "reason": "no longer needed"},
                "return": {"order_id": task["order_id"], "product_ids": [pid], "payment_method_id": pm},
                "address": {"order_id": task["order_id"], "address": task["new_address"]},
                "swap": {"order_id": task["order_id"], "swaps": {pid: pid}, "payment_method_id": pm}}[task["what"]]
        result = sb.call_tool(tool_for[task["what"]], args)
        assert result.exit_code == 1 and f"is {order['status']}; only" in result.stderr, (r.id, result.stderr)


# ---------------------------------------------------------------------------------------------------
# Long conversations, files, registration


def test_generate_long_has_many_turns_and_replays():
    record = expert.generate_long(20, seed=1)
    traj = record_from_dict(record)
    assert traj.num_turns >= 64
    assert len(record["task"]["intent"]["tasks"]) == 20
    assert replay(traj) == record["task"]["success"]["expected_state_sha256"]


def test_generate_file_writes_loadable_jsonl(tmp_path):
    path = tmp_path / "data" / "tool_use.jsonl"
    assert expert.generate_file(path, 5, seed=7) == 5
    assert [p.name for p in path.parent.iterdir()] == ["tool_use.jsonl"]  # no temp file left behind
    assert len(load_trajectories(path, strict=True)) == 5


def test_domain_is_registered_and_pivot_steps_score_the_demo():
    assert pivot_envs.get_domain("pivot/ToolUse-v0") is DOMAIN
    assert DOMAIN.data_path().name == "tool_use.jsonl"
    env = gym.make("pivot/ToolUse-v0")
    env.reset(seed=0, options={"turn": 2})
    _, reward, terminated, truncated, info = env.step(env.unwrapped.expected_action().to_text())
    assert (reward, terminated, truncated, info["verdict"].category) == (1.0, True, False, "EQUIVALENT")
    env.close()
